//! Terminals: a pty for the container's process, its master sent to the
//! `--console-socket` over SCM_RIGHTS exactly as runc sends it (the payload is
//! the master's name, "/dev/ptmx").

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

/// Errors with terminals and console sockets.
///
/// Raised in cloned children too, whose errors cross the channel as text: the
/// cause is part of the message (`cause`, not a `#[source]`), printed once.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("connect console socket {path}: {cause}")]
    Connect {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{op}: {cause}")]
    Sys { op: &'static str, cause: nix::Error },
    #[error("send pty master over the console socket: {0}")]
    Send(nix::Error),
}

fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> TerminalError {
    move |cause| TerminalError::Sys { op, cause }
}

/// Connect to a console socket (done by the runtime before it clones).
pub fn connect(path: &Path) -> Result<OwnedFd, TerminalError> {
    let s = UnixStream::connect(path).map_err(|cause| TerminalError::Connect {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(s.into())
}

/// A new pty pair opened from the container's /dev/ptmx: (master, slave path).
pub fn open_pty() -> Result<(OwnedFd, PathBuf), TerminalError> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    nix::pty::unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(sys("ptsname"))?;
    let fd: OwnedFd = master.into();
    Ok((fd, PathBuf::from(name)))
}

/// Set the window size of a terminal.
pub fn set_size(fd: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize struct we pass.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Bind the slave onto /dev/console (as runc does), make it the controlling
/// terminal of a new session and the process's stdio.
pub fn attach_slave(slave: &Path) -> Result<(), TerminalError> {
    let console = Path::new("/dev/console");
    if std::fs::symlink_metadata(console).is_err() {
        let _ = std::fs::File::create(console);
    }
    let _ = nix::mount::mount(
        Some(slave),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    let fd = nix::fcntl::open(
        slave,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("open pty slave"))?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // SAFETY: TIOCSCTTY on a pty slave fd we just opened.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(TerminalError::Sys {
            op: "ioctl(TIOCSCTTY)",
            cause: nix::Error::last(),
        });
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            return Err(TerminalError::Sys {
                op: "dup2 pty slave",
                cause: nix::Error::last(),
            });
        }
    }
    Ok(())
}

/// Send the master over the console socket: payload "/dev/ptmx", one fd.
pub fn send_master(socket: RawFd, master: RawFd) -> Result<(), TerminalError> {
    crate::channel::send_with_fd(socket, b"/dev/ptmx", Some(master)).map_err(TerminalError::Send)
}
