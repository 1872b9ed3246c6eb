//! Cheap identity of the calling thread's netfilter state: the network
//! namespace's cookie (never reused) and the nf_tables ruleset generation
//! (bumped by the kernel on every committed change, whoever makes it).
//!
//! husk-portmap keeps a registry of what it put in the nat table; the
//! registry is trusted only while (cookie, generation) are exactly what its
//! last writer saw right after its own commit, so any change by anyone else
//! (an admin, kube-proxy, the reference plugins) sends the next call back to
//! reading the table with `iptables-save`.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// A failure to read the identity (the caller then does not trust caches).
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A socket call failed.
    #[error("nf_tables generation: {0}")]
    Sys(nix::Error),
    /// The kernel answered with an error or something unexpected.
    #[error("nf_tables generation: {0}")]
    Reply(String),
}

// Not `#[from]`: that would also make the errno the source, printed twice.
impl From<nix::Error> for GenError {
    fn from(e: nix::Error) -> Self {
        GenError::Sys(e)
    }
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
/// SO_NETNS_COOKIE (Linux 5.14).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The current ruleset generation of the calling thread's netns.
pub fn generation() -> Result<u32, GenError> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )?;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + NFGENMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // nfgenmsg
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 4096];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    parse_reply(&buf[..n])
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn parse_reply(b: &[u8]) -> Result<u32, GenError> {
    let bad = |why: &str| GenError::Reply(why.to_string());
    let len = u32_at(b, 0).ok_or_else(|| bad("short reply"))? as usize;
    let ty = u16_at(b, 4).ok_or_else(|| bad("short reply"))?;
    let msg = b.get(..len).ok_or_else(|| bad("truncated reply"))?;
    if ty == NLMSG_ERROR {
        let errno = u32_at(msg, NLMSG_HDRLEN).map(|e| -(e as i32)).unwrap_or(0);
        return Err(GenError::Reply(format!(
            "kernel error {}",
            std::io::Error::from_raw_os_error(errno)
        )));
    }
    if ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return Err(GenError::Reply(format!("unexpected message type {ty:#x}")));
    }
    // Attributes: (len u16, type u16, value), 4-byte aligned.
    let mut i = NLMSG_HDRLEN + NFGENMSG_LEN;
    while i + 4 <= msg.len() {
        let alen = u16_at(msg, i).ok_or_else(|| bad("bad attribute"))? as usize;
        let aty = u16_at(msg, i + 2).ok_or_else(|| bad("bad attribute"))? & 0x3fff;
        if alen < 4 {
            return Err(bad("bad attribute length"));
        }
        if aty == NFTA_GEN_ID {
            let v = msg
                .get(i + 4..i + 8)
                .ok_or_else(|| bad("short NFTA_GEN_ID"))?;
            return Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        }
        i += (alen + 3) & !3;
    }
    Err(bad("no NFTA_GEN_ID in reply"))
}

/// The calling thread's network namespace cookie (unique for the boot).
pub fn netns_cookie() -> Result<u64, GenError> {
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, a u64 we own,
    // and updates `len`; the fd is a valid socket for the whole call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(GenError::Sys(nix::Error::last()));
    }
    Ok(v)
}

/// Whether `iptables-restore` on PATH is the nf_tables flavour, whose
/// commits the generation counts (the legacy one bypasses nf_tables).
pub fn iptables_is_nft() -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    for dir in std::env::split_paths(&path) {
        let p = dir.join("iptables-restore");
        if let Ok(real) = std::fs::canonicalize(&p) {
            return real
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains("nft"));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_newgen_and_errors() {
        let mut m = Vec::new();
        let total = (NLMSG_HDRLEN + NFGENMSG_LEN + 8) as u32;
        m.extend_from_slice(&total.to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        m.extend_from_slice(&1234u32.to_be_bytes());
        assert_eq!(parse_reply(&m).unwrap(), 1234);
        let mut e = Vec::new();
        e.extend_from_slice(&((NLMSG_HDRLEN + 4) as u32).to_ne_bytes());
        e.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e.extend_from_slice(&[0; 10]);
        e.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(parse_reply(&e).is_err());
        assert!(parse_reply(&[1, 2]).is_err());
    }
}

#[cfg(test)]
mod netns_tests {
    use super::*;

    /// In a private netns (this test thread only): one iptables-restore
    /// commit bumps the generation by exactly one, and the cookie differs
    /// from the caller's.
    #[test]
    fn one_restore_is_one_generation() {
        husk_tests::require_root!();
        if !iptables_is_nft() {
            husk_tests::skip!("tool", "iptables is not the nft backend");
        }
        let outer = netns_cookie().unwrap();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            assert_ne!(netns_cookie().unwrap(), outer);
            let g0 = generation().unwrap();
            crate::iptables::restore(
                crate::iptables::Family::V4,
                "*nat\n:HUSK-GEN-TEST - [0:0]\n-A HUSK-GEN-TEST -j RETURN\nCOMMIT\n",
            )
            .unwrap();
            let g1 = generation().unwrap();
            assert_eq!(g1, g0.wrapping_add(1), "one restore, one generation");
            assert_eq!(generation().unwrap(), g1, "reading does not bump it");
        })
        .join()
        .unwrap();
    }
}
