//! The link and address work of ADD, DEL and CHECK.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::config::BridgeConf;
use super::{internal, masq, random_host_veth_name, runtime};
use crate::netlink::{NetNs, Netlink};
use crate::plugin::CmdArgs;
use crate::types::{CniError, CniResult, ErrorCode, Interface, NetConf, Route};

fn sysctl(path: &str, value: &str) -> Result<(), CniError> {
    match std::fs::read_to_string(path) {
        Ok(v) if v.trim() == value => Ok(()),
        _ => std::fs::write(path, value)
            .map_err(|e| CniError::internal(format!("sysctl {path}: {e}"))),
    }
}

/// What one ADD created, so that its failure removes exactly that.
#[derive(Debug, Default)]
pub struct Created {
    /// The host end of the veth pair this ADD made (its own random name;
    /// deleting it takes the container end along).
    pub host_veth: Option<String>,
    /// This ADD installed masquerade rules.
    pub masq: bool,
}

/// How often a host veth name is drawn again when it is taken.
const NAME_TRIES: usize = 8;

/// Create the links and addresses, then masquerade; returns the result.
/// What it creates is recorded in `created`, also when it fails.
pub fn attach(
    args: &CmdArgs,
    conf: &NetConf,
    bc: &BridgeConf,
    netns: &NetNs,
    ipam: &CniResult,
    created: &mut Created,
) -> Result<CniResult, CniError> {
    // The masquerade rules only need the addresses: install them (an
    // iptables-restore process) while the links are being set up.
    let addrs: Vec<IpNetwork> = ipam.ips.iter().map(|i| i.address).collect();
    created.masq = bc.ip_masq;
    let host_veth = &mut created.host_veth;
    std::thread::scope(|s| {
        let masq_job = bc
            .ip_masq
            .then(|| s.spawn(|| masq::setup(&conf.name, &args.container_id, &addrs)));
        let links = links(args, conf, bc, netns, ipam, host_veth);
        let masq_res = masq_job.map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        let result = links?;
        if let Some(r) = masq_res {
            r.map_err(internal)?;
        }
        Ok(result)
    })
}

fn links(
    args: &CmdArgs,
    conf: &NetConf,
    bc: &BridgeConf,
    netns: &NetNs,
    ipam: &CniResult,
    created: &mut Option<String>,
) -> Result<CniResult, CniError> {
    let rt = runtime()?;
    let mut result = rt.block_on(async {
        let host = Netlink::current().map_err(internal)?;
        let cont = Netlink::in_ns(netns).map_err(internal)?;
        let br = host
            .ensure_bridge(&bc.bridge, bc.mtu, bc.promisc_mode)
            .await
            .map_err(|e| CniError::internal(format!("bridge {}: {e}", bc.bridge)))?;
        let exists = || {
            CniError::internal(format!(
                "interface {} already exists in {}",
                args.ifname, args.netns
            ))
        };
        if cont.link(&args.ifname).await.map_err(internal)?.is_some() {
            return Err(exists());
        }
        // The kernel creates both ends or neither: EEXIST is either a host
        // name that is taken (draw another) or a container interface that
        // appeared meanwhile (another ADD's: refuse, touch nothing).
        let mut tries = 0;
        let hv_name = loop {
            let name = random_host_veth_name()?;
            match host.create_veth(&name, &args.ifname, netns, bc.mtu).await {
                Ok(()) => break name,
                Err(e) if e.errno() == Some(libc::EEXIST) => {
                    tries += 1;
                    if host.link(&name).await.map_err(internal)?.is_none() {
                        return Err(exists());
                    }
                    if tries == NAME_TRIES {
                        return Err(CniError::internal(format!(
                            "no free host veth name in {NAME_TRIES} tries"
                        )));
                    }
                }
                Err(e) => return Err(internal(e)),
            }
        };
        *created = Some(hv_name.clone());
        let hv = host
            .link(&hv_name)
            .await
            .map_err(internal)?
            .ok_or_else(|| CniError::internal(format!("veth {hv_name} vanished")))?;
        host.attach_to_bridge(hv.index, br.index, bc.hairpin_mode)
            .await
            .map_err(internal)?;
        let cv = cont
            .link(&args.ifname)
            .await
            .map_err(internal)?
            .filter(|cv| cv.link == Some(hv.index))
            .ok_or_else(|| {
                CniError::internal(format!(
                    "{} in {} is no longer the peer of {hv_name}",
                    args.ifname, args.netns
                ))
            })?;
        for ip in &ipam.ips {
            cont.add_addr(cv.index, ip.address)
                .await
                .map_err(internal)?;
        }
        cont.set_up(cv.index).await.map_err(internal)?;

        let mut routes: Vec<Route> = ipam.routes.clone();
        if bc.is_default_gateway {
            for ip in &ipam.ips {
                let dst: IpNetwork = if ip.address.is_ipv4() {
                    "0.0.0.0/0".parse().map_err(internal)?
                } else {
                    "::/0".parse().map_err(internal)?
                };
                if ip.gateway.is_some() && !routes.iter().any(|r| r.dst == dst) {
                    routes.push(Route {
                        dst,
                        gw: ip.gateway,
                        mtu: None,
                        priority: None,
                        table: None,
                    });
                }
            }
        }
        for r in &routes {
            let gw = r.gw.or_else(|| {
                ipam.ips
                    .iter()
                    .find(|i| i.address.is_ipv4() == r.dst.is_ipv4())
                    .and_then(|i| i.gateway)
            });
            cont.add_route(r.dst, gw, cv.index).await.map_err(|e| {
                CniError::internal(format!("route {} in {}: {e}", r.dst, args.netns))
            })?;
        }

        if bc.is_gateway {
            for ip in &ipam.ips {
                if let Some(gw) = ip.gateway {
                    let a = IpNetwork::new(gw, ip.address.prefix()).map_err(internal)?;
                    host.add_addr(br.index, a).await.map_err(internal)?;
                    if gw.is_ipv4() {
                        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
                    } else {
                        sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
                    }
                }
            }
        }
        // The bridge's MAC settles once it has a port.
        let br = host.link(&bc.bridge).await.map_err(internal)?.unwrap_or(br);
        let mut ips = ipam.ips.clone();
        for ip in &mut ips {
            ip.interface = Some(2);
        }
        Ok(CniResult {
            cni_version: String::new(),
            interfaces: vec![
                Interface {
                    name: br.name,
                    mac: br.mac,
                    ..Default::default()
                },
                Interface {
                    name: hv.name,
                    mac: hv.mac,
                    ..Default::default()
                },
                Interface {
                    name: cv.name,
                    mac: cv.mac,
                    sandbox: args.netns.clone(),
                    ..Default::default()
                },
            ],
            ips,
            routes,
            dns: ipam.dns.clone(),
        })
    })?;
    if let Some(dns) = conf.extra.get("dns") {
        if result.dns.is_empty() {
            result.dns =
                serde_json::from_value(dns.clone()).map_err(|e| CniError::from_json("dns", &e))?;
        }
    }
    Ok(result)
}

