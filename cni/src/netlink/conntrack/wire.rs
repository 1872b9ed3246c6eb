//! ctnetlink's wire format: netlink headers, the nfnetlink header and the
//! nested TLV attributes of a conntrack entry (linux/netfilter/
//! nfnetlink_conntrack.h). Header fields are in host byte order, attribute
//! values (addresses, ports, ids) in network byte order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// nfnetlink subsystem of conntrack.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// A conntrack entry (the type of every dumped entry).
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

/// Netlink's error / acknowledgement message.
pub const NLMSG_ERROR: u16 = 2;
/// The end of a dump.
pub const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// A message or attribute is shorter than its header says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ctnetlink message: {0}")]
pub struct WireError(pub &'static str);

/// One direction of a tracked connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (17 for UDP).
    pub proto: u8,
    /// Source and destination port; None for protocols without ports (ICMP).
    pub ports: Option<(u16, u16)>,
}

/// A conntrack entry: what husk needs to match and delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The original-direction tuple (as the first packet was seen).
    pub orig: Tuple,
    /// The conntrack zone, when not the default one.
    pub zone: Option<u16>,
    /// The kernel's id of the entry (a delete with it spares a newer entry
    /// that reuses the tuple).
    pub id: Option<u32>,
}

/// The address family byte of an address.
pub fn family_of(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// A request under construction; nested attributes patch their length on close.
struct Builder(Vec<u8>);

impl Builder {
    fn new(msg: u16, flags: u16, seq: u32, family: u8) -> Builder {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        b.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg).to_ne_bytes());
        b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
        // nfgenmsg: family, version NFNETLINK_V0, res_id 0 (big endian).
        b.extend_from_slice(&[family, 0, 0, 0]);
        Builder(b)
    }

    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }

    fn attr(&mut self, ty: u16, value: &[u8]) {
        self.0
            .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad();
    }

    fn nested(&mut self, ty: u16, fill: impl FnOnce(&mut Builder)) {
        let start = self.0.len();
        self.attr(ty | NLA_F_NESTED, &[]);
        fill(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// IPCTNL_MSG_CT_GET with NLM_F_DUMP: every entry of `family`.
pub fn dump_request(family: u8, seq: u32) -> Vec<u8> {
    Builder::new(IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, family).finish()
}

/// IPCTNL_MSG_CT_DELETE of one entry, by original tuple, zone and id; acked.
pub fn delete_request(flow: &Flow, seq: u32) -> Vec<u8> {
    let t = &flow.orig;
    let mut b = Builder::new(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq, family_of(&t.src));
    b.nested(CTA_TUPLE_ORIG, |b| {
        b.nested(CTA_TUPLE_IP, |b| match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                b.attr(CTA_IP_V4_SRC, &s.octets());
                b.attr(CTA_IP_V4_DST, &d.octets());
            }
            (s, d) => {
                b.attr(CTA_IP_V6_SRC, &v6(s).octets());
                b.attr(CTA_IP_V6_DST, &v6(d).octets());
            }
        });
        b.nested(CTA_TUPLE_PROTO, |b| {
            b.attr(CTA_PROTO_NUM, &[t.proto]);
            if let Some((sp, dp)) = t.ports {
                b.attr(CTA_PROTO_SRC_PORT, &sp.to_be_bytes());
                b.attr(CTA_PROTO_DST_PORT, &dp.to_be_bytes());
            }
        });
    });
    if let Some(z) = flow.zone {
        b.attr(CTA_ZONE, &z.to_be_bytes());
    }
    if let Some(id) = flow.id {
        b.attr(CTA_ID, &id.to_be_bytes());
    }
    b.finish()
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// One netlink message of a received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// nlmsg_type.
    pub ty: u16,
    /// nlmsg_seq.
    pub seq: u32,
    /// What follows the netlink header.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// Whether this is a conntrack entry (of a dump).
    pub fn is_entry(&self) -> bool {
        self.ty == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    }

    /// The errno of an NLMSG_ERROR (0 for an acknowledgement) or of an
    /// NLMSG_DONE that carries one.
    pub fn errno(&self) -> Result<i32, WireError> {
        let b = self
            .payload
            .get(..4)
            .ok_or(WireError("error message without its code"))?;
        Ok(-i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Split a datagram into its netlink messages.
pub fn messages(mut buf: &[u8]) -> Result<Vec<Message<'_>>, WireError> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let u32_at = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let len = u32_at(0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(WireError("netlink message length"));
        }
        out.push(Message {
            ty: u16::from_ne_bytes([buf[4], buf[5]]),
            seq: u32_at(8),
            payload: &buf[NLMSG_HDRLEN..len],
        });
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `buf` as (type without flags, value).
fn attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, WireError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            return Err(WireError("attribute length"));
        }
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        out.push((ty, &buf[4..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(out)
}

fn find<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(t, _)| *t == ty).map(|(_, v)| *v)
}

fn be16(v: &[u8], what: &'static str) -> Result<u16, WireError> {
    v.get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(WireError(what))
}

fn addr(ip: &[(u16, &[u8])], v4: u16, v6: u16, what: &'static str) -> Result<IpAddr, WireError> {
    if let Some(b) = find(ip, v4) {
        let o: [u8; 4] = b
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or(WireError(what))?;
        return Ok(IpAddr::V4(Ipv4Addr::from(o)));
    }
    let b = find(ip, v6).ok_or(WireError(what))?;
    let o: [u8; 16] = b
        .get(..16)
        .and_then(|s| s.try_into().ok())
        .ok_or(WireError(what))?;
    Ok(IpAddr::V6(Ipv6Addr::from(o)))
}

fn tuple(buf: &[u8]) -> Result<Tuple, WireError> {
    let t = attrs(buf)?;
    let ip = attrs(find(&t, CTA_TUPLE_IP).ok_or(WireError("tuple without addresses"))?)?;
    let proto = attrs(find(&t, CTA_TUPLE_PROTO).ok_or(WireError("tuple without protocol"))?)?;
    let num = find(&proto, CTA_PROTO_NUM)
        .and_then(|v| v.first().copied())
        .ok_or(WireError("tuple without protocol number"))?;
    let ports = match (
        find(&proto, CTA_PROTO_SRC_PORT),
        find(&proto, CTA_PROTO_DST_PORT),
    ) {
        (Some(s), Some(d)) => Some((be16(s, "source port")?, be16(d, "destination port")?)),
        _ => None,
    };
    Ok(Tuple {
        src: addr(&ip, CTA_IP_V4_SRC, CTA_IP_V6_SRC, "source address")?,
        dst: addr(&ip, CTA_IP_V4_DST, CTA_IP_V6_DST, "destination address")?,
        proto: num,
        ports,
    })
}

/// Decode the payload of a dumped entry (nfgenmsg + attributes).
pub fn parse_flow(payload: &[u8]) -> Result<Flow, WireError> {
    let body = payload
        .get(NFGENMSG_LEN..)
        .ok_or(WireError("entry without nfgenmsg"))?;
    let a = attrs(body)?;
    let orig = tuple(find(&a, CTA_TUPLE_ORIG).ok_or(WireError("entry without original tuple"))?)?;
    let zone = find(&a, CTA_ZONE).map(|v| be16(v, "zone")).transpose()?;
    let id = find(&a, CTA_ID)
        .map(|v| {
            v.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(WireError("id"))
        })
        .transpose()?;
    Ok(Flow { orig, zone, id })
}

#[cfg(test)]
mod tests;
