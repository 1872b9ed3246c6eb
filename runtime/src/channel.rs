//! The typed channel between the runtime and the processes it clones.
//!
//! One SOCK_SEQPACKET socketpair. A message is a serde-JSON value sent as a
//! header packet (its length, u64 little-endian, and any file descriptor as
//! SCM_RIGHTS) followed by the JSON in packets of at most [`CHUNK`] bytes:
//! a message may be far larger than one packet (Kubernetes puts 100 KiB of
//! annotations on a pod) or than the socket buffer.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    self, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use serde::{Deserialize, Serialize};

/// The largest packet: well below the default socket buffer, so that a
/// packet never fails with EMSGSIZE.
pub const CHUNK: usize = 32 * 1024;

/// The largest message accepted (a header announcing more is malformed).
const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// Errors of the channel. Cloned processes report them as text, so each
/// carries its cause in its own message (no `source()`: printed once).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("socketpair: {0}")]
    Socketpair(nix::Error),
    #[error("send: {0}")]
    Send(nix::Error),
    #[error("receive: {0}")]
    Recv(nix::Error),
    #[error("malformed message: {0}")]
    Decode(serde_json::Error),
    #[error("encode message: {0}")]
    Encode(serde_json::Error),
    #[error("malformed frame: {0}")]
    Frame(String),
    #[error("peer closed the channel")]
    Closed,
    #[error("unexpected message {0:?}")]
    Unexpected(String),
}

/// Messages from the runtime (parent) to a cloned process.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToChild {
    /// uid/gid maps are written.
    MapsWritten,
    /// The init is in its cgroup and the runtime hooks ran; `state` is the
    /// container's record, from which the init builds the state its own hooks
    /// see (absent for exec).
    Go {
        state: Option<Box<crate::state::State>>,
    },
}

/// Messages from a cloned process to the runtime.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParent {
    /// A user namespace was created: write its id maps for pid `pid`.
    WriteMaps { pid: i32 },
    /// The init (or exec'd) process exists with this pid (in the runtime's
    /// pid namespace); `in_cgroup`: the sender created it in the container's
    /// cgroup, there is no move to make.
    Pid { pid: i32, in_cgroup: bool },
    /// Setup is complete; the process waits for `start` (init) or is about to exec.
    Ready,
    /// Setup failed.
    Error { message: String },
}

/// One end of the socketpair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair (parent end, child end), both close-on-exec.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socket::socketpair(
        socket::AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Socketpair)?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Wrap an existing socket.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Channel { fd }
    }

    /// The raw fd (e.g. to keep it across a close-everything step).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Send one message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<(), ChannelError> {
        self.send_fd(msg, None)
    }

    /// Send one message with an optional file descriptor attached.
    pub fn send_fd<T: Serialize>(&self, msg: &T, fd: Option<RawFd>) -> Result<(), ChannelError> {
        let buf = serde_json::to_vec(msg).map_err(ChannelError::Encode)?;
        let sock = self.fd.as_raw_fd();
        send_with_fd(sock, &(buf.len() as u64).to_le_bytes(), fd).map_err(ChannelError::Send)?;
        for chunk in buf.chunks(CHUNK) {
            send_with_fd(sock, chunk, None).map_err(ChannelError::Send)?;
        }
        Ok(())
    }

    /// Receive one message; `Closed` when the peer is gone.
    pub fn recv<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ChannelError> {
        let mut header = [0u8; 8];
        match self.recv_packet(&mut header)? {
            0 => return Err(ChannelError::Closed),
            8 => {}
            n => return Err(ChannelError::Frame(format!("header of {n} bytes"))),
        }
        let len = u64::from_le_bytes(header);
        if len > MAX_MESSAGE {
            return Err(ChannelError::Frame(format!("message of {len} bytes")));
        }
        let len = len as usize;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let end = len.min(got + CHUNK);
            match self.recv_packet(&mut buf[got..end])? {
                0 => return Err(ChannelError::Closed),
                n => got += n,
            }
        }
        serde_json::from_slice(&buf).map_err(ChannelError::Decode)
    }

    /// One packet into `buf`; a packet longer than `buf` is a framing error
    /// (SEQPACKET would silently cut it).
    fn recv_packet(&self, buf: &mut [u8]) -> Result<usize, ChannelError> {
        let mut iov = [IoSliceMut::new(buf)];
        loop {
            match socket::recvmsg::<UnixAddr>(
                self.fd.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::empty(),
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ChannelError::Recv(e)),
                Ok(m) if m.flags.contains(MsgFlags::MSG_TRUNC) => {
                    return Err(ChannelError::Frame("packet longer than announced".into()));
                }
                Ok(m) => return Ok(m.bytes),
            }
        }
    }
}

/// sendmsg of `buf` with at most one fd as SCM_RIGHTS.
pub fn send_with_fd(sock: RawFd, buf: &[u8], fd: Option<RawFd>) -> nix::Result<()> {
    let iov = [IoSlice::new(buf)];
    let fds;
    let cmsgs: &[ControlMessage] = match fd {
        Some(f) => {
            fds = [f];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    loop {
        match socket::sendmsg::<UnixAddr>(sock, &iov, cmsgs, MsgFlags::empty(), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// recvmsg of one packet and at most one fd (as runc's console socket protocol).
pub fn recv_with_fd(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg =
        socket::recvmsg::<UnixAddr>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(io::Error::from)?;
    let mut fd = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel just installed this fd in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    Ok((msg.bytes, fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_messages() {
        let (a, b) = pair().unwrap();
        a.send(&ToParent::Pid {
            pid: 42,
            in_cgroup: false,
        })
        .unwrap();
        match b.recv::<ToParent>().unwrap() {
            ToParent::Pid { pid, .. } => assert_eq!(pid, 42),
            other => panic!("got {other:?}"),
        }
        drop(a);
        assert!(matches!(b.recv::<ToParent>(), Err(ChannelError::Closed)));
    }

    #[test]
    fn messages_larger_than_the_socket_buffer() {
        let (a, b) = pair().unwrap();
        let message = "x".repeat(1024 * 1024);
        let sender = std::thread::spawn(move || {
            a.send(&ToParent::Error { message }).unwrap();
        });
        match b.recv::<ToParent>().unwrap() {
            ToParent::Error { message } => assert_eq!(message.len(), 1024 * 1024),
            other => panic!("got {other:?}"),
        }
        sender.join().unwrap();
    }
}
