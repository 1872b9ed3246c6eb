//! The `husk-bridge` plugin: a Linux bridge, a veth pair per container,
//! built-in host-local IPAM (or a delegated one), and optional masquerade.

mod attach;
pub mod config;
pub mod masq;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use crate::ipam::delegate::{Ipam, Reserved};
use crate::netlink::{NetNs, NsError};
use crate::plugin::{CmdArgs, Plugin};
use crate::types::{CniError, CniResult, CniVersion, ErrorCode, NetConf};

pub use config::BridgeConf;

/// The plugin.
pub struct BridgePlugin;

/// A fresh host-side veth name, `veth` + 8 random hex digits (as the
/// reference plugin names them). Never derived from the container id: two
/// ADDs, even with one id, never contend for a name, and DEL and CHECK find
/// the host end through the container end's peer index.
pub fn random_host_veth_name() -> Result<String, CniError> {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| CniError::internal(format!("/dev/urandom: {e}")))?;
    Ok(format!(
        "veth{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3]
    ))
}

/// The current-thread runtime the plugin's netlink work runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| CniError::internal(format!("tokio runtime: {e}")))
}

pub(crate) fn open_netns(path: &str) -> Result<NetNs, CniError> {
    NetNs::open(Path::new(path)).map_err(|e| match e {
        NsError::Open { .. } | NsError::NotNetns { .. } => {
            CniError::new(ErrorCode::UnknownContainer, format!("CNI_NETNS: {e}"))
        }
        other => CniError::internal(other.to_string()),
    })
}

fn internal(e: impl std::fmt::Display) -> CniError {
    CniError::internal(e.to_string())
}

/// Undo a failed ADD: exactly what it created (its veth pair, its
/// masquerade rules, the addresses it reserved), never an interface or an
/// address that was there before, which may belong to another attachment.
fn rollback(
    args: &CmdArgs,
    conf: &NetConf,
    ipam: &Ipam,
    ipam_result: &CniResult,
    reserved: &Reserved,
    created: &attach::Created,
) {
    if let Err(e) = attach::remove_created(created) {
        tracing::warn!(error = %e, "rollback: remove the veth pair");
    }
    // Rules for addresses this ADD did not reserve are those of the ADD
    // that did (this one was a retry): they stay.
    let own_addresses = match reserved {
        Reserved::HostLocal(new) => !new.is_empty(),
        Reserved::Delegated => true,
    };
    if created.masq && own_addresses {
        let ips: Vec<IpAddr> = ipam_result.ips.iter().map(|i| i.address.ip()).collect();
        if let Err(e) = masq::teardown(&conf.name, &args.container_id, &ips) {
            tracing::warn!(error = %e, "rollback: remove masquerade rules");
        }
    }
    if let Err(e) = ipam.undo(conf, args, reserved) {
        tracing::warn!(error = %e, "rollback: give back addresses");
    }
}

fn valid_attachments(conf: &NetConf) -> Result<HashSet<(String, String)>, CniError> {
    let v = conf
        .extra
        .get("cni.dev/valid-attachments")
        .cloned()
        .unwrap_or(serde_json::Value::Array(vec![]));
    let list: Vec<crate::libcni::Attachment> = serde_json::from_value(v)
        .map_err(|e| CniError::from_json("cni.dev/valid-attachments", &e))?;
    Ok(list
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect())
}

impl Plugin for BridgePlugin {
    fn add(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<CniResult, CniError> {
        let bc = BridgeConf::parse(conf)?;
        let ipam = Ipam::from_conf(conf)?;
        let netns = open_netns(&args.netns)?;
        let (ipam_result, reserved) = ipam.add(conf, args)?;
        let mut created = attach::Created::default();
        let out = if ipam_result.ips.is_empty() {
            Err(CniError::internal("ipam returned no address"))
        } else {
            attach::attach(args, conf, &bc, &netns, &ipam_result, &mut created)
        };
        if out.is_err() {
            rollback(args, conf, &ipam, &ipam_result, &reserved, &created);
        }
        out
    }

    fn del(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        let bc = BridgeConf::parse(conf)?;
        let ipam = Ipam::from_conf(conf)?;
        // The addresses to unmasquerade: from prevResult, else from the store.
        let mut ips: Vec<IpAddr> = conf
            .prev_result()
            .ok()
            .flatten()
            .map(|r| r.container_ips().iter().map(|i| i.address.ip()).collect())
            .unwrap_or_default();
        if ips.is_empty() {
            if let Ipam::HostLocal(c) = &ipam {
                let store = crate::ipam::AllocStore::new(&c.data_dir, &conf.name);
                if let Ok(l) = store.lock() {
                    ips = l.find(&args.container_id, &args.ifname).unwrap_or_default();
                }
            }
        }
        ipam.del(conf, args)?;
        // A netns that is already gone took its veth end, and so the pair,
        // with it; without one, the host end named in prevResult goes.
        let netns = if args.netns.is_empty() {
            None
        } else {
            NetNs::open(Path::new(&args.netns)).ok()
        };
        let prev = conf.prev_result().ok().flatten();
        // Rules and links are independent: remove them concurrently.
        std::thread::scope(|s| {
            let masq_job = bc
                .ip_masq
                .then(|| s.spawn(|| masq::teardown(&conf.name, &args.container_id, &ips)));
            let links = attach::detach(args, &bc, netns.as_ref(), prev.as_ref());
            let masq_res =
                masq_job.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            links?;
            if let Some(r) = masq_res {
                r.map_err(internal)?;
            }
            Ok(())
        })
    }

    fn check(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        let bc = BridgeConf::parse(conf)?;
        let ipam = Ipam::from_conf(conf)?;
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::invalid_config("prevResult: required for CHECK"))?;
        let ips = prev.container_ips();
        ipam.check(conf, args, &ips)?;
        let netns = open_netns(&args.netns)?;
        attach::verify(args, &bc, &netns, &prev)?;
        if bc.ip_masq {
            let addrs: Vec<IpAddr> = ips.iter().map(|i| i.address.ip()).collect();
            masq::verify(&conf.name, &args.container_id, &addrs)
                .map_err(internal)?
                .map_err(|m| CniError::new(ErrorCode::CheckFailed, m))?;
        }
        Ok(())
    }

    fn gc(&self, args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        let bc = BridgeConf::parse(conf)?;
        let ipam = Ipam::from_conf(conf)?;
        let valid = valid_attachments(conf)?;
        ipam.gc(conf, args, &valid)?;
        if bc.ip_masq {
            let ids: HashSet<String> = valid.iter().map(|(id, _)| id.clone()).collect();
            masq::gc(&conf.name, &ids).map_err(internal)?;
        }
        Ok(())
    }

    fn status(&self, _args: &CmdArgs, conf: &NetConf, _v: CniVersion) -> Result<(), CniError> {
        BridgeConf::parse(conf)?;
        if let Ipam::HostLocal(c) = Ipam::from_conf(conf)? {
            let store = crate::ipam::AllocStore::new(&c.data_dir, &conf.name);
            store.lock().map_err(|e| {
                CniError::new(ErrorCode::PluginNotAvailable, format!("ipam store: {e}"))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_random_and_short() {
        let names: HashSet<String> = (0..64).map(|_| random_host_veth_name().unwrap()).collect();
        assert_eq!(names.len(), 64, "names repeat: {names:?}");
        for n in &names {
            assert_eq!(n.len(), 12, "{n}");
            assert!(n.starts_with("veth"));
            assert!(n[4..].chars().all(|c| c.is_ascii_hexdigit()), "{n}");
        }
    }
}