/// Remove the veth pair a failed ADD created (by the random name it drew).
pub fn remove_created(created: &Created) -> Result<(), CniError> {
    let Some(name) = &created.host_veth else {
        return Ok(());
    };
    let rt = runtime()?;
    rt.block_on(async {
        let host = Netlink::current().map_err(internal)?;
        if let Some(l) = host.link(name).await.map_err(internal)? {
            host.del_link(l.index).await.map_err(internal)?;
        }
        Ok(())
    })
}

/// Remove the veth pair: the container end in the netns, which takes its
/// peer along. Without a netns (gone, or not given), the host veth named in
/// `prev` is removed when it is still there. Nothing there is fine.
pub fn detach(
    args: &CmdArgs,
    bc: &BridgeConf,
    netns: Option<&NetNs>,
    prev: Option<&CniResult>,
) -> Result<(), CniError> {
    let rt = runtime()?;
    rt.block_on(async {
        if let Some(ns) = netns {
            let cont = Netlink::in_ns(ns).map_err(internal)?;
            if let Some(l) = cont.link(&args.ifname).await.map_err(internal)? {
                if l.kind.as_deref() == Some("veth") {
                    cont.del_link(l.index).await.map_err(internal)?;
                }
            }
            return Ok(());
        }
        let host = Netlink::current().map_err(internal)?;
        let named = prev
            .into_iter()
            .flat_map(|r| &r.interfaces)
            .filter(|i| i.sandbox.is_empty() && i.name != bc.bridge && i.name.starts_with("veth"));
        for itf in named {
            if let Some(l) = host.link(&itf.name).await.map_err(internal)? {
                if l.kind.as_deref() == Some("veth") {
                    host.del_link(l.index).await.map_err(internal)?;
                }
            }
        }
        Ok(())
    })
}

fn check_failed(msg: String) -> CniError {
    CniError::new(ErrorCode::CheckFailed, msg)
}

/// CHECK: the container interface with its addresses, the host veth on the bridge.
pub fn verify(
    args: &CmdArgs,
    bc: &BridgeConf,
    netns: &NetNs,
    prev: &CniResult,
) -> Result<(), CniError> {
    let rt = runtime()?;
    rt.block_on(async {
        let host = Netlink::current().map_err(internal)?;
        let cont = Netlink::in_ns(netns).map_err(internal)?;
        let br = host
            .link(&bc.bridge)
            .await
            .map_err(internal)?
            .ok_or_else(|| check_failed(format!("bridge {} is missing", bc.bridge)))?;
        let cv = cont
            .link(&args.ifname)
            .await
            .map_err(internal)?
            .ok_or_else(|| check_failed(format!("{} is missing in {}", args.ifname, args.netns)))?;
        // The host end is the container end's peer, whatever its name.
        let peer = cv
            .link
            .filter(|_| cv.kind.as_deref() == Some("veth"))
            .ok_or_else(|| {
                check_failed(format!("{} in {} is not a veth", args.ifname, args.netns))
            })?;
        let hv = host
            .link_by_index(peer)
            .await
            .map_err(internal)?
            .ok_or_else(|| check_failed(format!("the host veth of {} is missing", args.ifname)))?;
        if hv.master != Some(br.index) {
            return Err(check_failed(format!(
                "host veth {} is not on bridge {}",
                hv.name, bc.bridge
            )));
        }
        if !cont.is_up(cv.index).await.map_err(internal)? {
            return Err(check_failed(format!("{} is down", args.ifname)));
        }
        let have = cont.addrs(cv.index).await.map_err(internal)?;
        for ip in prev.container_ips() {
            let want: IpAddr = ip.address.ip();
            if !have
                .iter()
                .any(|a| a.ip() == want && a.prefix() == ip.address.prefix())
            {
                return Err(check_failed(format!(
                    "address {} is missing on {} in {}",
                    ip.address, args.ifname, args.netns
                )));
            }
        }
        Ok(())
    })
}
