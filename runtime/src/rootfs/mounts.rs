//! One OCI mount: option parsing and the mount calls, in runc's manner.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::RootfsError;
use super::resolve::{Root, fd_path, subdir};

/// Mount flags and data parsed from a mount's options.
#[derive(Debug, Clone)]
pub struct Options {
    pub flags: MsFlags,
    /// Propagation changes applied after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, comma-joined.
    pub data: String,
}

/// Parse OCI mount options (runc's table; unknown ones are filesystem data).
pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
    };
    let mut data: Vec<&str> = Vec::new();
    for opt in opts {
        let (clear, flag) = match opt.as_str() {
            "defaults" => (false, MsFlags::empty()),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "suid" => (true, MsFlags::MS_NOSUID),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "dev" => (true, MsFlags::MS_NODEV),
            "nodev" => (false, MsFlags::MS_NODEV),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "atime" => (true, MsFlags::MS_NOATIME),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "silent" => (false, MsFlags::MS_SILENT),
            "loud" => (true, MsFlags::MS_SILENT),
            "lazytime" => (false, MsFlags::MS_LAZYTIME),
            "nolazytime" => (true, MsFlags::MS_LAZYTIME),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                if let Some(p) = super::propagation_flags(opt) {
                    o.propagation.push(p);
                }
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        if clear {
            o.flags.remove(flag);
        } else {
            o.flags.insert(flag);
        }
    }
    o.data = data.join(",");
    o
}

/// Mount-level flags of an existing mount that a bind remount must keep
/// (they are locked inside a user namespace).
pub fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    out
}

/// mount(2) with context.
pub fn do_mount(
    src: Option<&Path>,
    dest: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    let data = data.filter(|d| !d.is_empty());
    mount(src, dest, fstype, flags, data).map_err(|cause| RootfsError::Mount {
        src: src.map(|s| s.display().to_string()).unwrap_or_default(),
        dest: dest.to_path_buf(),
        fstype: fstype.unwrap_or("").to_string(),
        flags,
        cause,
    })
}

/// Remount a bind mount with `flags` (ro, nosuid, ...), keeping locked flags.
pub fn remount_bind(dest: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let keep = locked_flags(dest);
    do_mount(
        None,
        dest,
        None,
        flags | keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None,
    )
}

/// mount(2) onto the file an fd resolved (through /proc/self/fd/N), with
/// `shown` (the destination on the host) in the error.
pub fn mount_fd(
    src: Option<&Path>,
    target: &OwnedFd,
    shown: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    let data = data.filter(|d| !d.is_empty());
    mount(src, &fd_path(target), fstype, flags, data).map_err(|cause| RootfsError::Mount {
        src: src.map(|s| s.display().to_string()).unwrap_or_default(),
        dest: shown.to_path_buf(),
        fstype: fstype.unwrap_or("").to_string(),
        flags,
        cause,
    })
}

/// [`remount_bind`] of a destination inside the rootfs, looked up again
/// (the fd of the mount point is under the new mount, not on it).
fn remount_in(root: &Root, dest: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let fd = resolve(root, dest)?;
    let keep = locked_flags(&fd_path(&fd));
    mount_fd(
        None,
        &fd,
        &root.display(dest),
        None,
        flags | keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None,
    )
}

fn resolve(root: &Root, dest: &Path) -> Result<OwnedFd, RootfsError> {
    root.resolve(dest).map_err(|cause| RootfsError::Io {
        op: "resolve in rootfs",
        path: root.display(dest),
        cause,
    })
}

/// The mount point of `dest` in the rootfs, created if missing (a file when
/// `file`). A destination that resolves to the rootfs itself (a symlink such
/// as `proc -> /`) is refused: mounting there would cover the whole root.
pub fn target(root: &Root, dest: &Path, file: bool) -> Result<OwnedFd, RootfsError> {
    let fd = root.create(dest, file).map_err(|cause| RootfsError::Io {
        op: "create mount point",
        path: root.display(dest),
        cause,
    })?;
    if root.is_root(&fd) && dest.components().any(|c| matches!(c, Component::Normal(_))) {
        let how = match root.first_symlink(dest) {
            Some((link, to)) => format!(
                "{} is a symlink to {}, which leaves the path to the container's root directory",
                link.display(),
                to.display()
            ),
            None => "the path leads back to the container's root directory".into(),
        };
        return Err(RootfsError::Invalid {
            what: format!("mount {}", dest.display()),
            message: format!("destination resolves to the rootfs itself: {how}"),
        });
    }
    Ok(fd)
}

