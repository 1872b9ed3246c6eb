//! Reading one file of an image (`/etc/passwd`, `/etc/group`) straight from
//! its unpacked snapshots, as the container's overlay would show it, without
//! mounting anything: CreateContainer resolves the user before the rootfs
//! exists (it is mounted by StartContainer).
//!
//! Snapshots hold overlay-format whiteouts (see `unpack`): a 0/0 character
//! device hides a name of the layers below, the `trusted.overlay.opaque=y`
//! xattr on a directory hides their whole directory. Symlinks are followed
//! inside the image (an absolute target from the image's root), as the
//! mounted rootfs would.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::store::{ImageError, ImageStore, io_err};

/// Symlinks followed in one lookup before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// What one layer says about a path.
enum Found {
    /// A regular file (in this layer).
    File(PathBuf),
    /// A symlink: the lookup restarts from its target.
    Link { target: PathBuf, rest: Vec<String> },
    /// Deleted here (a whiteout, an opaque directory or a non-directory on
    /// the way): the layers below do not count.
    Hidden,
    /// This layer has nothing for the path: look below.
    Absent,
}

impl ImageStore {
    /// The contents of `path` (absolute, in the image) as the image's
    /// rootfs shows it; `None` when there is no such regular file.
    pub fn image_file(&self, image: &str, path: &str) -> Result<Option<Vec<u8>>, ImageError> {
        let rec = self.resolve(image)?;
        // Top layer first, as overlay's lowerdir lists them.
        let layers: Vec<PathBuf> = rec
            .layers
            .iter()
            .rev()
            .map(|l| self.snapshots.fs_path(&l.diff_id))
            .collect();
        read_through(&layers, path)
    }
}

/// `path` through `layers` (top first).
fn read_through(layers: &[PathBuf], path: &str) -> Result<Option<Vec<u8>>, ImageError> {
    let mut comps = normalize(Path::new("/"), path);
    for _ in 0..MAX_LINKS {
        match lookup(layers, &comps)? {
            Found::File(p) => return fs::read(&p).map(Some).map_err(io_err(&p)),
            Found::Link { target, rest } => {
                let mut next = normalize(&target, "");
                next.extend(rest);
                comps = next;
            }
            Found::Hidden | Found::Absent => return Ok(None),
        }
    }
    Ok(None)
}

