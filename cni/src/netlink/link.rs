//! rtnetlink operations the plugins need.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::ns::{NetNs, NsError};

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening the socket failed.
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    /// Entering the namespace failed.
    #[error(transparent)]
    Ns(#[from] NsError),
    /// The kernel refused a request.
    #[error("{what}: {cause}")]
    Request {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        cause: rtnetlink::Error,
    },
    /// A link that should exist does not.
    #[error("link {0}: not found")]
    NoLink(String),
    /// A link exists but is not what we need.
    #[error("link {name}: {reason}")]
    WrongLink {
        /// The link.
        name: String,
        /// Why it does not fit.
        reason: String,
    },
}

// Not `#[from]`: that would also make the I/O error the source, printed twice.
impl From<std::io::Error> for NetlinkError {
    fn from(e: std::io::Error) -> Self {
        NetlinkError::Socket(e)
    }
}

impl NetlinkError {
    /// The errno of a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request {
                cause: rtnetlink::Error::NetlinkError(m),
                ..
            } => Some(-m.raw_code()),
            _ => None,
        }
    }
}

/// What the plugins need to know about a link.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address (`aa:bb:...`).
    pub mac: String,
    /// MTU.
    pub mtu: u32,
    /// `bridge`, `veth`, ...
    pub kind: Option<String>,
    /// Index of its bridge, if enslaved.
    pub master: Option<u32>,
    /// IFLA_LINK: for a veth, its peer's index (in the peer's namespace).
    pub link: Option<u32>,
}

