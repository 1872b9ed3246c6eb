//! ipMasq rules: one chain per container, batched into one restore.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::iptables::{self, Family, IptablesError};
use crate::registry::Registry;

/// The netns's nat lock, so that portmap's registry stays exact across our
/// commits; best effort: without it the registry just goes stale.
fn registry() -> Option<Registry> {
    Registry::lock()
        .inspect_err(|e| tracing::debug!(error = %e, "no nat registry"))
        .ok()
}

/// The per-container masquerade chain of (`net`, `id`).
pub fn chain(net: &str, id: &str) -> String {
    iptables::chain_name("", net, id)
}

fn host_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn jump_rule(net: &str, id: &str, ip: &IpAddr) -> String {
    format!(
        "POSTROUTING -s {ip}/{} -m comment --comment {} -j {}",
        host_prefix(ip),
        iptables::quote(&iptables::comment(net, id)),
        chain(net, id)
    )
}

/// Add the chain and its POSTROUTING jumps for the container's addresses.
pub fn setup(net: &str, id: &str, addrs: &[IpNetwork]) -> Result<(), IptablesError> {
    let reg = registry();
    let mut commits = 0;
    for fam in [Family::V4, Family::V6] {
        let mine: Vec<&IpNetwork> = addrs
            .iter()
            .filter(|a| Family::of(&a.ip()) == fam)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let c = chain(net, id);
        let cm = iptables::quote(&iptables::comment(net, id));
        let mcast = if fam == Family::V4 {
            "224.0.0.0/4"
        } else {
            "ff00::/8"
        };
        let mut b = format!("*nat\n:{c} - [0:0]\n");
        for a in &mine {
            b += &format!(
                "-A {c} -d {}/{} -m comment --comment {cm} -j ACCEPT\n",
                a.network(),
                a.prefix()
            );
        }
        b += &format!("-A {c} ! -d {mcast} -m comment --comment {cm} -j MASQUERADE\n");
        for a in &mine {
            b += &format!("-A {}\n", jump_rule(net, id, &a.ip()));
        }
        b += "COMMIT\n";
        iptables::restore(fam, &b)?;
        commits += 1;
    }
    if let Some(r) = reg {
        r.carry(commits);
    }
    Ok(())
}

/// Remove the chain and every jump to it. With the container's addresses
/// known, one restore does it; otherwise (or when that fails because the
/// rules differ) the table is read and exactly what exists is deleted.
pub fn teardown(net: &str, id: &str, known: &[IpAddr]) -> Result<(), IptablesError> {
    let reg = registry();
    let mut commits = 0;
    let c = chain(net, id);
    for fam in [Family::V4, Family::V6] {
        let mine: Vec<&IpAddr> = known.iter().filter(|a| Family::of(a) == fam).collect();
        if !mine.is_empty() {
            let mut b = String::from("*nat\n");
            for ip in &mine {
                b += &format!("-D {}\n", jump_rule(net, id, ip));
            }
            b += &format!("-F {c}\n-X {c}\nCOMMIT\n");
            if iptables::restore(fam, &b).is_ok() {
                commits += 1;
                continue;
            }
        }
        // Known addresses without one of this family: nothing of it to remove.
        if mine.is_empty() && (!known.is_empty() || (fam == Family::V6 && !ip6tables_present())) {
            continue;
        }
        let t = iptables::save(fam, "nat")?;
        if !t.has_chain(&c) {
            continue;
        }
        let mut b = String::from("*nat\n");
        for r in t.jumps_to(&c) {
            b += &iptables::delete_of(r);
            b.push('\n');
        }
        b += &format!("-F {c}\n-X {c}\nCOMMIT\n");
        iptables::restore(fam, &b)?;
        commits += 1;
    }
    if let Some(r) = reg {
        r.carry(commits);
    }
    Ok(())
}

fn ip6tables_present() -> bool {
    std::path::Path::new("/proc/net/ip6_tables_names").exists()
        || std::process::Command::new("ip6tables-save")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Whether the chain and a jump to it for every address exist (CHECK).
pub fn verify(net: &str, id: &str, addrs: &[IpAddr]) -> Result<Result<(), String>, IptablesError> {
    let c = chain(net, id);
    for fam in [Family::V4, Family::V6] {
        let mine: Vec<&IpAddr> = addrs.iter().filter(|a| Family::of(a) == fam).collect();
        if mine.is_empty() {
            continue;
        }
        let t = iptables::save(fam, "nat")?;
        if !t.has_chain(&c) {
            return Ok(Err(format!("ipMasq chain {c} is missing")));
        }
        if !t.rules_of(&c).any(|r| r.contains("MASQUERADE")) {
            return Ok(Err(format!("ipMasq chain {c} has no MASQUERADE rule")));
        }
        for ip in mine {
            let src = format!("-s {ip}/{}", host_prefix(ip));
            if !t
                .jumps_to(&c)
                .any(|r| r.starts_with("-A POSTROUTING") && r.contains(&src))
            {
                return Ok(Err(format!("no POSTROUTING jump from {ip} to {c}")));
            }
        }
    }
    Ok(Ok(()))
}

/// Remove the chains of this network's containers not in `valid` (GC).
pub fn gc(net: &str, valid: &HashSet<String>) -> Result<Vec<String>, IptablesError> {
    let mut removed = Vec::new();
    for fam in [Family::V4, Family::V6] {
        if fam == Family::V6 && !ip6tables_present() {
            continue;
        }
        let t = iptables::save(fam, "nat")?;
        let prefix = format!("--comment \"name: \\\"{net}\\\" id: \\\"");
        let mut stale: Vec<(String, String)> = Vec::new();
        for r in t.rules_of("POSTROUTING") {
            let Some(rest) = r.split_once(&prefix).map(|x| x.1) else {
                continue;
            };
            let Some(id) = rest.split_once("\\\"").map(|x| x.0) else {
                continue;
            };
            let c = chain(net, id);
            if !valid.contains(id)
                && r.ends_with(&format!("-j {c}"))
                && !stale.iter().any(|s| s.1 == c)
            {
                stale.push((id.to_string(), c));
            }
        }
        if stale.is_empty() {
            continue;
        }
        let mut b = String::from("*nat\n");
        for (_, c) in &stale {
            for r in t.jumps_to(c) {
                b += &iptables::delete_of(r);
                b.push('\n');
            }
            if t.has_chain(c) {
                b += &format!("-F {c}\n-X {c}\n");
            }
        }
        b += "COMMIT\n";
        iptables::restore(fam, &b)?;
        removed.extend(stale.into_iter().map(|s| s.1));
    }
    Ok(removed)
}
