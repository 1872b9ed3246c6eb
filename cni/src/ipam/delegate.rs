//! Running the IPAM step: built-in host-local, or an IPAM plugin binary
//! executed the way libcni would.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::libcni::{ExecError, InvokeArgs, PluginExec};
use crate::plugin::CmdArgs;
use crate::types::{CniError, CniResult, ErrorCode, IpConfig, NetConf, validate};

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
            "host-local" | "husk-host-local" => {
                // The network name names the store's directory.
                validate::network_name(&conf.name)?;
                Ok(Ipam::HostLocal(HostLocalConfig::parse(ipam)?))
            }
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

    /// Allocate addresses for the attachment; also says what this call
    /// reserved, for [`Ipam::undo`].
    pub fn add(&self, conf: &NetConf, args: &CmdArgs) -> Result<(CniResult, Reserved), CniError> {
        match self {
            Ipam::HostLocal(c) => {
                let (r, new) = host_local_add(c, &conf.name, &args.container_id, &args.ifname)?;
                Ok((r, Reserved::HostLocal(new)))
            }
            Ipam::Delegated(p) => {
                let out = Self::run(p, args, "ADD")?;
                let r = serde_json::from_slice(&out)
                    .map_err(|e| CniError::from_json(&format!("ipam plugin {p} result"), &e));
                match r {
                    Ok(r) => Ok((r, Reserved::Delegated)),
                    Err(e) => {
                        let _ = Self::run(p, args, "DEL");
                        Err(e)
                    }
                }
            }
        }
    }

    /// Give back what a failed ADD's [`Ipam::add`] reserved, and nothing
    /// else: addresses the attachment held before (an ADD retried) stay.
    pub fn undo(
        &self,
        conf: &NetConf,
        args: &CmdArgs,
        reserved: &Reserved,
    ) -> Result<(), CniError> {
        match (self, reserved) {
            (Ipam::HostLocal(c), Reserved::HostLocal(ips)) => {
                if ips.is_empty() {
                    return Ok(());
                }
                let store = AllocStore::new(&c.data_dir, &conf.name);
                let l = store
                    .lock()
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))?;
                l.release_owned(ips, &args.container_id, &args.ifname)
                    .map_err(|e| CniError::new(ErrorCode::IoFailure, e.to_string()))
            }
            // A delegated plugin keeps its own books: its DEL is the undo.
            _ => self.del(conf, args),
        }
    }

    /// Release the attachment's addresses (idempotent).
    pub fn del(&self, conf: &NetConf, args: &CmdArgs) -> Result<(), CniError> {
        match self {
            Ipam::HostLocal(c) => {
                validate_attachment(args)?;
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
                validate_attachment(args)?;
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

/// What one ADD's IPAM step reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// host-local: the addresses this ADD reserved (none when the
    /// attachment already held them: an ADD retried).
    HostLocal(Vec<IpAddr>),
    /// A delegated plugin, whose DEL undoes its ADD.
    Delegated,
}

/// The id and interface name name files in the store: held to the spec's
/// rules whoever calls (the plugin's environment checks them too).
fn validate_attachment(args: &CmdArgs) -> Result<(), CniError> {
    validate::container_id(&args.container_id)?;
    validate::ifname(&args.ifname)
}

/// host-local ADD: one address per range set, returning an existing
/// allocation when the attachment already has one (ADD retried), and the
/// addresses this call newly reserved.
pub fn host_local_add(
    c: &HostLocalConfig,
    network: &str,
    id: &str,
    ifname: &str,
) -> Result<(CniResult, Vec<IpAddr>), CniError> {
    validate::network_name(network)?;
    validate::container_id(id)?;
    validate::ifname(ifname)?;
    let store = AllocStore::new(&c.data_dir, network);
    let ioe = |e: super::store::StoreError| CniError::new(ErrorCode::IoFailure, e.to_string());
    let l = store.lock().map_err(ioe)?;
    let held = l.find(id, ifname).map_err(ioe)?;
    let mut ips = Vec::new();
    let mut new = Vec::new();
    // Undo this ADD's reservations of earlier sets.
    let give_back = |new: &[IpAddr]| {
        if let Err(e) = l.release_owned(new, id, ifname) {
            tracing::warn!(error = %e, "ipam: give back a failed ADD's addresses");
        }
    };
    for (si, set) in c.range_sets.iter().enumerate() {
        let existing = held
            .iter()
            .find_map(|ip| set.range_of(*ip).map(|r| (*ip, r)));
        let (ip, range) = match existing {
            Some(x) => x,
            None => {
                let Some((ip, range)) = set.next_free(l.last_reserved(si), |x| l.is_reserved(x))
                else {
                    give_back(&new);
                    return Err(CniError::new(
                        ErrorCode::NoAddressAvailable,
                        format!("ipam: no free address in range set {si} of network {network}"),
                    ));
                };
                match l.reserve(ip, id, ifname, si) {
                    Ok(true) => new.push(ip),
                    Ok(false) => {
                        give_back(&new);
                        return Err(CniError::internal(format!(
                            "ipam: {ip} was taken while the store was locked"
                        )));
                    }
                    Err(e) => {
                        // A half-written file of this call is ours too.
                        new.push(ip);
                        give_back(&new);
                        return Err(ioe(e));
                    }
                }
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
    let result = CniResult {
        cni_version: String::new(),
        ips,
        routes: c.routes.clone(),
        ..Default::default()
    };
    Ok((result, new))
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
        let (a, new) = host_local_add(&c, "n", "c1", "eth0").unwrap();
        assert_eq!(new, vec![a.ips[0].address.ip()]);
        let (again, new) = host_local_add(&c, "n", "c1", "eth0").unwrap();
        assert_eq!(a.ips, again.ips);
        assert!(new.is_empty(), "a retried ADD reserved {new:?}");
        assert_eq!(a.ips[0].address.to_string(), "10.5.0.2/24");
        assert_eq!(a.ips[0].gateway.unwrap().to_string(), "10.5.0.1");
        let (b, _) = host_local_add(&c, "n", "c2", "eth0").unwrap();
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

    #[test]
    fn refuses_names_that_leave_the_store() {
        let d = tempfile::tempdir().unwrap();
        let c = HostLocalConfig::parse(&json!({"type":"host-local","subnet":"10.8.0.0/24",
            "dataDir": d.path().join("ipam")}))
        .unwrap();
        let e = host_local_add(&c, "n", "../../x/y", "eth0").unwrap_err();
        assert_eq!(e.code, 4);
        let e = host_local_add(&c, "../n", "c1", "eth0").unwrap_err();
        assert_eq!(e.code, 7);
        let e = host_local_add(&c, "n", "c1", "../e").unwrap_err();
        assert_eq!(e.code, 4);
        // Not even the store's directory was made.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
