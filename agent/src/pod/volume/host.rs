//! Host side of volumes: hostPath type checks, tmpfs, bind mounts and
//! finding mounts under a directory (for teardown).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::VolumeError;

/// kubelet's hostPath `type` check (`checkTypeInternal`); the `OrCreate`
/// types create a missing directory (0755, with parents) or file (0644).
pub fn check_host_path(path: &Path, type_: &str) -> Result<(), VolumeError> {
    let fail = |what: &str| VolumeError::HostPath {
        path: path.to_path_buf(),
        reason: format!(
            "hostPath type check failed: {} is not {what}",
            path.display()
        ),
    };
    let meta = std::fs::metadata(path).ok();
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| VolumeError::Io { what, source }
    };
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(path).map_err(io("create"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(io("chmod"))
        }
        "DirectoryOrCreate" | "Directory" => meta
            .filter(|m| m.is_dir())
            .map(|_| ())
            .ok_or_else(|| fail("a directory")),
        "FileOrCreate" if meta.is_none() => {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io("create"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                .map_err(io("chmod"))
        }
        "FileOrCreate" | "File" => meta
            .filter(|m| m.is_file())
            .map(|_| ())
            .ok_or_else(|| fail("a file")),
        "Socket" => meta
            .filter(|m| m.file_type().is_socket())
            .map(|_| ())
            .ok_or_else(|| fail("a socket file")),
        "CharDevice" => meta
            .filter(|m| m.file_type().is_char_device())
            .map(|_| ())
            .ok_or_else(|| fail("a character device")),
        "BlockDevice" => meta
            .filter(|m| m.file_type().is_block_device())
            .map(|_| ())
            .ok_or_else(|| fail("a block device")),
        other => Err(VolumeError::HostPath {
            path: path.to_path_buf(),
            reason: format!("{other} is an invalid volume type"),
        }),
    }
}

/// Whether `path` is a mount point: listed in this thread's mountinfo (a
/// bind mount of the same file system has no device change to spot).
pub fn is_mount_point(path: &Path) -> bool {
    mounts_under(path).iter().any(|m| m == path)
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.len() - i > 3 {
            if let Some(n) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    // thread-self: a test thread may have a mount namespace of its own.
    let Ok(info) = std::fs::read_to_string("/proc/thread-self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Mount a tmpfs at `dir` (mode 0777 as kubelet's memory emptyDir;
/// `size` bytes when given) unless one is there already.
pub fn ensure_tmpfs(dir: &Path, size: Option<i64>, mode: u32) -> Result<(), VolumeError> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={s}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|source| VolumeError::Mount {
        what: format!("mount tmpfs on {} ({opts})", dir.display()),
        source,
    })
}

/// Bind-mount `src` (a path, or `/proc/self/fd/N`) on `target`.
pub fn bind(src: &Path, target: &Path) -> Result<(), VolumeError> {
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| VolumeError::Mount {
        what: format!("bind {} on {}", src.display(), target.display()),
        source,
    })
}

/// Unmount every mount at or below `dir`, deepest first (lazily: a
/// container still holding one does not stop the pod's teardown).
pub fn unmount_all(dir: &Path) -> Result<(), VolumeError> {
    for m in mounts_under(dir) {
        umount2(&m, MntFlags::MNT_DETACH).map_err(|source| VolumeError::Mount {
            what: format!("unmount {}", m.display()),
            source,
        })?;
    }
    Ok(())
}
