//! The portmap iptables layout (the reference's): shared chains
//! CNI-HOSTPORT-DNAT / -SETMARK / -MASQ, and one CNI-DN-<hash> chain per
//! container holding its DNAT and hairpin/localhost mark rules.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::config::Mapping;
use crate::iptables::{self, Family, Table};

/// Shared chain every hostPort is matched in.
pub const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
/// Shared chain that marks connections for masquerade.
pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
/// Shared chain that masquerades marked connections.
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";

/// The per-container chain.
pub fn dn_chain(net: &str, id: &str) -> String {
    iptables::chain_name("DN-", net, id)
}

fn dnat_comment(net: &str, id: &str) -> String {
    iptables::quote(&format!("dnat {}", iptables::comment(net, id)))
}

/// A hostPort a container holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Owner network name.
    pub net: String,
    /// Owner container id.
    pub id: String,
    /// Protocol.
    pub protocol: String,
    /// Port.
    pub port: u16,
    /// Address restriction.
    pub host_ip: Option<IpAddr>,
}

/// Owner ids of DNAT jumps (from the rule comments) of network `net`.
fn owner_of(rule: &str) -> Option<(String, String)> {
    let (_, rest) = rule.split_once("--comment \"dnat name: \\\"")?;
    let (net, rest) = rest.split_once("\\\" id: \\\"")?;
    let (id, _) = rest.split_once("\\\"")?;
    Some((net.to_string(), id.to_string()))
}

/// Every hostPort mapped in the table, by owner (any network).
pub fn held_ports(t: &Table) -> Vec<Held> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for jump in t.rules_of(DNAT_CHAIN) {
        let Some((net, id)) = owner_of(jump) else {
            continue;
        };
        let Some(target) = jump.rsplit_once("-j ").map(|x| x.1.trim().to_string()) else {
            continue;
        };
        // One jump per protocol leads to the same chain: read it once.
        if !seen.insert(target.clone()) {
            continue;
        }
        for r in t.rules_of(&target) {
            if !r.contains("-j DNAT") {
                continue;
            }
            let toks: Vec<&str> = r.split_whitespace().collect();
            let val = |flag: &str| {
                toks.iter()
                    .position(|t| *t == flag)
                    .and_then(|i| toks.get(i + 1))
                    .copied()
            };
            let (Some(proto), Some(port)) =
                (val("-p"), val("--dport").and_then(|p| p.parse().ok()))
            else {
                continue;
            };
            let host_ip = val("-d")
                .and_then(|d| d.split('/').next())
                .and_then(|d| d.parse().ok());
            out.push(Held {
                net: net.clone(),
                id: id.clone(),
                protocol: proto.to_string(),
                port,
                host_ip,
            });
        }
    }
    out
}

/// The held entries of `maps` for (`net`, `id`).
pub fn held_of(net: &str, id: &str, maps: &[Mapping]) -> Vec<Held> {
    maps.iter()
        .map(|m| Held {
            net: net.to_string(),
            id: id.to_string(),
            protocol: m.protocol.clone(),
            port: m.host_port,
            host_ip: m.host_ip,
        })
        .collect()
}

/// Which shared chains and entry jumps exist in a nat table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// CNI-HOSTPORT-DNAT.
    pub dnat_chain: bool,
    /// PREROUTING → CNI-HOSTPORT-DNAT.
    pub prerouting: bool,
    /// OUTPUT → CNI-HOSTPORT-DNAT.
    pub output: bool,
    /// CNI-HOSTPORT-SETMARK.
    pub setmark_chain: bool,
    /// CNI-HOSTPORT-MASQ.
    pub masq_chain: bool,
    /// POSTROUTING → CNI-HOSTPORT-MASQ.
    pub postrouting: bool,
}

impl Shared {
    /// Read from a saved table.
    pub fn of(t: &Table) -> Shared {
        let jump = |top: &str, to: &str| t.rules_of(top).any(|r| r.ends_with(&format!("-j {to}")));
        Shared {
            dnat_chain: t.has_chain(DNAT_CHAIN),
            prerouting: jump("PREROUTING", DNAT_CHAIN),
            output: jump("OUTPUT", DNAT_CHAIN),
            setmark_chain: t.has_chain(SETMARK_CHAIN),
            masq_chain: t.has_chain(MASQ_CHAIN),
            // Present only where it works: ahead of the per-pod masquerade
            // chains (an older `-A` jump behind them is superseded by a new
            // `-I ... 1` one).
            postrouting: t
                .rules_of("POSTROUTING")
                .find(|r| r.contains("-j CNI-"))
                .is_some_and(|r| r.ends_with(&format!("-j {MASQ_CHAIN}"))),
        }
    }