/// Resolve `..` and `.` lexically, from `base` (absolute) and `rel`.
fn normalize(base: &Path, rel: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in base.join(rel).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The first layer (top down) that has something to say about `comps`.
fn lookup(layers: &[PathBuf], comps: &[String]) -> Result<Found, ImageError> {
    if comps.is_empty() {
        return Ok(Found::Hidden);
    }
    for layer in layers {
        match in_layer(layer, comps)? {
            Found::Absent => continue,
            other => return Ok(other),
        }
    }
    Ok(Found::Absent)
}

fn in_layer(layer: &Path, comps: &[String]) -> Result<Found, ImageError> {
    let mut dir = layer.to_path_buf();
    let mut opaque = false;
    for (i, name) in comps.iter().enumerate() {
        let p = dir.join(name);
        let md = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // An opaque directory above hides the layers below.
                return Ok(if opaque { Found::Hidden } else { Found::Absent });
            }
            Err(e) => return Err(io_err(&p)(e)),
        };
        let ft = md.file_type();
        let last = i + 1 == comps.len();
        if ft.is_char_device() && md.rdev() == 0 {
            return Ok(Found::Hidden);
        }
        if ft.is_symlink() {
            let target = fs::read_link(&p).map_err(io_err(&p))?;
            // Relative to the link's directory, inside the image.
            let base: PathBuf = std::iter::once("/".to_string())
                .chain(comps[..i].iter().cloned())
                .collect();
            let t = if target.is_absolute() {
                target
            } else {
                base.join(target)
            };
            return Ok(Found::Link {
                target: t,
                rest: comps[i + 1..].to_vec(),
            });
        }
        if last {
            return Ok(if ft.is_file() {
                Found::File(p)
            } else {
                Found::Hidden
            });
        }
        if !ft.is_dir() {
            // A file where a directory should be: the path does not exist.
            return Ok(Found::Hidden);
        }
        opaque = opaque || is_opaque(&p);
        dir = p;
    }
    Ok(Found::Absent)
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut v = [0u8; 2];
    // SAFETY: `c` is a NUL-terminated path and `v` a buffer of the length
    // passed; lgetxattr writes at most that many bytes.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn whiteout(p: &Path) {
        nix::sys::stat::mknod(
            p,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
    }

    fn layers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let t = tempfile::tempdir().unwrap();
        let ls: Vec<PathBuf> = (0..n).map(|i| t.path().join(format!("l{i}"))).collect();
        for l in &ls {
            fs::create_dir_all(l.join("etc")).unwrap();
        }
        (t, ls)
    }

    #[test]
    fn the_top_layer_wins_and_lower_ones_show_through() {
        let (_t, ls) = layers(2);
        fs::write(ls[1].join("etc/passwd"), "low").unwrap();
        fs::write(ls[1].join("etc/group"), "g").unwrap();
        fs::write(ls[0].join("etc/passwd"), "top").unwrap();
        assert_eq!(read_through(&ls, "/etc/passwd").unwrap().unwrap(), b"top");
        assert_eq!(read_through(&ls, "/etc/group").unwrap().unwrap(), b"g");
        assert!(read_through(&ls, "/etc/shadow").unwrap().is_none());
    }

    #[test]
    fn a_whiteout_hides_the_file_below() {
        let (_t, ls) = layers(2);
        fs::write(ls[1].join("etc/passwd"), "low").unwrap();
        whiteout(&ls[0].join("etc/passwd"));
        assert!(read_through(&ls, "/etc/passwd").unwrap().is_none());
        // A whited-out directory too.
        let (_t2, ls) = layers(2);
        fs::write(ls[1].join("etc/passwd"), "low").unwrap();
        fs::remove_dir(ls[0].join("etc")).unwrap();
        whiteout(&ls[0].join("etc"));
        assert!(read_through(&ls, "/etc/passwd").unwrap().is_none());
    }

    #[test]
    fn symlinks_resolve_inside_the_image() {
        let (_t, ls) = layers(2);
        fs::create_dir_all(ls[1].join("usr/share/base")).unwrap();
        fs::write(ls[1].join("usr/share/base/passwd"), "linked").unwrap();
        symlink("../usr/share/base/passwd", ls[0].join("etc/passwd")).unwrap();
        assert_eq!(
            read_through(&ls, "/etc/passwd").unwrap().unwrap(),
            b"linked"
        );
        // An absolute target is taken from the image's root, not the host's.
        symlink("/usr/share/base/passwd", ls[0].join("etc/group")).unwrap();
        assert_eq!(read_through(&ls, "/etc/group").unwrap().unwrap(), b"linked");
        // A directory link on the way.
        let (_t2, ls) = layers(1);
        fs::remove_dir(ls[0].join("etc")).unwrap();
        fs::create_dir_all(ls[0].join("private/etc")).unwrap();
        fs::write(ls[0].join("private/etc/passwd"), "p").unwrap();
        symlink("private/etc", ls[0].join("etc")).unwrap();
        assert_eq!(read_through(&ls, "/etc/passwd").unwrap().unwrap(), b"p");
        // A loop ends as "no file".
        symlink("/etc/loop", ls[0].join("private/etc/loop")).unwrap();
        assert!(read_through(&ls, "/etc/loop").unwrap().is_none());
    }

    #[test]
    fn an_opaque_directory_hides_the_layers_below() {
        let (_t, ls) = layers(2);
        fs::write(ls[1].join("etc/passwd"), "low").unwrap();
        fs::write(ls[1].join("etc/group"), "low").unwrap();
        fs::write(ls[0].join("etc/group"), "top").unwrap();
        let c = std::ffi::CString::new(ls[0].join("etc").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name; the value is 1 byte long.
        let rc = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
        assert!(read_through(&ls, "/etc/passwd").unwrap().is_none());
        assert_eq!(read_through(&ls, "/etc/group").unwrap().unwrap(), b"top");
    }

    #[test]
    fn a_directory_or_a_file_on_the_way_is_no_file() {
        let (_t, ls) = layers(2);
        fs::create_dir(ls[0].join("etc/passwd")).unwrap();
        fs::write(ls[1].join("etc/passwd"), "low").unwrap();
        assert!(read_through(&ls, "/etc/passwd").unwrap().is_none());
        assert!(read_through(&ls, "/etc/passwd/x").unwrap().is_none());
    }
}