impl LinkInfo {
    fn from_msg(m: &LinkMessage) -> LinkInfo {
        let mut li = LinkInfo {
            index: m.header.index,
            name: String::new(),
            mac: String::new(),
            mtu: 0,
            kind: None,
            master: None,
            link: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => li.name = n.clone(),
                LinkAttribute::Address(b) => {
                    li.mac = b
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                }
                LinkAttribute::Mtu(m) => li.mtu = *m,
                LinkAttribute::Controller(c) => li.master = Some(*c),
                LinkAttribute::Link(l) => li.link = Some(*l),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let NlLinkInfo::Kind(k) = i {
                            li.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        li
    }
}

/// A netlink route socket bound to one network namespace.
pub struct Netlink {
    handle: Handle,
}

fn req<T>(
    what: impl FnOnce() -> String,
    r: Result<T, rtnetlink::Error>,
) -> Result<T, NetlinkError> {
    r.map_err(|cause| NetlinkError::Request {
        what: what(),
        cause,
    })
}

impl Netlink {
    /// A socket in the caller's namespace; must run inside a tokio runtime.
    pub fn current() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A socket in `ns` (opened by a thread that entered it); must run
    /// inside a tokio runtime.
    pub fn in_ns(ns: &NetNs) -> Result<Netlink, NetlinkError> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle, _) = ns.run_in(|| {
            let _enter = rt.enter();
            rtnetlink::new_connection()
        })??;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link named `name`, if it exists.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(LinkInfo::from_msg(&m))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(cause) => Err(NetlinkError::Request {
                what: format!("get link {name}"),
                cause,
            }),
        }
    }

    /// The link with index `index`, if it exists.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>, NetlinkError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(LinkInfo::from_msg(&m))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(cause) => Err(NetlinkError::Request {
                what: format!("get link {index}"),
                cause,
            }),
        }
    }

    /// The bridge `name`, created (with `mtu`) when missing, set up, with
    /// promiscuous mode as asked.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        promisc: bool,
    ) -> Result<LinkInfo, NetlinkError> {
        if self.link(name).await?.is_none() {
            let mut b = LinkBridge::new(name);
            if let Some(m) = mtu {
                b = b.mtu(m);
            }
            let r = self.handle.link().add(b.build()).execute().await;
            match r {
                Ok(()) => {}
                // A concurrent ADD created it first.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                Err(cause) => {
                    return Err(NetlinkError::Request {
                        what: format!("create bridge {name}"),
                        cause,
                    });
                }
            }
        }
        let br = self
            .link(name)
            .await?
            .ok_or_else(|| NetlinkError::NoLink(name.to_string()))?;
        if br.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::WrongLink {
                name: name.to_string(),
                reason: format!(
                    "exists but is a {} link, not a bridge",
                    br.kind.as_deref().unwrap_or("plain")
                ),
            });
        }
        let mut set = LinkUnspec::new_with_index(br.index).up();
        if promisc {
            set = set.promiscuous(true);
        }
        req(
            || format!("set bridge {name} up"),
            self.handle.link().set(set.build()).execute().await,
        )?;
        Ok(br)
    }

    /// A veth pair: `host` here, `peer` created directly in `peer_ns` (so no
    /// rename or move is needed). Both get `mtu`.
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_ns: &NetNs,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut peer_msg = LinkUnspec::new_with_name(peer).setns_by_fd(peer_ns.raw_fd());
        let mut b = LinkVeth::new(host, peer);
        if let Some(m) = mtu {
            peer_msg = peer_msg.mtu(m);
            b = b.mtu(m);
        }
        let msg = b
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
            .build();
        req(
            || {
                format!(
                    "create veth {host} / {peer} in {}",
                    peer_ns.path().display()
                )
            },
            self.handle.link().add(msg).execute().await,
        )
    }

    /// Enslave `index` to `bridge`, set hairpin mode, and bring it up.
    pub async fn attach_to_bridge(
        &self,
        index: u32,
        bridge: u32,
        hairpin: bool,
    ) -> Result<(), NetlinkError> {
        req(
            || format!("enslave link {index} to bridge {bridge}"),
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(index)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await,
        )?;
        if hairpin {
            req(
                || format!("hairpin mode on link {index}"),
                self.handle
                    .link()
                    .set_port(LinkBridgePort::new(index).hairpin(true).build())
                    .execute()
                    .await,
            )?;
        }
        Ok(())
    }

    /// Bring a link up.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        req(
            || format!("set link {index} up"),
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await,
        )
    }

    /// Whether a link is administratively up.
    pub async fn is_up(&self, index: u32) -> Result<bool, NetlinkError> {
        let mut s = self.handle.link().get().match_index(index).execute();
        let m = req(|| format!("get link {index}"), s.try_next().await)?;
        Ok(m.is_some_and(|m| m.header.flags.contains(LinkFlags::Up)))
    }

    /// Delete a link (its veth peer goes with it). Absent is fine.
    pub async fn del_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle.link().del(index).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
            r => req(|| format!("delete link {index}"), r),
        }
    }

    /// Addresses on a link.
    pub async fn addrs(&self, index: u32) -> Result<Vec<IpNetwork>, NetlinkError> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = req(
            || format!("list addresses of link {index}"),
            s.try_next().await,
        )? {
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    if let Ok(n) = IpNetwork::new(*ip, m.header.prefix_len) {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Add an address unless it is already there.
    pub async fn add_addr(&self, index: u32, addr: IpNetwork) -> Result<(), NetlinkError> {
        match self
            .handle
            .address()
            .add(index, addr.ip(), addr.prefix())
            .execute()
            .await
        {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            r => req(|| format!("add address {addr} to link {index}"), r),
        }
    }

    /// Add a route `dst` via `gw` (or on-link) out of `index`.
    pub async fn add_route(
        &self,
        dst: IpNetwork,
        gw: Option<IpAddr>,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let what = || format!("add route {dst} via {gw:?} dev {index}");
        fn bad(index: u32, dst: IpNetwork, e: impl std::fmt::Display) -> NetlinkError {
            NetlinkError::WrongLink {
                name: index.to_string(),
                reason: format!("route {dst}: {e}"),
            }
        }
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.network(), dst.prefix())
            .map_err(|e| bad(index, dst, e))?
            .output_interface(index);
        if let Some(g) = gw {
            b = b.gateway(g).map_err(|e| bad(index, dst, e))?;
        } else {
            b = b.scope(rtnetlink::packet_route::route::RouteScope::Link);
        }
        match self.handle.route().add(b.build()).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            r => req(what, r),
        }
    }

    /// The kind (`bridge`, `veth`) of a link message kind, for matching.
    pub fn is_kind(li: &LinkInfo, kind: InfoKind) -> bool {
        li.kind.as_deref() == Some(&kind.to_string())
    }
}
