//! Stale UDP conntrack entries of newly mapped hostPorts.
//!
//! A UDP flow to a hostPort that conntrack tracked before the DNAT rule
//! existed (say while the previous pod restarted) keeps its NAT-less entry:
//! the nat table only sees a flow's first packet, so the datagrams go on to
//! the node, not the pod, until the entry times out. As the reference
//! plugin does after writing its rules, ADD deletes the UDP entries whose
//! original destination is a mapped hostPort; failing to is only logged.

use std::net::IpAddr;

use nix::sys::socket::AddressFamily;

use super::Mapping;
use crate::iptables::Family;
use crate::netlink::conntrack;

/// Delete `fam`'s UDP entries to the hostPorts of `maps` (the mappings of
/// that family), in this process's network namespace (where the rules are).
pub fn flush_stale_udp(fam: Family, maps: &[Mapping]) {
    let targets: Vec<(u16, Option<IpAddr>)> = maps
        .iter()
        .filter(|m| m.protocol == "udp")
        .map(|m| (m.host_port, m.host_ip))
        .collect();
    if targets.is_empty() {
        return;
    }
    let af = match fam {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    match conntrack::delete_udp_to(af, &targets) {
        Ok(n) => tracing::debug!(family = ?fam, deleted = n, "stale UDP conntrack entries"),
        Err(e) => tracing::warn!(
            family = ?fam,
            error = %e,
            "could not delete stale UDP conntrack entries of the hostPorts"
        ),
    }
}
