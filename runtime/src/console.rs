//! The foreground terminal of `run -t` and `exec -t` without a
//! `--console-socket`, as runc wires it: the container's pty master is copied
//! to and from the caller's stdin/stdout, the caller's terminal (when stdin is
//! one) is put in raw mode and restored on exit, window size changes
//! (SIGWINCH) are passed on, every other signal is forwarded to the
//! container's process, and its exit status is returned.
//!
//! Single-threaded: one poll(2) loop over the master, stdin and a signalfd.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
use nix::sys::termios::{self, SetArg, Termios};

use crate::terminal::TerminalError;

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> TerminalError {
    move |cause| TerminalError::Sys { op, cause }
}

/// A private console socket: the container's process sends its pty master
/// over one end (as to a `--console-socket`), the runtime keeps the other.
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd), TerminalError> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("console socketpair"))
}

/// Take the pty master the container's process sent over `sock`.
pub fn receive_master(sock: &OwnedFd) -> Result<OwnedFd, TerminalError> {
    let mut buf = [0u8; 64];
    match crate::channel::recv_with_fd(sock.as_raw_fd(), &mut buf) {
        Ok((_, Some(fd))) => Ok(fd),
        Ok((_, None)) => Err(TerminalError::Sys {
            op: "receive pty master: no fd in the message",
            cause: Errno::EPROTO,
        }),
        Err(e) => Err(TerminalError::Sys {
            op: "receive pty master",
            cause: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }),
    }
}

/// The caller's terminal in raw mode; restored when dropped.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Self {
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return RawMode { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(fd) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if let Err(e) = termios::tcsetattr(fd, SetArg::TCSANOW, &raw) {
            crate::logging::warn(&format!("set the terminal to raw mode: {e}"));
            return RawMode { saved: None };
        }
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: fd 0 is the caller's stdin, open for the whole process.
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            let _ = termios::tcsetattr(stdin, SetArg::TCSANOW, t);
        }
    }
}

/// Copy the caller's window size (of stdin, else stdout) to the master.
fn copy_window_size(master: &OwnedFd) {
    for fd in [0, 1] {
        // SAFETY: zeroed winsize is a valid value for TIOCGWINSZ to fill.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes into the winsize we pass.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            crate::terminal::set_size(master.as_raw_fd(), ws.ws_row, ws.ws_col);
            return;
        }
    }
}

/// Write all of `buf` to a blocking fd.
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut p, PollTimeout::NONE);
            }
            Err(_) => return,
        }
    }
}

/// Wire `master` to the caller's stdio until `pid` (our child) exits; `set`
/// holds the signals the caller blocked (see `signals::block_forwarded`).
/// Returns the exit code in shell convention.
pub fn proxy_and_wait(master: OwnedFd, pid: i32, set: &SigSet) -> i32 {
    // SAFETY: fds 0 and 1 are the caller's stdio, open for the whole process.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let sfd = match SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            crate::logging::warn(&format!("signalfd: {e}; not copying the terminal"));
            return crate::container::signals::forward_and_wait(pid, set);
        }
    };
    let _ = nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    copy_window_size(&master);
    let raw = RawMode::enter(stdin);
    let mut stdin_open = true;
    let mut master_open = true;
    // Input read from stdin that the master did not take yet.
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let code = loop {
        if let Some(code) = crate::container::signals::reap(pid) {
            break code;
        }
        let read_stdin = stdin_open && pending.is_empty();
        // Only the fds with something to wait for: a closed stdin or master
        // would report POLLHUP at once, forever.
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let master_at = master_open.then(|| {
            let mut ev = PollFlags::POLLIN;
            if !pending.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(master.as_fd(), ev));
            fds.len() - 1
        });
        let stdin_at = read_stdin.then(|| {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
            fds.len() - 1
        });
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                crate::logging::warn(&format!("poll: {e}; not copying the terminal"));
                drop(raw);
                return crate::container::signals::forward_and_wait(pid, set);
            }
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds[i].revents())
                .unwrap_or(PollFlags::empty())
        };
        let (sig_ready, master_ready, stdin_ready) =
            (ready(Some(0)), ready(master_at), ready(stdin_at));
        if !sig_ready.is_empty() {
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => copy_window_size(&master),
                    Ok(sig) => {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if master_ready.contains(PollFlags::POLLOUT) && !pending.is_empty() {
            match nix::unistd::write(&master, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => pending.clear(),
            }
        }
        if master_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) => master_open = false,
                Ok(n) => write_all(stdout, &buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                // EIO: every slave fd is closed.
                Err(_) => master_open = false,
            }
        }
        if !stdin_ready.is_empty() {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => stdin_open = false,
            }
        }
    };
    // What the process wrote just before it exited is still in the pty.
    while master_open {
        match nix::unistd::read(&master, &mut buf) {
            Ok(n) if n > 0 => write_all(stdout, &buf[..n]),
            Err(Errno::EINTR) => {}
            _ => master_open = false,
        }
    }
    drop(raw);
    code
}
