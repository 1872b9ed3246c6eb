//! The `husk-portmap` plugin: hostPort → container DNAT for TCP and UDP,
//! reachable from other hosts, from the node's localhost (OUTPUT DNAT +
//! route_localnet) and from pods on the same bridge (hairpin masquerade).

pub mod config;
pub mod rules;

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;

use crate::iptables::{self, Family};
use crate::netlink::NetNs;
use crate::plugin::{CmdArgs, Plugin};
use crate::types::{CniError, CniResult, CniVersion, ErrorCode, NetConf};

pub use config::{Mapping, PortmapConf};

/// The plugin.
pub struct PortmapPlugin;

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string())
}

/// Serialises portmap changes within one network namespace: the shared
/// chains are created on first use and the hostPort check reads the table.
struct NetnsLock(#[allow(dead_code)] File);

impl NetnsLock {
    fn take() -> Result<NetnsLock, CniError> {
        let ino = NetNs::current().map_err(internal)?.inode();
        let dir = std::path::Path::new("/run/husk-cni");
        std::fs::create_dir_all(dir)
            .map_err(|e| CniError::new(ErrorCode::IoFailure, format!("{}: {e}", dir.display())))?;
        let p = dir.join(format!("portmap-{ino}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| CniError::new(ErrorCode::IoFailure, format!("{}: {e}", p.display())))?;
        loop {
            // SAFETY: flock on an fd we own; no memory is passed.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(NetnsLock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(CniError::new(
                    ErrorCode::IoFailure,
                    format!("{}: {e}", p.display()),
                ));
            }
        }
    }
}

fn families(prev: &CniResult) -> Vec<(Family, ipnetwork::IpNetwork)> {
    let mut out: Vec<(Family, ipnetwork::IpNetwork)> = Vec::new();
    for ip in prev.container_ips() {
        let f = Family::of(&ip.address.ip());
        if !out.iter().any(|(x, _)| *x == f) {
            out.push((f, ip.address));
        }
    }
    out
}

fn route_localnet(prev: &CniResult) {
    for itf in prev.interfaces.iter().filter(|i| i.sandbox.is_empty()) {
        let p = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", itf.name);
        if std::path::Path::new(&p).exists() {
            if let Err(e) = std::fs::write(&p, "1") {
                tracing::warn!(path = %p, error = %e, "route_localnet");
            }
        }
    }
}

