//! subPath mounts with kubelet's escape checks (`SafeMakeDir`,
//! `PrepareSafeSubpath`): the path is created inside the volume without
//! following symlinks out of it, resolved, checked to lie within the
//! volume, opened `O_PATH|O_NOFOLLOW`, and that very inode bind-mounted
//! (through `/proc/self/fd/N`) to `<pod>/volume-subpaths/<volume>/<container>/<index>`,
//! so a symlink swapped in later cannot redirect the mount.

use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use super::{VolumeError, host};

fn err(sub: &str, reason: impl Into<String>) -> VolumeError {
    VolumeError::SubPath {
        sub_path: sub.to_string(),
        reason: reason.into(),
    }
}

fn within(root: &Path, p: &Path, sub: &str) -> Result<(), VolumeError> {
    if p.starts_with(root) {
        Ok(())
    } else {
        Err(err(
            sub,
            format!(
                "{} is not within the volume path {}",
                p.display(),
                root.display()
            ),
        ))
    }
}

/// Create the missing directories of `sub` under `volume`, refusing any
/// existing component that resolves outside the volume.
fn safe_make_dir(root: &Path, sub: &str) -> Result<(), VolumeError> {
    let mut cur = root.to_path_buf();
    for c in Path::new(sub).components() {
        let Component::Normal(name) = c else {
            if c == Component::CurDir {
                continue;
            }
            return Err(err(sub, "must be relative and must not contain '..'"));
        };
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(_) => {
                let real = std::fs::canonicalize(&cur)
                    .map_err(|e| err(sub, format!("resolve {}: {e}", cur.display())))?;
                within(root, &real, sub)?;
                cur = real;
            }
            Err(_) => {
                std::fs::create_dir(&cur)
                    .map_err(|e| err(sub, format!("create {}: {e}", cur.display())))?;
                std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| err(sub, format!("chmod {}: {e}", cur.display())))?;
            }
        }
    }
    Ok(())
}

/// Prepare the subPath `sub` of the volume at `volume` for mount `index`
/// of `container`; returns the host path to mount.
pub fn prepare(
    pod_dir: &Path,
    volume: &Path,
    sub: &str,
    volume_name: &str,
    container: &str,
    index: usize,
) -> Result<PathBuf, VolumeError> {
    if sub.starts_with('/')
        || Path::new(sub)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        return Err(err(sub, "must be relative and must not contain '..'"));
    }
    let root = std::fs::canonicalize(volume)
        .map_err(|e| err(sub, format!("resolve volume {}: {e}", volume.display())))?;
    let full = root.join(sub);
    if std::fs::metadata(&full).is_err() {
        safe_make_dir(&root, sub)?;
    }
    let resolved = std::fs::canonicalize(&full)
        .map_err(|e| err(sub, format!("resolve {}: {e}", full.display())))?;
    within(&root, &resolved, sub)?;
    let fd = open(
        &resolved,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(sub, format!("open {}: {e}", resolved.display())))?;
    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    // The opened inode must still be the checked path (no swap in between).
    let now = std::fs::read_link(&proc_path)
        .map_err(|e| err(sub, format!("readlink {}: {e}", proc_path.display())))?;
    within(&root, &now, sub)?;
    let is_dir = std::fs::metadata(&proc_path)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let target = pod_dir
        .join("volume-subpaths")
        .join(volume_name)
        .join(container)
        .join(index.to_string());
    if host::is_mount_point(&target) {
        // Already prepared for an earlier start of this container.
        return Ok(target);
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| err(sub, format!("create {}: {e}", parent.display())))?;
    }
    let made = if is_dir {
        std::fs::create_dir(&target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .map(|_| ())
    };
    if let Err(e) = made
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(err(sub, format!("create {}: {e}", target.display())));
    }
    host::bind(&proc_path, &target)?;
    Ok(target)
}
