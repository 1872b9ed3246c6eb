//! The kernel's connection tracking table over NETLINK_NETFILTER
//! (ctnetlink): list entries and delete them, in the calling thread's
//! network namespace. Used by husk-portmap to drop stale UDP flows.

mod wire;

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

pub use wire::{Flow, Tuple, WireError};

/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// A conntrack request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The netlink socket could not be opened (no nfnetlink in this kernel).
    #[error("NETLINK_NETFILTER socket: {0}")]
    Socket(nix::Error),
    /// Sending or receiving failed.
    #[error("ctnetlink {what}: {cause}")]
    Io {
        /// The request.
        what: &'static str,
        /// The errno.
        cause: nix::Error,
    },
    /// The kernel refused a request (e.g. no nf_conntrack_netlink).
    #[error("ctnetlink {what}: the kernel answered {cause}")]
    Kernel {
        /// The request.
        what: &'static str,
        /// The kernel's errno.
        cause: nix::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("ctnetlink {what}: {cause}")]
    Wire {
        /// The request.
        what: &'static str,
        /// What was wrong.
        cause: WireError,
    },
}

/// A ctnetlink socket.
pub struct Conntrack {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

/// Room for one datagram; the kernel sizes dump datagrams to what
/// receivers took before (at most 32 KiB).
const BUF_LEN: usize = 64 * 1024;

fn errno(e: i32) -> nix::Error {
    nix::Error::from_raw(e)
}

impl Conntrack {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack, ConntrackError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(ConntrackError::Socket)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(ConntrackError::Socket)?;
        // The kernel answers at once; never let a plugin hang on it.
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(5, 0))
            .map_err(ConntrackError::Socket)?;
        Ok(Conntrack {
            fd,
            seq: 0,
            buf: vec![0; BUF_LEN],
        })
    }

    fn send(
        &mut self,
        what: &'static str,
        req: impl FnOnce(u32) -> Vec<u8>,
    ) -> Result<u32, ConntrackError> {
        self.seq = self.seq.wrapping_add(1);
        let msg = req(self.seq);
        send(self.fd.as_raw_fd(), &msg, MsgFlags::empty())
            .map_err(|cause| ConntrackError::Io { what, cause })?;
        Ok(self.seq)
    }

    /// Receive until `on` returns Some for a message of request `seq`.
    fn recv_until<T>(
        &mut self,
        what: &'static str,
        seq: u32,
        mut on: impl FnMut(&wire::Message<'_>) -> Result<Option<T>, ConntrackError>,
    ) -> Result<T, ConntrackError> {
        loop {
            // MSG_TRUNC: the datagram's real length, to detect a short buffer.
            let n = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC)
                .map_err(|cause| ConntrackError::Io { what, cause })?;
            if n > self.buf.len() {
                return Err(ConntrackError::Io {
                    what,
                    cause: errno(libc::EMSGSIZE),
                });
            }
            let wire_err = |cause| ConntrackError::Wire { what, cause };
            for m in wire::messages(&self.buf[..n]).map_err(wire_err)? {
                if m.seq != seq {
                    continue;
                }
                if let Some(v) = on(&m)? {
                    return Ok(v);
                }
            }
        }
    }

    /// Every entry of `family` (Inet or Inet6).
    pub fn dump(&mut self, family: AddressFamily) -> Result<Vec<Flow>, ConntrackError> {
        const WHAT: &str = "dump";
        let seq = self.send(WHAT, |s| wire::dump_request(family as i32 as u8, s))?;
        let mut flows = Vec::new();
        self.recv_until(WHAT, seq, |m| {
            let wire_err = |cause| ConntrackError::Wire { what: WHAT, cause };
            match m.ty {
                _ if m.is_entry() => {
                    flows.push(wire::parse_flow(m.payload).map_err(wire_err)?);
                    Ok(None)
                }
                wire::NLMSG_DONE | wire::NLMSG_ERROR => match m.errno().map_err(wire_err)? {
                    0 => Ok(Some(())),
                    e => Err(ConntrackError::Kernel {
                        what: WHAT,
                        cause: errno(e),
                    }),
                },
                _ => Ok(None),
            }
        })?;
        Ok(flows)
    }

    /// Delete one entry. False when it was already gone (timed out, or
    /// replaced by a newer entry with another id).
    pub fn delete(&mut self, flow: &Flow) -> Result<bool, ConntrackError> {
        const WHAT: &str = "delete";
        let seq = self.send(WHAT, |s| wire::delete_request(flow, s))?;
        self.recv_until(WHAT, seq, |m| {
            if m.ty != wire::NLMSG_ERROR {
                return Ok(None);
            }
            match m
                .errno()
                .map_err(|cause| ConntrackError::Wire { what: WHAT, cause })?
            {
                0 => Ok(Some(true)),
                libc::ENOENT => Ok(Some(false)),
                e => Err(ConntrackError::Kernel {
                    what: WHAT,
                    cause: errno(e),
                }),
            }
        })
    }
}

/// Whether `flow` is a UDP flow originally sent to one of `targets`
/// (port, and the address when the mapping names one).
pub fn is_udp_to(flow: &Flow, targets: &[(u16, Option<IpAddr>)]) -> bool {
    let t = &flow.orig;
    t.proto == IPPROTO_UDP
        && t.ports.is_some_and(|(_, dport)| {
            targets
                .iter()
                .any(|(port, ip)| *port == dport && ip.is_none_or(|ip| ip == t.dst))
        })
}

/// Delete the `family` entries of UDP flows to `targets` (see [`is_udp_to`])
/// in the calling thread's network namespace; returns how many went.
pub fn delete_udp_to(
    family: AddressFamily,
    targets: &[(u16, Option<IpAddr>)],
) -> Result<usize, ConntrackError> {
    let mut ct = Conntrack::open()?;
    let stale: Vec<Flow> = ct
        .dump(family)?
        .into_iter()
        .filter(|f| is_udp_to(f, targets))
        .collect();
    let mut n = 0;
    for f in &stale {
        if ct.delete(f)? {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(proto: u8, dst: &str, dport: u16) -> Flow {
        Flow {
            orig: Tuple {
                src: "192.168.77.2".parse().unwrap(),
                dst: dst.parse().unwrap(),
                proto,
                ports: Some((40000, dport)),
            },
            zone: None,
            id: None,
        }
    }

    #[test]
    fn matches_udp_by_original_destination() {
        let any = [(5300, None)];
        assert!(is_udp_to(&flow(17, "10.0.0.1", 5300), &any));
        assert!(!is_udp_to(&flow(6, "10.0.0.1", 5300), &any), "tcp");
        assert!(!is_udp_to(&flow(17, "10.0.0.1", 5301), &any), "other port");
        let mut icmp = flow(1, "10.0.0.1", 0);
        icmp.orig.ports = None;
        assert!(!is_udp_to(&icmp, &any));
        let only = [(5300, Some("10.0.0.1".parse().unwrap()))];
        assert!(is_udp_to(&flow(17, "10.0.0.1", 5300), &only));
        assert!(
            !is_udp_to(&flow(17, "10.0.0.9", 5300), &only),
            "other address"
        );
    }
}
