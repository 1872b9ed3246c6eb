//! /dev inside the container: the default device nodes and links, and
//! `linux.devices` (mknod, or bind mounts inside a user namespace).

use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::RootfsError;
use super::mounts::{mount_fd, target};
use super::resolve::{Root, parent_of};

/// The devices every container gets (runc's list).
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Create the default and configured devices under `rootfs/dev`.
pub fn create_devices(
    root: &Root,
    devices: &[LinuxDevice],
    in_userns: bool,
) -> Result<(), RootfsError> {
    if in_userns {
        for (path, ..) in DEFAULT_DEVICES {
            if !devices.iter().any(|d| d.path() == Path::new(path)) {
                bind_device(root, Path::new(path), Path::new(path))?;
            }
        }
        for d in devices {
            bind_device(root, d.path(), d.path())?;
        }
        return Ok(());
    }
    // mknod honours the umask: none while the nodes are made, so they get
    // their exact mode without a chmod.
    let umask = nix::sys::stat::umask(Mode::empty());
    let result = make_nodes(root, devices);
    nix::sys::stat::umask(umask);
    result
}

fn make_nodes(root: &Root, devices: &[LinuxDevice]) -> Result<(), RootfsError> {
    let mut dirs = Dirs::default();
    for (path, major, minor) in DEFAULT_DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        let node = Node {
            kind: SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        make_node(root, &mut dirs, Path::new(path), node)?;
    }
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RootfsError::Invalid {
                    what: format!("linux.devices {}", d.path().display()),
                    message: "type \"a\" is not a device type".into(),
                });
            }
        };
        let node = Node {
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        make_node(root, &mut dirs, d.path(), node)?;
    }
    Ok(())
}

struct Node {
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The directory of the last device made (nearly all are in /dev).
#[derive(Default)]
struct Dirs {
    last: Option<(std::path::PathBuf, std::os::fd::OwnedFd)>,
}

/// mknod in the directory resolved inside the rootfs (with no umask in
/// force, so the mode is exact), then the owner if it is not root, set on the
/// node itself (never through a symlink).
fn make_node(root: &Root, dirs: &mut Dirs, path: &Path, n: Node) -> Result<(), RootfsError> {
    let err = |op, cause: nix::Error| RootfsError::Io {
        op,
        path: root.display(path),
        cause: cause.into(),
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = match dirs.last.take() {
        Some((p, fd)) if p == parent => fd,
        _ => {
            parent_of(root, path)
                .map_err(|cause| RootfsError::Io {
                    op: "create device directory",
                    path: root.display(path),
                    cause,
                })?
                .0
        }
    };
    let dir = &dirs.last.insert((parent.to_path_buf(), dir)).1;
    let name = path
        .file_name()
        .ok_or_else(|| err("mknod", nix::Error::EINVAL))?;
    let _ = nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let perm = Mode::from_bits_truncate(n.mode & 0o7777);
    mknodat(dir.as_fd(), name, n.kind, perm, makedev(n.major, n.minor))
        .map_err(|e| err("mknod", e))?;
    if n.uid != 0 || n.gid != 0 {
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            Some(Uid::from_raw(n.uid)),
            Some(Gid::from_raw(n.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err("chown", e))?;
    }
    Ok(())
}

fn bind_device(root: &Root, host: &Path, dest: &Path) -> Result<(), RootfsError> {
    let fd = target(root, dest, true)?;
    mount_fd(
        Some(host),
        &fd,
        &root.display(dest),
        None,
        MsFlags::MS_BIND,
        None,
    )
}

/// The standard links in /dev.
pub fn create_links(root: &Root) -> Result<(), RootfsError> {
    let dev = root
        .create(Path::new("/dev"), false)
        .map_err(|cause| RootfsError::Io {
            op: "create",
            path: root.display(Path::new("/dev")),
            cause,
        })?;
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let name = &link["/dev/".len()..];
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => {
                return Err(RootfsError::Io {
                    op: "symlink",
                    path: root.display(Path::new(link)),
                    cause: e.into(),
                });
            }
        }
    }
    Ok(())
}
