//! /dev inside the container: the default device nodes and links, and
//! `linux.devices` (mknod, or bind mounts inside a user namespace).

use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
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
    for (path, major, minor) in DEFAULT_DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        let dest = Path::new(path);
        if in_userns {
            bind_device(root, dest, dest)?;
        } else {
            make_node(root, dest, SFlag::S_IFCHR, *major, *minor, 0o666, 0, 0)?;
        }
    }
    for d in devices {
        if in_userns {
            bind_device(root, d.path(), d.path())?;
            continue;
        }
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
        make_node(
            root,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?;
    }
    Ok(())
}

/// mknod in the directory resolved inside the rootfs, then the exact mode
/// (mknod honours the umask) and owner, set on the node just made (opened
/// without following symlinks).
#[allow(clippy::too_many_arguments)]
fn make_node(
    root: &Root,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), RootfsError> {
    let err = |op, source: nix::Error| RootfsError::Io {
        op,
        path: root.display(path),
        source: source.into(),
    };
    let (dir, name) = parent_of(root, path).map_err(|source| RootfsError::Io {
        op: "create device directory",
        path: root.display(path),
        source,
    })?;
    let _ = nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    mknodat(dir.as_fd(), name, kind, perm, makedev(major, minor)).map_err(|e| err("mknod", e))?;
    let node = nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open device node", e))?;
    let st = nix::sys::stat::fstat(&node).map_err(|e| err("stat device node", e))?;
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != kind {
        return Err(err("check device node", nix::Error::EEXIST));
    }
    let proc_path = format!("/proc/self/fd/{}", node.as_raw_fd());
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        proc_path.as_str(),
        perm,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| err("chmod", e))?;
    nix::unistd::fchownat(
        node.as_fd(),
        "",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| err("chown", e))
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
        .map_err(|source| RootfsError::Io {
            op: "create",
            path: root.display(Path::new("/dev")),
            source,
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
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}