/// Mount one OCI mount inside the rootfs.
pub fn mount_one(root: &Root, m: &Mount, cgroupns: bool) -> Result<(), RootfsError> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    let shown = root.display(dest);
    let is_bind = typ == "bind" || opts.flags.contains(MsFlags::MS_BIND);
    if is_bind {
        let src = m.source().as_deref().ok_or_else(|| RootfsError::Invalid {
            what: format!("mount {}", dest.display()),
            message: "bind mount without a source".into(),
        })?;
        let meta = std::fs::metadata(src).map_err(|e| RootfsError::Io {
            op: "stat bind source",
            path: src.to_path_buf(),
            cause: e,
        })?;
        let fd = target(root, dest, !meta.is_dir())?;
        let bind = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        mount_fd(Some(src), &fd, &shown, None, bind | MsFlags::MS_BIND, None)?;
        let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            remount_in(root, dest, rest)?;
        }
    } else if typ == "cgroup" {
        mount_cgroup(root, dest, &opts, cgroupns)?;
    } else {
        let fd = target(root, dest, false)?;
        let src = m.source().as_deref().unwrap_or(Path::new(typ));
        let flags = opts.flags - MsFlags::MS_REMOUNT;
        match mount_fd(Some(src), &fd, &shown, Some(typ), flags, Some(&opts.data)) {
            // A sysfs mount is refused in a user namespace that does not own the
            // network namespace: bind the host's sysfs instead, as runc does.
            Err(RootfsError::Mount {
                cause: nix::Error::EPERM,
                ..
            }) if typ == "sysfs" => {
                mount_fd(
                    Some(Path::new("/sys")),
                    &fd,
                    &shown,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                remount_in(root, dest, flags)?;
            }
            other => other?,
        }
    }
    if !opts.propagation.is_empty() {
        let fd = resolve(root, dest)?;
        for p in &opts.propagation {
            mount_fd(None, &fd, &shown, None, *p, None)?;
        }
    }
    Ok(())
}

/// The `cgroup` mount type: cgroup2 on a unified host; on v1/hybrid a tmpfs
/// with one cgroup v1 mount per hierarchy (the container's own cgroup through
/// its cgroup namespace), or bind mounts of the host's when there is none.
fn mount_cgroup(
    root: &Root,
    dest: &Path,
    opts: &Options,
    cgroupns: bool,
) -> Result<(), RootfsError> {
    let fd = target(root, dest, false)?;
    let shown = root.display(dest);
    let flags = opts.flags - MsFlags::MS_REMOUNT - MsFlags::MS_BIND - MsFlags::MS_REC;
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        if cgroupns {
            return mount_fd(
                Some(Path::new("cgroup2")),
                &fd,
                &shown,
                Some("cgroup2"),
                flags,
                None,
            );
        }
        mount_fd(
            Some(Path::new("/sys/fs/cgroup")),
            &fd,
            &shown,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        return remount_in(root, dest, flags);
    }
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fd(
        Some(Path::new("tmpfs")),
        &fd,
        &shown,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )?;
    // The tmpfs just mounted, where the hierarchies' directories are made.
    let dir = resolve(root, dest)?;
    let info = crate::sys::read_proc("/proc/self/mountinfo").map_err(|e| RootfsError::Io {
        op: "read",
        path: "/proc/self/mountinfo".into(),
        cause: e,
    })?;
    for line in info.lines() {
        // ... - cgroup cgroup rw,memory  /  ... - cgroup2 cgroup2 rw
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let super_opts = post.nth(1).unwrap_or("");
        let mnt = pre.split(' ').nth(4).unwrap_or("");
        let Some(name) = mnt.strip_prefix("/sys/fs/cgroup/") else {
            continue;
        };
        if name.contains('/') || (fstype != "cgroup" && fstype != "cgroup2") {
            continue;
        }
        let sub = dest.join(name);
        let sub_shown = root.display(&sub);
        let sub_fd = subdir(&dir, std::ffi::OsStr::new(name)).map_err(|cause| RootfsError::Io {
            op: "create mount point",
            path: sub_shown.clone(),
            cause,
        })?;
        if cgroupns {
            let data: Vec<&str> = super_opts
                .split(',')
                .filter(|o| *o != "rw" && *o != "ro")
                .collect();
            mount_fd(
                Some(Path::new(fstype)),
                &sub_fd,
                &sub_shown,
                Some(fstype),
                flags,
                Some(&data.join(",")),
            )?;
        } else {
            mount_fd(
                Some(Path::new(mnt)),
                &sub_fd,
                &sub_shown,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            remount_in(root, &sub, flags)?;
        }
    }
    // cpu -> cpu,cpuacct and friends, made in the tmpfs just mounted.
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let _ = nix::unistd::symlinkat(&t, dir.as_fd(), e.file_name().as_os_str());
                }
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_in(root, dest, flags | base)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let o = parse_options(&[
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
            "rslave".into(),
            "ro".into(),
        ]);
        assert!(o.flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }
}