impl Plugin for PortmapPlugin {
    fn add(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<CniResult, CniError> {
        let (pc, maps) = PortmapConf::parse(conf)?;
        let prev = conf.prev_result()?.ok_or_else(|| {
            CniError::invalid_config(
                "prevResult: husk-portmap must follow a plugin that assigns addresses",
            )
        })?;
        if maps.is_empty() {
            return Ok(prev);
        }
        let fams = families(&prev);
        if fams.is_empty() {
            return Err(CniError::invalid_config(
                "prevResult.ips: no container address to map ports to",
            ));
        }
        let _lock = NetnsLock::take()?;
        let mut tables = Vec::new();
        for (fam, _) in &fams {
            let t = iptables::save(*fam, "nat").map_err(internal)?;
            let held = rules::held_ports(&t);
            if let Some((m, owner)) = rules::conflict(&held, &args.container_id, &maps) {
                return Err(CniError::new(
                    ErrorCode::HostPortConflict,
                    format!(
                        "hostPort {}/{}: already mapped to container {owner}",
                        m.protocol, m.host_port
                    ),
                ));
            }
            tables.push(t);
        }
        let mark = 1u32 << pc.mark_masq_bit;
        for ((fam, pod), t) in fams.iter().zip(&tables) {
            let mine: Vec<Mapping> = maps
                .iter()
                .filter(|m| m.host_ip.is_none_or(|ip| Family::of(&ip) == *fam))
                .cloned()
                .collect();
            let b = rules::add_batch(
                t,
                *fam,
                &conf.name,
                &args.container_id,
                *pod,
                &mine,
                pc.snat.then_some(mark),
            );
            if let Err(e) = iptables::restore(*fam, &b) {
                // Undo families already done.
                for (f2, _) in fams.iter().take_while(|(f2, _)| f2 != fam) {
                    if let Ok(t2) = iptables::save(*f2, "nat") {
                        if let Some(d) = rules::del_batch(&t2, &conf.name, &args.container_id) {
                            let _ = iptables::restore(*f2, &d);
                        }
                    }
                }
                return Err(internal(e));
            }
        }
        if pc.snat && fams.iter().any(|(f, _)| *f == Family::V4) {
            route_localnet(&prev);
        }
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        // Validate, but clean up even when the mappings were not passed again.
        let (_, maps) = PortmapConf::parse(conf)?;
        let _lock = NetnsLock::take()?;
        // Fast path: the mappings and addresses are known (libcni passes the
        // capability args and the cached result): one restore.
        let fams: Vec<Family> = conf
            .prev_result()
            .ok()
            .flatten()
            .map(|r| families(&r).into_iter().map(|(f, _)| f).collect())
            .unwrap_or_default();
        if !maps.is_empty() && fams == [Family::V4] {
            let b = rules::del_batch_known(&conf.name, &args.container_id, &maps);
            if iptables::restore(Family::V4, &b).is_ok() {
                return Ok(());
            }
        }
        for fam in [Family::V4, Family::V6] {
            let t = match iptables::save(fam, "nat") {
                Ok(t) => t,
                Err(e) if fam == Family::V6 => {
                    tracing::debug!(error = %e, "no ip6tables");
                    continue;
                }
                Err(e) => return Err(internal(e)),
            };
            if let Some(b) = rules::del_batch(&t, &conf.name, &args.container_id) {
                iptables::restore(fam, &b).map_err(internal)?;
            }
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        let (_, maps) = PortmapConf::parse(conf)?;
        if maps.is_empty() {
            return Ok(());
        }
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::invalid_config("prevResult: required for CHECK"))?;
        for (fam, pod) in families(&prev) {
            let t = iptables::save(fam, "nat").map_err(internal)?;
            let dn = rules::dn_chain(&conf.name, &args.container_id);
            if !t.has_chain(&dn) {
                return Err(CniError::new(
                    ErrorCode::CheckFailed,
                    format!("portmap chain {dn} is missing"),
                ));
            }
            for m in maps
                .iter()
                .filter(|m| m.host_ip.is_none_or(|ip| Family::of(&ip) == fam))
            {
                let want = format!("--dport {} -j DNAT --to-destination ", m.host_port);
                let to = pod.ip().to_string();
                if !t
                    .rules_of(&dn)
                    .any(|r| r.contains(&want) && r.contains(&to))
                {
                    return Err(CniError::new(
                        ErrorCode::CheckFailed,
                        format!(
                            "hostPort {}/{} → {to}:{} is not mapped",
                            m.protocol, m.host_port, m.container_port
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn gc(&self, _args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        let v = conf
            .extra
            .get("cni.dev/valid-attachments")
            .cloned()
            .unwrap_or(serde_json::Value::Array(vec![]));
        let valid: Vec<crate::libcni::Attachment> = serde_json::from_value(v)
            .map_err(|e| CniError::from_json("cni.dev/valid-attachments", &e))?;
        let ids: HashSet<String> = valid.into_iter().map(|a| a.container_id).collect();
        let _lock = NetnsLock::take()?;
        for fam in [Family::V4, Family::V6] {
            let Ok(t) = iptables::save(fam, "nat") else {
                continue;
            };
            for id in rules::stale_owners(&t, &conf.name, &ids) {
                if let Some(b) = rules::del_batch(&t, &conf.name, &id) {
                    iptables::restore(fam, &b).map_err(internal)?;
                }
            }
        }
        Ok(())
    }

    fn status(&self, _args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        PortmapConf::parse(conf)?;
        iptables::save(Family::V4, "nat")
            .map(|_| ())
            .map_err(|e| CniError::new(ErrorCode::PluginNotAvailable, format!("iptables: {e}")))
    }
}
