//! Pinned namespaces: a sandbox's net, ipc and uts namespaces (and its pid
//! namespace when the pod shares one) are created by a short-lived thread
//! (never a forked process) and kept alive by bind mounts of
//! `/proc/thread-self/ns/<kind>` under the sandbox's ns dir; containers join
//! them by path. The pod's sysctls are written from that thread, so they
//! land in the new namespaces.
//!
//! A pid namespace cannot be pinned before it has a process (the kernel
//! hides `pid_for_children` until an init exists), and there is no pause
//! process: the pod's pid namespace is the one of its first container that
//! shares it, pinned by [`pin_pid`] once that container exists. That
//! container is the namespace's init; when it exits the kernel ends the
//! other members too, and the next container starts a fresh one.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// A namespace kind a sandbox pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Net,
    Ipc,
    Uts,
    Pid,
}

impl Kind {
    /// The file name under `/proc/<pid>/ns` (and in the ns dir).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::Pid => "pid",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            // Never pinned by the thread (see pin_pid).
            Kind::Pid => CloneFlags::empty(),
        }
    }
}

/// Why pinning failed (nothing is left pinned then).
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("{step} ({})", path.display())]
    Sys {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{step} ({})", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A sysctl the kernel refused (a bad value, or not there).
    #[error("write sysctl {key}")]
    Sysctl {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the namespace thread panicked")]
    Thread,
}

/// Create fresh namespaces of `kinds` and pin them in `dir`; in the new uts
/// namespace set `hostname`, in the new net namespace bring `lo` up.
pub fn pin(dir: &Path, kinds: &[Kind], hostname: &str) -> Result<(), NsError> {
    pin_with(dir, kinds, hostname, &[])
}

/// [`pin`], then write `sysctls` (`net.ipv4.ip_forward` style keys) in the
/// new namespaces.
pub fn pin_with(
    dir: &Path,
    kinds: &[Kind],
    hostname: &str,
    sysctls: &[(String, String)],
) -> Result<(), NsError> {
    std::fs::create_dir_all(dir).map_err(|source| NsError::Io {
        step: "create the ns dir",
        path: dir.to_path_buf(),
        source,
    })?;
    // A pid namespace is pinned from its first container (pin_pid): the
    // thread's own pid namespace is the node's.
    let kinds: Vec<Kind> = kinds.iter().copied().filter(|k| *k != Kind::Pid).collect();
    let (dir2, kinds2, host) = (dir.to_path_buf(), kinds, hostname.to_string());
    let sysctls = sysctls.to_vec();
    // A thread of its own: unshare changes only this thread's namespaces,
    // and the thread ends right after, so no other task ever runs in them.
    let res = std::thread::spawn(move || pin_in_thread(&dir2, &kinds2, &host, &sysctls))
        .join()
        .unwrap_or(Err(NsError::Thread));
    if res.is_err() {
        unpin(dir);
    }
    res
}

fn pin_in_thread(
    dir: &Path,
    kinds: &[Kind],
    hostname: &str,
    sysctls: &[(String, String)],
) -> Result<(), NsError> {
    let sys = |step, path: &Path| {
        let path = path.to_path_buf();
        move |source| NsError::Sys { step, path, source }
    };
    let flags = kinds.iter().fold(CloneFlags::empty(), |f, k| f | k.flag());
    nix::sched::unshare(flags).map_err(sys("unshare", dir))?;
    if kinds.contains(&Kind::Uts) {
        nix::unistd::sethostname(hostname).map_err(sys("sethostname", dir))?;
    }
    if kinds.contains(&Kind::Net) {
        loopback_up().map_err(sys("bring lo up", dir))?;
    }
    // /proc/sys/net and the ipc sysctls resolve to the writing thread's
    // namespaces.
    for (k, v) in sysctls {
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&path, v).map_err(|source| NsError::Sysctl {
            key: k.clone(),
            source,
        })?;
    }
    for k in kinds {
        let target = dir.join(k.name());
        std::fs::File::create(&target).map_err(|source| NsError::Io {
            step: "create the pin file",
            path: target.clone(),
            source,
        })?;
        let src = PathBuf::from("/proc/thread-self/ns").join(k.name());
        nix::mount::mount(
            Some(&src),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys("bind-mount the namespace", &target))?;
    }
    Ok(())
}

/// Set IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) };
    nix::errno::Errno::result(rc)?;
    // SAFETY: the flags member was just filled in by the kernel.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) };
    nix::errno::Errno::result(rc).map(drop)
}

/// The file naming the container whose pid namespace is pinned.
pub const PID_INIT: &str = "pid.init";

/// Pin the pid namespace of process `pid` (the container `init`) as the
/// sandbox's, replacing a stale pin.
pub fn pin_pid(dir: &Path, pid: i32, init: &str) -> Result<(), NsError> {
    let target = dir.join(Kind::Pid.name());
    unpin_pid(dir);
    std::fs::File::create(&target).map_err(|source| NsError::Io {
        step: "create the pin file",
        path: target.clone(),
        source,
    })?;
    let src = PathBuf::from(format!("/proc/{pid}/ns/pid"));
    nix::mount::mount(
        Some(&src),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| NsError::Sys {
        step: "bind-mount the pid namespace",
        path: target.clone(),
        source,
    })?;
    let init_file = dir.join(PID_INIT);
    std::fs::write(&init_file, init).map_err(|source| NsError::Io {
        step: "record the pid namespace's init",
        path: init_file,
        source,
    })
}

/// Remove the pid pin of `dir` (idempotent).
pub fn unpin_pid(dir: &Path) {
    let p = dir.join(Kind::Pid.name());
    match nix::mount::umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(path = %p.display(), error = %e, "unmount a pinned namespace"),
    }
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_file(dir.join(PID_INIT));
}

/// Unmount and remove every pin in `dir`, and `dir`. Idempotent; errors are
/// logged (a busy mount is detached anyway).
pub fn unpin(dir: &Path) {
    unpin_pid(dir);
    for k in [Kind::Net, Kind::Ipc, Kind::Uts] {
        let p = dir.join(k.name());
        match nix::mount::umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "unmount a pinned namespace"),
        }
        let _ = std::fs::remove_file(&p);
    }
    let _ = std::fs::remove_dir(dir);
}

/// Whether `path` is a pinned namespace (a bind mount of an nsfs inode).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}
