//! The container's root filesystem: propagation, the OCI mounts in order,
//! /dev, pivot_root (or chroot), then masked and read-only paths.

mod dev;
pub mod mounts;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use mounts::{do_mount, remount_bind};

/// Errors while building the root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mount {src:?} on {dest} (type {fstype:?}, flags {flags:?}): {source}")]
    Mount {
        src: String,
        dest: PathBuf,
        fstype: String,
        flags: MsFlags,
        source: nix::Error,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("pivot_root {path}: {source}")]
    Pivot { path: PathBuf, source: nix::Error },
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

/// Everything before pivot_root: propagation, the rootfs bind, the mounts and
/// /dev. Runs in the container's mount namespace.
pub fn prepare(
    spec: &Spec,
    rootfs: &Path,
    in_userns: bool,
    cgroupns: bool,
) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // Propagation of / first, so that nothing we mount leaks back to the host.
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    do_mount(None, Path::new("/"), None, prop, None)?;
    // pivot_root refuses a new root or a parent of it that is shared. Make the
    // rootfs's parent mount private before binding the rootfs onto itself, as
    // runc does: a bind of a shared mount would join its peer group. After a
    // recursive slave or private propagation of / (the default) no mount of
    // this namespace is shared any more, so there is nothing to look up.
    let none_shared = prop.contains(MsFlags::MS_REC)
        && prop.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE)
        && !prop.contains(MsFlags::MS_SHARED);
    if !none_shared {
        make_parent_private(rootfs)?;
    }
    do_mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;

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
        mounts::mount_one(rootfs, m, cgroupns)?;
    }
    let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    dev::create_devices(rootfs, devices, in_userns)?;
    dev::create_links(rootfs)?;
    Ok(())
}

/// Make the mount holding `path`'s parent private when it is shared (pivot_root refuses otherwise).
fn make_parent_private(rootfs: &Path) -> Result<(), RootfsError> {
    let Some(parent) = rootfs.parent() else {
        return Ok(());
    };
    let info = crate::sys::read_proc("/proc/self/mountinfo").unwrap_or_default();
    // Find the longest mount point that contains `parent` and check its "shared:" tag.
    let mut best: Option<(&str, bool)> = None;
    for line in info.lines() {
        let mut f = line.split(' ');
        let mp = f.nth(4).unwrap_or("");
        let optional = line.split(" - ").next().unwrap_or("");
        let shared = optional
            .split(' ')
            .skip(6)
            .any(|t| t.starts_with("shared:"));
        if parent.starts_with(mp) && best.is_none_or(|(b, _)| mp.len() >= b.len()) {
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        do_mount(None, Path::new(mp), None, MsFlags::MS_PRIVATE, None)?;
    }
    Ok(())
}

/// Switch the root: pivot_root and detach the old root, or (with `no_pivot`)
/// move the rootfs onto / and chroot.
pub fn switch_root(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let pivot_err = |source| RootfsError::Pivot {
        path: rootfs.to_path_buf(),
        source,
    };
    nix::unistd::chdir(rootfs).map_err(pivot_err)?;
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
        let _ = old.as_raw_fd();
    }
    nix::unistd::chdir("/").map_err(pivot_err)?;
    Ok(())
}

/// After the switch: sysctls, read-only paths, masked paths, /dev and / read-only.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for (k, v) in sysctl {
            let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&path, v).map_err(|e| RootfsError::Io {
                op: "write sysctl",
                path,
                source: e,
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
    Ok(())
}
