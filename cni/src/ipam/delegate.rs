//! Running the IPAM step: built-in host-local, or an IPAM plugin binary
//! executed the way libcni would.

use std::collections::HashSet;

use crate::libcni::{ExecError, InvokeArgs, PluginExec};
use crate::plugin::CmdArgs;
use crate::types::{CniError, CniResult, ErrorCode, IpConfig, NetConf};

use super::alloc::to_u128;
use super::config::HostLocalConfig;
use super::store::AllocStore;
use ipnetwork::IpNetwork;

/// The IPAM a config asks for.
#[derive(Debug, Clone)]
pub enum Ipam {
    /// The built-in host-local.
    HostLocal(HostLocalConfig),
    /// Another plugin, run from CNI_PATH.
    Delegated(String),
}

fn exec_to_cni(e: ExecError) -> CniError {
    match e {
        ExecError::Plugin { error, plugin, .. } => CniError {
            msg: format!("ipam plugin {plugin}: {}", error.msg),
            ..*error
        },
        ExecError::NotFound { .. } => CniError::invalid_config(format!("ipam.type: {e}")),
        other => CniError::internal(format!("ipam: {other}")),
    }
}

impl Ipam {
    /// Pick and validate the IPAM of `conf`.
    pub fn from_conf(conf: &NetConf) -> Result<Ipam, CniError> {
        let ipam = conf
            .ipam
            .as_ref()
            .ok_or_else(|| CniError::invalid_config("ipam: missing"))?;
        let ty = ipam
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| CniError::invalid_config("ipam.type: missing"))?;
        match ty {
            "host-local" | "husk-host-local" => Ok(Ipam::HostLocal(HostLocalConfig::parse(ipam)?)),
            "" => Err(CniError::invalid_config("ipam.type: empty")),
            other if other.contains('/') => Err(CniError::invalid_config(format!(
                "ipam.type: {other:?} is not a plugin name"
            ))),
            other => Ok(Ipam::Delegated(other.to_string())),
        }
    }

    fn run(plugin: &str, args: &CmdArgs, command: &str) -> Result<Vec<u8>, CniError> {
        let exec = PluginExec::new(args.path.clone());
        let a = InvokeArgs {
            command,
            container_id: &args.container_id,
            netns: &args.netns,
            ifname: &args.ifname,
            args: args
                .args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        };
        exec.run(plugin, &a, &args.stdin).map_err(exec_to_cni)
    }

    /// Allocate addresses for the attachment.
    pub fn add(&self, conf: &NetConf, args: &CmdArgs) -> Result<CniResult, CniError> {
        match self {
            Ipam::HostLocal(c) => host_local_add(c, &conf.name, &args.container_id, &args.ifname),
            Ipam::Delegated(p) => {
                let out = Self::run(p, args, "ADD")?;
                serde_json::from_slice(&out)
                    .map_err(|e| CniError::from_json(&format!("ipam plugin {p} result"), &e))
            }
        }
    }

    /// Release the attachment's addresses (idempotent).
    pub fn del(&self, conf: &NetConf, args: &CmdArgs) -> Result<(), CniError> {
        match self {
            Ipam::HostLocal(c) => {
                let store = AllocStore::new(&c.data_dir, &conf.name);
                let l = store
                    .lock()
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                l.release(&args.container_id, &args.ifname)
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                Ok(())
            }
            Ipam::Delegated(p) => Self::run(p, args, "DEL").map(|_| ()),
        }
    }

    /// Check that the attachment still owns `ips`.
    pub fn check(&self, conf: &NetConf, args: &CmdArgs, ips: &[&IpConfig]) -> Result<(), CniError> {
        match self {
            Ipam::HostLocal(c) => {
                let store = AllocStore::new(&c.data_dir, &conf.name);
                let l = store
                    .lock()
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                let held = l
                    .find(&args.container_id, &args.ifname)
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                for ip in ips {
                    if !held.contains(&ip.address.ip()) {
                        return Err(CniError::new(
                            ErrorCode::CheckFailed,
                            format!(
                                "ipam: address {} is not allocated to container {}",
                                ip.address.ip(),
                                args.container_id
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Ipam::Delegated(p) => Self::run(p, args, "CHECK").map(|_| ()),
        }
    }

    /// Free allocations of attachments not in `valid` (GC).
    pub fn gc(
        &self,
        conf: &NetConf,
        args: &CmdArgs,
        valid: &HashSet<(String, String)>,
    ) -> Result<(), CniError> {
        match self {
            Ipam::HostLocal(c) => {
                let store = AllocStore::new(&c.data_dir, &conf.name);
                let l = store
                    .lock()
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                let freed = l
                    .release_all_except(valid)
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                for a in freed {
                    tracing::info!(ip = %a.ip, container = %a.container_id, "GC freed address");
                }
                Ok(())
            }
            Ipam::Delegated(p) => Self::run(p, args, "GC").map(|_| ()),
        }
    }
}

/// host-local ADD: one address per range set, returning an existing
/// allocation when the attachment already has one (ADD retried).
pub fn host_local_add(
    c: &HostLocalConfig,
    network: &str,
    id: &str,
    ifname: &str,
) -> Result<CniResult, CniError> {
    let store = AllocStore::new(&c.data_dir, network);
    let ioe = |e: super::store::StoreError| CniError::new(ErrorCode::IoFailure, e.to_string());
    let l = store.lock().map_err(ioe)?;
    let held = l.find(id, ifname).map_err(ioe)?;
    let mut ips = Vec::new();
    let mut new = Vec::new();
    for (si, set) in c.range_sets.iter().enumerate() {
        let existing = held
            .iter()
            .find_map(|ip| set.range_of(*ip).map(|r| (*ip, r)));
        let (ip, range) = match existing {
            Some(x) => x,
            None => {
                let Some((ip, range)) = set.next_free(l.last_reserved(si), |x| l.is_reserved(x))
                else {
                    // Undo this ADD's reservations of earlier sets.
                    for ip in &new {
                        let _ = std::fs::remove_file(store.dir().join(format!("{ip}")));
                    }
                    return Err(CniError::new(
                        ErrorCode::NoAddressAvailable,
                        format!("ipam: no free address in range set {si} of network {network}"),
                    ));
                };
                l.reserve(ip, id, ifname, si).map_err(ioe)?;
                new.push(ip);
                (ip, range)
            }
        };
        let address = IpNetwork::new(ip, range.subnet.prefix())
            .map_err(|e| CniError::internal(format!("ipam: {ip}: {e}")))?;
        ips.push(IpConfig {
            address,
            gateway: range.gateway,
            interface: None,
        });
    }
    ips.sort_by_key(|i| (i.address.is_ipv6(), to_u128(i.address.ip())));
    Ok(CniResult {
        cni_version: String::new(),
        ips,
        routes: c.routes.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_is_idempotent_and_distinct() {
        let d = tempfile::tempdir().unwrap();
        let c = HostLocalConfig::parse(&json!({"type":"host-local","subnet":"10.5.0.0/24",
            "dataDir": d.path(), "routes":[{"dst":"0.0.0.0/0"}]}))
        .unwrap();
        let a = host_local_add(&c, "n", "c1", "eth0").unwrap();
        let again = host_local_add(&c, "n", "c1", "eth0").unwrap();
        assert_eq!(a.ips, again.ips);
        assert_eq!(a.ips[0].address.to_string(), "10.5.0.2/24");
        assert_eq!(a.ips[0].gateway.unwrap().to_string(), "10.5.0.1");
        let b = host_local_add(&c, "n", "c2", "eth0").unwrap();
        assert_eq!(b.ips[0].address.to_string(), "10.5.0.3/24");
        assert_eq!(b.routes.len(), 1);
    }

    #[test]
    fn exhaustion_is_an_error_and_rolls_back() {
        let d = tempfile::tempdir().unwrap();
        let c = HostLocalConfig::parse(&json!({"type":"host-local","dataDir": d.path(),
            "ranges":[[{"subnet":"10.6.0.0/24"}],[{"subnet":"10.7.0.0/30"}]]}))
        .unwrap();
        // 10.7.0.0/30 has exactly one address (.2) besides the gateway.
        host_local_add(&c, "n", "c1", "eth0").unwrap();
        let e = host_local_add(&c, "n", "c2", "eth0").unwrap_err();
        assert_eq!(e.code, ErrorCode::NoAddressAvailable as u32);
        let store = AllocStore::new(d.path(), "n");
        assert_eq!(store.lock().unwrap().list().unwrap().len(), 2);
    }
}
