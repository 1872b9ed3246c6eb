//! The `husk-bridge` plugin: a Linux bridge, a veth pair per container,
//! built-in host-local IPAM (or a delegated one), and optional masquerade.

mod attach;
pub mod config;
pub mod masq;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use crate::ipam::delegate::Ipam;
use crate::netlink::{NetNs, NsError};
use crate::plugin::{CmdArgs, Plugin};
use crate::types::{CniError, CniResult, CniVersion, ErrorCode, NetConf};

pub use config::BridgeConf;

/// The plugin.
pub struct BridgePlugin;

/// The host-side veth name: stable per (container, interface) so that DEL
/// finds it even when the container's netns is gone.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    use sha2::{Digest, Sha512};
    let d = Sha512::digest(format!("{container_id}/{ifname}").as_bytes());
    format!("veth{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
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
        let ipam_result = ipam.add(conf, args)?;
        if ipam_result.ips.is_empty() {
            let _ = ipam.del(conf, args);
            return Err(CniError::internal("ipam returned no address"));
        }
        let out = attach::attach(args, conf, &bc, &netns, &ipam_result);
        match out {
            Ok(r) => Ok(r),
            Err(e) => {
                // Leave nothing behind: links, rules and the allocation.
                let ips: Vec<IpAddr> = ipam_result.ips.iter().map(|i| i.address.ip()).collect();
                if let Err(de) = attach::detach(args, &bc, Some(&netns)) {
                    tracing::warn!(error = %de, "rollback: remove links");
                }
                if bc.ip_masq {
                    let _ = masq::teardown(&conf.name, &args.container_id, &ips);
                }
                let _ = ipam.del(conf, args);
                Err(e)
            }
        }
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
        // A netns that is already gone is fine: the host veth is removed by name.
        let netns = if args.netns.is_empty() {
            None
        } else {
            NetNs::open(Path::new(&args.netns)).ok()
        };
        // Rules and links are independent: remove them concurrently.
        std::thread::scope(|s| {
            let masq_job = bc
                .ip_masq
                .then(|| s.spawn(|| masq::teardown(&conf.name, &args.container_id, &ips)));
            let links = attach::detach(args, &bc, netns.as_ref());
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
    fn host_veth_names_are_stable_and_short() {
        let a = host_veth_name("c1", "eth0");
        assert_eq!(a, host_veth_name("c1", "eth0"));
        assert_ne!(a, host_veth_name("c2", "eth0"));
        assert!(a.len() <= 15);
    }
}
