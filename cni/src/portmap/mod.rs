//! The `husk-portmap` plugin: hostPort → container DNAT for TCP and UDP,
//! reachable from other hosts, from the node's localhost (OUTPUT DNAT +
//! route_localnet) and from pods on the same bridge (hairpin masquerade).

pub mod config;
mod conntrack;
pub mod rules;

use std::collections::HashSet;

use crate::iptables::{self, Family};
use crate::plugin::{CmdArgs, Plugin};
use crate::registry::{FamState, Registry, State};
use crate::types::{CniError, CniResult, CniVersion, ErrorCode, NetConf};

pub use config::{Mapping, PortmapConf};
use rules::{Held, Shared};

/// The plugin.
pub struct PortmapPlugin;

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string())
}

/// Serialises nat changes within one network namespace (the shared chains
/// are created on first use, the hostPort check reads the held ports) and
/// gives the registry of what is mapped.
fn lock() -> Result<Registry, CniError> {
    Registry::lock().map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))
}

/// One family's view before ADD: from the registry or from the table.
struct View {
    fam: Family,
    pod: ipnetwork::IpNetwork,
    shared: Shared,
    held: Vec<Held>,
    old_jumps: Vec<String>,
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
        let reg = lock()?;
        let net = &conf.name;
        let id = &args.container_id;
        // The registry answers unless it is stale or this is a re-ADD
        // (whose old jumps only the table knows).
        let mut views = Vec::new();
        for (fam, pod) in &fams {
            let known = reg
                .trusted()
                .and_then(|s| s.fam(*fam))
                .filter(|f| !f.held.iter().any(|h| &h.net == net && &h.id == id));
            let v = match known {
                Some(f) => View {
                    fam: *fam,
                    pod: *pod,
                    shared: f.shared,
                    held: f.held.clone(),
                    old_jumps: Vec::new(),
                },
                None => {
                    let t = iptables::save(*fam, "nat").map_err(internal)?;
                    let dn = rules::dn_chain(net, id);
                    View {
                        fam: *fam,
                        pod: *pod,
                        shared: Shared::of(&t),
                        held: rules::held_ports(&t),
                        old_jumps: t.jumps_to(&dn).cloned().collect(),
                    }
                }
            };
            if let Some((m, owner)) = rules::conflict(&v.held, id, &maps) {
                return Err(CniError::new(
                    ErrorCode::HostPortConflict,
                    format!(
                        "hostPort {}/{}: already mapped to container {owner}",
                        m.protocol, m.host_port
                    ),
                ));
            }
            views.push(v);
        }
        let mark = 1u32 << pc.mark_masq_bit;
        let mut next = reg.trusted().cloned().unwrap_or_default();
        let mut mapped = Vec::new();
        for (n, v) in views.iter().enumerate() {
            let mine: Vec<Mapping> = maps
                .iter()
                .filter(|m| m.host_ip.is_none_or(|ip| Family::of(&ip) == v.fam))
                .cloned()
                .collect();
            let b = rules::add_batch(
                v.shared,
                &v.old_jumps,
                v.fam,
                net,
                id,
                v.pod,
                &mine,
                pc.snat.then_some(mark),
            );
            if let Err(e) = iptables::restore(v.fam, &b) {
                // Undo families already done.
                for done in views.iter().take(n) {
                    if let Ok(t2) = iptables::save(done.fam, "nat") {
                        if let Some(d) = rules::del_batch(&t2, net, id) {
                            let _ = iptables::restore(done.fam, &d);
                        }
                    }
                }
                return Err(internal(e));
            }
            let mut held: Vec<Held> = v
                .held
                .iter()
                .filter(|h| !(&h.net == net && &h.id == id))
                .cloned()
                .collect();
            held.extend(rules::held_of(net, id, &mine));
            mapped.push((v.fam, mine));
            next.set(
                v.fam,
                Some(FamState {
                    shared: v.shared.after_add(pc.snat),
                    held,
                }),
            );
        }
        reg.record(views.len() as u32, Some(next));
        drop(reg);
        // Only now that the DNAT rules are in place: new flows get them.
        for (fam, mine) in &mapped {
            conntrack::flush_stale_udp(*fam, mine);
        }
        if pc.snat && fams.iter().any(|(f, _)| *f == Family::V4) {
            route_localnet(&prev);
        }
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        // Validate, but clean up even when the mappings were not passed again.
        let (_, maps) = PortmapConf::parse(conf)?;
        let reg = lock()?;
        let (net, id) = (&conf.name, &args.container_id);
        // Fast path: the mappings and addresses are known (libcni passes the
        // capability args and the cached result): one restore.
        let fams: Vec<Family> = conf
            .prev_result()
            .ok()
            .flatten()
            .map(|r| families(&r).into_iter().map(|(f, _)| f).collect())
            .unwrap_or_default();
        if !maps.is_empty() && fams == [Family::V4] {
            let b = rules::del_batch_known(net, id, &maps);
            if iptables::restore(Family::V4, &b).is_ok() {
                // The chain is gone, so every jump to it was too.
                let next = reg.trusted().cloned().map(|mut s| {
                    if let Some(f) = s.v4.as_mut() {
                        f.held.retain(|h| !(&h.net == net && &h.id == id));
                    }
                    s
                });
                reg.record(1, next);
                return Ok(());
            }
        }
        // Slow path: read what exists; the registry goes stale and the next
        // ADD rebuilds it from the table.
        for fam in [Family::V4, Family::V6] {
            let t = match iptables::save(fam, "nat") {
                Ok(t) => t,
                Err(e) if fam == Family::V6 => {
                    tracing::debug!(error = %e, "no ip6tables");
                    continue;
                }
                Err(e) => return Err(internal(e)),
            };
            if let Some(b) = rules::del_batch(&t, net, id) {
                iptables::restore(fam, &b).map_err(internal)?;
            }
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        let (pc, maps) = PortmapConf::parse(conf)?;
        if maps.is_empty() {
            return Ok(());
        }
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::invalid_config("prevResult: required for CHECK"))?;
        let reg = lock()?;
        let mut seen = State::default();
        for (fam, pod) in families(&prev) {
            let t = iptables::save(fam, "nat").map_err(internal)?;
            let shared = Shared::of(&t);
            // Reconcile: the registry is rewritten from the table just read
            // (kept only if nothing committed meanwhile).
            seen.set(
                fam,
                Some(FamState {
                    shared,
                    held: rules::held_ports(&t),
                }),
            );
            let need = Shared::default().after_add(pc.snat);
            let missing = [
                (
                    need.dnat_chain && !shared.dnat_chain,
                    "chain CNI-HOSTPORT-DNAT",
                ),
                (need.prerouting && !shared.prerouting, "PREROUTING jump"),
                (need.output && !shared.output, "OUTPUT jump"),
                (
                    need.setmark_chain && !shared.setmark_chain,
                    "chain CNI-HOSTPORT-SETMARK",
                ),
                (
                    need.masq_chain && !shared.masq_chain,
                    "chain CNI-HOSTPORT-MASQ",
                ),
                (
                    need.postrouting && !shared.postrouting,
                    "POSTROUTING jump (ahead of the pods' masquerade jumps)",
                ),
            ];
            if let Some((_, what)) = missing.iter().find(|(m, _)| *m) {
                reg.record(0, Some(seen));
                return Err(CniError::new(
                    ErrorCode::CheckFailed,
                    format!("portmap shared {what} is missing"),
                ));
            }
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
        reg.record(0, Some(seen));
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
        let reg = lock()?;
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
        drop(reg);
        // Locks and registries of network namespaces that no longer exist.
        let gone = crate::registry::gc_files(std::path::Path::new(crate::registry::DIR));
        if !gone.is_empty() {
            tracing::debug!(?gone, "removed registries of deleted netns");
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