    /// After an ADD batch built from `self` (with SNAT or not) committed.
    pub fn after_add(self, snat: bool) -> Shared {
        Shared {
            dnat_chain: true,
            prerouting: true,
            output: true,
            setmark_chain: self.setmark_chain || snat,
            masq_chain: self.masq_chain || snat,
            postrouting: self.postrouting || snat,
        }
    }
}

/// The first mapping that clashes with a port another container holds.
pub fn conflict<'a>(held: &[Held], id: &str, maps: &'a [Mapping]) -> Option<(&'a Mapping, String)> {
    for m in maps {
        for h in held {
            if h.id != id
                && h.protocol == m.protocol
                && h.port == m.host_port
                && (h.host_ip.is_none() || m.host_ip.is_none() || h.host_ip == m.host_ip)
            {
                return Some((m, h.id.clone()));
            }
        }
    }
    None
}

/// The restore batch for ADD, given which shared chains exist and the
/// container's old jumps (`old_jumps`, saved `-A` lines, on a re-ADD);
/// `masq_mark` is the hairpin/localhost masquerade mark (None: no SNAT).
#[allow(clippy::too_many_arguments)]
pub fn add_batch(
    shared: Shared,
    old_jumps: &[String],
    fam: Family,
    net: &str,
    id: &str,
    pod: IpNetwork,
    maps: &[Mapping],
    masq_mark: Option<u32>,
) -> String {
    let snat = masq_mark.is_some();
    let mark = masq_mark.unwrap_or(0);
    let dn = dn_chain(net, id);
    let mut b = String::from("*nat\n");
    if !shared.dnat_chain {
        b += &format!(":{DNAT_CHAIN} - [0:0]\n");
    }
    if snat && !shared.setmark_chain {
        b += &format!(
            ":{SETMARK_CHAIN} - [0:0]\n-A {SETMARK_CHAIN} -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark {mark:#x}/{mark:#x}\n"
        );
    }
    if snat && !shared.masq_chain {
        b += &format!(
            ":{MASQ_CHAIN} - [0:0]\n-A {MASQ_CHAIN} -m mark --mark {mark:#x}/{mark:#x} -j MASQUERADE\n"
        );
    }
    for (top, there) in [("PREROUTING", shared.prerouting), ("OUTPUT", shared.output)] {
        if !there {
            b += &format!("-A {top} -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}\n");
        }
    }
    // First in POSTROUTING (as the reference does): the bridge's per-pod
    // masquerade chains ACCEPT traffic within the pod subnet, which would
    // otherwise end the chain before a hairpin connection is masqueraded.
    if snat && !shared.postrouting {
        b += &format!(
            "-I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j {MASQ_CHAIN}\n"
        );
    }
    // Re-ADD: drop our old jumps; declaring the chain flushes it.
    for r in old_jumps {
        b += &iptables::delete_of(r);
        b.push('\n');
    }
    b += &format!(":{dn} - [0:0]\n");
    for j in jump_rules(net, id, maps) {
        b += &format!("-A {j}\n");
    }
    let pod_net = format!("{}/{}", pod.network(), pod.prefix());
    let host_pfx = if fam == Family::V4 { 32 } else { 128 };
    for m in maps {
        let d = m
            .host_ip
            .map(|ip| format!("-d {ip}/{host_pfx} "))
            .unwrap_or_default();
        let p = &m.protocol;
        let hp = m.host_port;
        if snat {
            b +=
                &format!("-A {dn} {d}-s {pod_net} -p {p} -m {p} --dport {hp} -j {SETMARK_CHAIN}\n");
            if fam == Family::V4 {
                b += &format!(
                    "-A {dn} {d}-s 127.0.0.1/32 -p {p} -m {p} --dport {hp} -j {SETMARK_CHAIN}\n"
                );
            }
        }
        let to = match pod.ip() {
            IpAddr::V4(a) => format!("{a}:{}", m.container_port),
            IpAddr::V6(a) => format!("[{a}]:{}", m.container_port),
        };
        b += &format!("-A {dn} {d}-p {p} -m {p} --dport {hp} -j DNAT --to-destination {to}\n");
    }
    b += "COMMIT\n";
    b
}

/// The CNI-HOSTPORT-DNAT → per-container jumps for `maps` (without `-A`).
fn jump_rules(net: &str, id: &str, maps: &[Mapping]) -> Vec<String> {
    let dn = dn_chain(net, id);
    let mut out = Vec::new();
    for proto in ["tcp", "udp"] {
        let ports: Vec<String> = maps
            .iter()
            .filter(|m| m.protocol == proto)
            .map(|m| m.host_port.to_string())
            .collect();
        // multiport takes at most 15 ports per rule.
        for chunk in ports.chunks(15) {
            out.push(format!(
                "{DNAT_CHAIN} -p {proto} -m comment --comment {} -m multiport --dports {} -j {dn}",
                dnat_comment(net, id),
                chunk.join(",")
            ));
        }
    }
    out
}

