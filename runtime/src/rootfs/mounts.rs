//! One OCI mount: option parsing and the mount calls, in runc's manner.

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::RootfsError;

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

/// Resolve `path` inside `root`, following symlinks as if `root` were `/`
/// (so a symlink in the image cannot point a mount outside the rootfs).
pub fn secure_join(root: &Path, path: &Path) -> PathBuf {
    fn parts(p: &Path) -> impl Iterator<Item = std::ffi::OsString> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
    }
    let mut resolved = PathBuf::new();
    let mut queue: VecDeque<std::ffi::OsString> = parts(path).collect();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        match std::fs::read_link(root.join(&candidate)) {
            Ok(target) if links < 255 => {
                links += 1;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut next: VecDeque<_> = parts(&target).collect();
                next.extend(queue.drain(..));
                queue = next;
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

/// Create a mount point: a directory, or an empty file when `file` is set.
pub fn make_target(dest: &Path, file: bool) -> Result<(), RootfsError> {
    let ctx = |e: std::io::Error| RootfsError::Io {
        op: "create mount point",
        path: dest.to_path_buf(),
        source: e,
    };
    if file {
        if let Some(parent) = dest.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(ctx)?;
        }
        if std::fs::symlink_metadata(dest).is_err() {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dest)
                .map_err(ctx)?;
        }
        Ok(())
    } else {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dest)
            .map_err(ctx)
    }
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
    mount(src, dest, fstype, flags, data).map_err(|source| RootfsError::Mount {
        src: src.map(|s| s.display().to_string()).unwrap_or_default(),
        dest: dest.to_path_buf(),
        fstype: fstype.unwrap_or("").to_string(),
        flags,
        source,
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

/// Mount one OCI mount under `rootfs`.
pub fn mount_one(rootfs: &Path, m: &Mount, cgroupns: bool) -> Result<(), RootfsError> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = secure_join(rootfs, m.destination());
    let is_bind = typ == "bind" || opts.flags.contains(MsFlags::MS_BIND);
    if is_bind {
        let src = m.source().as_deref().ok_or_else(|| RootfsError::Invalid {
            what: format!("mount {}", m.destination().display()),
            message: "bind mount without a source".into(),
        })?;
        let meta = std::fs::metadata(src).map_err(|e| RootfsError::Io {
            op: "stat bind source",
            path: src.to_path_buf(),
            source: e,
        })?;
        make_target(&dest, !meta.is_dir())?;
        let bind = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        do_mount(Some(src), &dest, None, bind | MsFlags::MS_BIND, None)?;
        let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            remount_bind(&dest, rest)?;
        }
    } else if typ == "cgroup" {
        mount_cgroup(&dest, &opts, cgroupns)?;
    } else {
        make_target(&dest, false)?;
        let src = m.source().as_deref().unwrap_or(Path::new(typ));
        let flags = opts.flags - MsFlags::MS_REMOUNT;
        match do_mount(Some(src), &dest, Some(typ), flags, Some(&opts.data)) {
            // A sysfs mount is refused in a user namespace that does not own the
            // network namespace: bind the host's sysfs instead, as runc does.
            Err(RootfsError::Mount {
                source: nix::Error::EPERM,
                ..
            }) if typ == "sysfs" => {
                do_mount(
                    Some(Path::new("/sys")),
                    &dest,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                remount_bind(&dest, flags)?;
            }
            other => other?,
        }
    }
    for p in &opts.propagation {
        do_mount(None, &dest, None, *p, None)?;
    }
    Ok(())
}

/// The `cgroup` mount type: cgroup2 on a unified host; on v1/hybrid a tmpfs
/// with one cgroup v1 mount per hierarchy (the container's own cgroup through
/// its cgroup namespace), or bind mounts of the host's when there is none.
fn mount_cgroup(dest: &Path, opts: &Options, cgroupns: bool) -> Result<(), RootfsError> {
    make_target(dest, false)?;
    let flags = opts.flags - MsFlags::MS_REMOUNT - MsFlags::MS_BIND - MsFlags::MS_REC;
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        if cgroupns {
            return do_mount(
                Some(Path::new("cgroup2")),
                dest,
                Some("cgroup2"),
                flags,
                None,
            );
        }
        do_mount(
            Some(Path::new("/sys/fs/cgroup")),
            dest,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        return remount_bind(dest, flags);
    }
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    do_mount(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )?;
    let info = crate::sys::read_proc("/proc/self/mountinfo").map_err(|e| RootfsError::Io {
        op: "read",
        path: "/proc/self/mountinfo".into(),
        source: e,
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
        let target = dest.join(name);
        make_target(&target, false)?;
        if cgroupns {
            let data: Vec<&str> = super_opts
                .split(',')
                .filter(|o| *o != "rw" && *o != "ro")
                .collect();
            do_mount(
                Some(Path::new(fstype)),
                &target,
                Some(fstype),
                flags,
                Some(&data.join(",")),
            )?;
        } else {
            do_mount(
                Some(Path::new(mnt)),
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            remount_bind(&target, flags)?;
        }
    }
    // cpu -> cpu,cpuacct and friends.
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let _ = std::os::unix::fs::symlink(t, dest.join(e.file_name()));
                }
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(dest, flags | base)?;
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

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("evil")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("up")).unwrap();
        assert_eq!(
            secure_join(d.path(), Path::new("/evil/passwd")),
            d.path().join("etc/passwd")
        );
        assert_eq!(
            secure_join(d.path(), Path::new("/up/x")),
            d.path().join("x")
        );
        assert_eq!(
            secure_join(d.path(), Path::new("/a/../../b")),
            d.path().join("b")
        );
    }
}
