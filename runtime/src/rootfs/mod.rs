//! The container's root filesystem: propagation, the OCI mounts in order,
//! /dev, pivot_root (or chroot), then masked and read-only paths.

mod dev;
pub mod mounts;
pub mod resolve;

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use mounts::{do_mount, remount_bind};
use resolve::Root;

/// Errors while building the root filesystem. Raised in the container's init,
/// whose errors cross the channel as text: the cause is part of the message
/// (`cause`, not a `#[source]`), printed once.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mount {src:?} on {dest} (type {fstype:?}, flags {flags:?}): {cause}")]
    Mount {
        src: String,
        dest: PathBuf,
        fstype: String,
        flags: MsFlags,
        cause: nix::Error,
    },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("pivot_root {path}: {cause}")]
    Pivot { path: PathBuf, cause: nix::Error },
}

/// Mount propagation flags by name (`linux.rootfsPropagation`, mount options).
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

fn default_dev_mounts() -> Vec<Mount> {
    let m = |dest: &str, typ: &str, opts: &[&str]| -> Mount {
        let mut mount = Mount::default();
        mount.set_destination(dest.into());
        mount.set_typ(Some(typ.into()));
        mount.set_source(Some(typ.into()));
        mount.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
        mount
    };
    vec![
        m(
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        m(
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        m(
            "/dev/shm",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        m("/dev/mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ]
}

/// The propagation asked for by `linux.rootfsPropagation`, if any.
fn requested_propagation(spec: &Spec) -> Option<MsFlags> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
}

/// Everything before the root switch: propagation, the rootfs bind, the
/// mounts and /dev. With `mount_ns` false (no mount namespace in
/// `linux.namespaces`: the runtime's is inherited) nothing is changed on the
/// runtime's `/` and the rootfs is not bound: the mounts are made in the
/// runtime's namespace, under the rootfs, as runc does.
///
/// The order is runc's: `/` gets the requested propagation (rslave by
/// default; an unbindable one only after the switch, as it would forbid the
/// rootfs bind), the mount that holds the rootfs is made private if it is
/// shared (pivot_root refuses a shared new root, and a bind of a shared mount
/// would join its peer group and send every mount made under the rootfs back
/// to the caller), then the rootfs is bound onto itself.
pub fn prepare(
    spec: &Spec,
    rootfs: &Path,
    in_userns: bool,
    cgroupns: bool,
    mount_ns: bool,
) -> Result<Root, RootfsError> {
    let linux = spec.linux().as_ref();
    if mount_ns {
        let prop = match requested_propagation(spec) {
            Some(p) if !p.contains(MsFlags::MS_UNBINDABLE) => p,
            _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        };
        do_mount(None, Path::new("/"), None, prop, None)?;
        // After a recursive slave or private propagation of / (the default)
        // no mount of this namespace is shared any more: nothing to look up.
        let none_shared = prop.contains(MsFlags::MS_REC)
            && prop.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE)
            && !prop.contains(MsFlags::MS_SHARED);
        if !none_shared {
            make_rootfs_mount_private(rootfs)?;
        }
        do_mount(
            Some(rootfs),
            rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
    }
    let root = Root::open(rootfs).map_err(|cause| RootfsError::Io {
        op: "open rootfs",
        path: rootfs.to_path_buf(),
        cause,
    })?;

    let spec_mounts = spec.mounts().as_deref().unwrap_or(&[]);
    let has_dev = spec_mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev"));
    let defaults;
    let all: Vec<&Mount> = if has_dev {
        spec_mounts.iter().collect()
    } else {
        defaults = default_dev_mounts();
        defaults.iter().chain(spec_mounts.iter()).collect()
    };
    for m in all {
        mounts::mount_one(&root, m, cgroupns)?;
    }
    let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    dev::create_devices(&root, devices, in_userns)?;
    dev::create_links(&root)?;
    Ok(root)
}

/// Make the mount that holds `rootfs` private when it is shared: the rootfs's
/// own mount when it is a mount point (containerd's overlay), else the mount
/// of the nearest parent, as runc's rootfsParentMountPrivate.
fn make_rootfs_mount_private(rootfs: &Path) -> Result<(), RootfsError> {
    let info = crate::sys::read_proc("/proc/self/mountinfo").map_err(|cause| RootfsError::Io {
        op: "read",
        path: "/proc/self/mountinfo".into(),
        cause,
    })?;
    match holding_mount(&info, rootfs) {
        Some((mp, true)) => do_mount(None, Path::new(&mp), None, MsFlags::MS_PRIVATE, None),
        _ => Ok(()),
    }
}

/// The mount point of the mount that holds `path` (the longest mount point
/// that is `path` or one of its parents; the last one mounted wins a tie)
/// and whether it is shared.
fn holding_mount(mountinfo: &str, path: &Path) -> Option<(String, bool)> {
    let mut best: Option<(String, bool)> = None;
    for line in mountinfo.lines() {
        let Some((pre, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| unescape(m)) else {
            continue;
        };
        let shared = fields.iter().skip(6).any(|t| t.starts_with("shared:"));
        if path.starts_with(&mp) && best.as_ref().is_none_or(|(b, _)| mp.len() >= b.len()) {
            best = Some((mp, shared));
        }
    }
    best
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Switch the root: pivot_root and detach the old root, or (with `no_pivot`)
/// move the rootfs onto / and chroot; without a mount namespace of its own,
/// chroot.
pub fn switch_root(root: &Root, no_pivot: bool, mount_ns: bool) -> Result<(), RootfsError> {
    let rootfs = root.path();
    let pivot_err = |cause| RootfsError::Pivot {
        path: rootfs.to_path_buf(),
        cause,
    };
    nix::unistd::fchdir(root.fd()).map_err(pivot_err)?;
    if !mount_ns {
        nix::unistd::chroot(".").map_err(pivot_err)?;
        nix::unistd::chdir("/").map_err(pivot_err)?;
        return Ok(());
    }
    if no_pivot {
        do_mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
        nix::unistd::chroot(".").map_err(pivot_err)?;
    } else {
        let old = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(pivot_err)?;
        nix::unistd::pivot_root(".", ".").map_err(pivot_err)?;
        // The old root is stacked under the new one at "/": detach it, without
        // letting the unmount propagate to the host.
        nix::unistd::fchdir(&old).map_err(pivot_err)?;
        do_mount(
            None,
            Path::new("."),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        )?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(pivot_err)?;
    }
    nix::unistd::chdir("/").map_err(pivot_err)
}

/// After the switch: sysctls, read-only paths, masked paths, /dev and /
/// read-only, then `linux.rootfsPropagation` on the new `/` (last: an
/// unbindable root would refuse the read-only binds).
pub fn finalize(spec: &Spec, mount_ns: bool) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&path, v).map_err(|e| RootfsError::Io {
                op: "write sysctl",
                path,
                cause: e,
            })?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[])
    {
        let path = Path::new(p);
        if !path.exists() {
            continue;
        }
        do_mount(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        remount_bind(
            path,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[])
    {
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => do_mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )?,
            Ok(_) => do_mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                MsFlags::MS_BIND,
                None,
            )?,
        }
    }
    // A /dev mount asked to be read-only is remounted so at the end (after
    // the devices were created in it).
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.options().iter().flatten().any(|o| o == "ro") {
            do_mount(
                None,
                Path::new("/dev"),
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            )?;
        }
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    if let Some(prop) = requested_propagation(spec).filter(|_| mount_ns) {
        do_mount(None, Path::new("/"), None, prop, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:50 / /run rw shared:5 - tmpfs tmpfs rw
41 30 0:60 / /run/ctr/rootfs rw shared:9 - overlay overlay rw
42 22 0:61 / /srv/my\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn the_rootfs_own_mount_holds_it() {
        // containerd's overlay: the rootfs is a mount point itself.
        assert_eq!(
            holding_mount(INFO, Path::new("/run/ctr/rootfs")),
            Some(("/run/ctr/rootfs".into(), true))
        );
        assert_eq!(
            holding_mount(INFO, Path::new("/run/ctr/other")),
            Some(("/run".into(), true))
        );
        assert_eq!(
            holding_mount(INFO, Path::new("/srv/my dir/rootfs")),
            Some(("/srv/my dir".into(), false))
        );
        assert_eq!(
            holding_mount(INFO, Path::new("/srv/my")),
            Some(("/".into(), true))
        );
    }
}
