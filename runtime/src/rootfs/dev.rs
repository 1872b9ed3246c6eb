//! /dev inside the container: the default device nodes and links, and
//! `linux.devices` (mknod, or bind mounts inside a user namespace).

use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{Gid, Uid, chown};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::RootfsError;
use super::mounts::{do_mount, make_target, secure_join};

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
    rootfs: &Path,
    devices: &[LinuxDevice],
    in_userns: bool,
) -> Result<(), RootfsError> {
    for (path, major, minor) in DEFAULT_DEVICES {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        let dest = secure_join(rootfs, Path::new(path));
        if in_userns {
            bind_device(Path::new(path), &dest)?;
        } else {
            make_node(&dest, SFlag::S_IFCHR, *major, *minor, 0o666, 0, 0)?;
        }
    }
    for d in devices {
        let dest = secure_join(rootfs, d.path());
        if in_userns {
            bind_device(d.path(), &dest)?;
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
            &dest,
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

fn make_node(
    dest: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), RootfsError> {
    if let Some(parent) = dest.parent() {
        make_target(parent, false)?;
    }
    let _ = std::fs::remove_file(dest);
    let err = |op, source: nix::Error| RootfsError::Io {
        op,
        path: dest.to_path_buf(),
        source: source.into(),
    };
    mknod(
        dest,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major, minor),
    )
    .map_err(|e| err("mknod", e))?;
    // mknod honours the umask: set the exact mode.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        dest,
        Mode::from_bits_truncate(mode & 0o7777),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| err("chmod", e))?;
    chown(dest, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(|e| err("chown", e))
}

fn bind_device(host: &Path, dest: &Path) -> Result<(), RootfsError> {
    make_target(dest, true)?;
    do_mount(Some(host), dest, None, MsFlags::MS_BIND, None)
}

/// The standard links in /dev.
pub fn create_links(rootfs: &Path) -> Result<(), RootfsError> {
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
        let dest = rootfs.join(&link[1..]);
        match std::os::unix::fs::symlink(target, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(RootfsError::Io {
                    op: "symlink",
                    path: dest,
                    source: e,
                });
            }
        }
    }
    Ok(())
}