/// The DEL batch built from the mappings ADD was given, without reading
/// the table (fails as a whole when the rules differ; then use [`del_batch`]).
pub fn del_batch_known(net: &str, id: &str, maps: &[Mapping]) -> String {
    let dn = dn_chain(net, id);
    let mut b = String::from("*nat\n");
    for j in jump_rules(net, id, maps) {
        b += &format!("-D {j}\n");
    }
    b += &format!("-F {dn}\n-X {dn}\nCOMMIT\n");
    b
}

/// The restore batch for DEL (None when there is nothing to remove).
pub fn del_batch(t: &Table, net: &str, id: &str) -> Option<String> {
    let dn = dn_chain(net, id);
    let jumps: Vec<&String> = t.jumps_to(&dn).collect();
    if jumps.is_empty() && !t.has_chain(&dn) {
        return None;
    }
    let mut b = String::from("*nat\n");
    for r in jumps {
        b += &iptables::delete_of(r);
        b.push('\n');
    }
    if t.has_chain(&dn) {
        b += &format!("-F {dn}\n-X {dn}\n");
    }
    b += "COMMIT\n";
    Some(b)
}

/// The containers of network `net` that have DNAT chains but are not in `valid` (GC).
pub fn stale_owners(t: &Table, net: &str, valid: &HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in t.rules_of(DNAT_CHAIN) {
        if let Some((n, id)) = owner_of(r) {
            if n == net && !valid.contains(&id) && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(h: u16, c: u16, p: &str) -> Mapping {
        Mapping {
            host_port: h,
            container_port: c,
            protocol: p.into(),
            host_ip: None,
        }
    }

    #[test]
    fn add_batch_creates_shared_chains_once() {
        let empty = Table::default();
        let pod: IpNetwork = "10.22.0.5/24".parse().unwrap();
        let b = add_batch(
            Shared::of(&empty),
            &[],
            Family::V4,
            "n",
            "c1",
            pod,
            &[m(8080, 80, "tcp"), m(5353, 53, "udp")],
            Some(0x2000),
        );
        assert!(b.contains(":CNI-HOSTPORT-DNAT - [0:0]"));
        assert!(b.contains("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"));
        assert!(b.contains("-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"));
        assert!(b.contains("--dport 8080 -j DNAT --to-destination 10.22.0.5:80"));
        assert!(b.contains("-s 10.22.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK"));
        assert!(b.contains("--set-xmark 0x2000/0x2000"));
        assert!(b.contains("-I POSTROUTING 1 -m comment"));
        // Simulate the saved table after that batch and check what is held.
        let saved_text: String = b
            .lines()
            .filter(|l| l.starts_with("-A ") || l.starts_with("-I ") || l.starts_with(':'))
            .map(|l| format!("{l}\n"))
            .collect();
        let t = Table::parse(&format!(
            ":PREROUTING ACCEPT [0:0]\n{}",
            saved_text.replace("-I POSTROUTING 1 ", "-A POSTROUTING ")
        ));
        assert_eq!(Shared::of(&t), Shared::default().after_add(true));
        // A MASQ jump behind a pod's masquerade jump does not count.
        let late = Table::parse(
            "-A POSTROUTING -s 10.22.0.9/32 -m comment --comment \"x\" -j CNI-abc\n-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ\n",
        );
        assert!(!Shared::of(&late).postrouting);
        let held = held_ports(&t);
        assert_eq!(held.len(), 2);
        assert_eq!(held[0].id, "c1");
        assert_eq!(
            held,
            held_of("n", "c1", &[m(8080, 80, "tcp"), m(5353, 53, "udp")])
        );
        let again = add_batch(
            Shared::of(&t),
            &[],
            Family::V4,
            "n",
            "c2",
            pod,
            &[m(9090, 80, "tcp")],
            Some(0x2000),
        );
        assert!(!again.contains(":CNI-HOSTPORT-DNAT"));
        assert!(!again.contains("-A PREROUTING"));
        assert!(conflict(&held, "c2", &[m(8080, 1, "tcp")]).is_some());
        assert!(conflict(&held, "c2", &[m(8080, 1, "udp")]).is_none());
        assert!(conflict(&held, "c1", &[m(8080, 1, "tcp")]).is_none());
        let del = del_batch(&t, "n", "c1").unwrap();
        assert!(del.contains(&format!("-X {}", dn_chain("n", "c1"))));
        assert!(del.contains("-D CNI-HOSTPORT-DNAT -p tcp"));
        assert!(del_batch(&t, "n", "nobody").is_none());
        assert_eq!(
            stale_owners(&t, "n", &HashSet::new()),
            vec!["c1".to_string()]
        );
        assert!(stale_owners(&t, "n", &["c1".to_string()].into()).is_empty());
    }
}
