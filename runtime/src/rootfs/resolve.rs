//! Paths inside the container's rootfs, resolved by the kernel against an fd
//! of the rootfs (`openat2` with `RESOLVE_IN_ROOT`) and used through
//! `/proc/self/fd/N`, as runc does since CVE-2021-30465.
//!
//! Resolving a destination to a path string and then mounting on that string
//! leaves a window in which a symlink of the rootfs (shared with another
//! container, or changed from the host) can be swapped to point outside it.
//! Here every lookup starts at the rootfs fd, `..` and absolute symlinks stop
//! at it, and the mount goes onto the very inode that was resolved: whatever
//! changes in between, nothing is mounted outside the rootfs.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How often a lookup is retried when the kernel reports a concurrent rename
/// (`EAGAIN` from `RESOLVE_IN_ROOT`).
const RETRIES: usize = 64;

/// The rootfs, opened once: every path of the container is resolved from it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    id: (u64, u64),
}

impl Root {
    /// Open the rootfs directory (after it was bound onto itself, so that the
    /// fd is in the container's own mount of it).
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = openat2(libc::AT_FDCWD, path, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let id = file_id(fd.as_raw_fd())?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            id,
        })
    }

    /// The rootfs path on the host (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rootfs fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `path` on the host side, for messages only: never used for a syscall.
    pub fn display(&self, path: &Path) -> PathBuf {
        self.path.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// An `O_PATH` fd of `path`, symlinks followed as if the rootfs were `/`.
    pub fn resolve(&self, path: &Path) -> io::Result<OwnedFd> {
        openat2(self.fd.as_raw_fd(), &relative(path), libc::O_PATH, IN_ROOT)
    }

    /// Like [`Root::resolve`], creating what is missing: directories, and the
    /// last component as an empty file when `file` is set. A missing
    /// component is made in the directory fd its parent resolved to (made
    /// first if it is missing too), then looked up again from the rootfs, so
    /// no step can leave it.
    pub fn create(&self, path: &Path, file: bool) -> io::Result<OwnedFd> {
        self.create_following(path, file, 0)
    }

    /// [`Root::create`]; a dangling symlink on the way is replaced by its
    /// target (so that its target gets created, inside the root, as
    /// securejoin-based runtimes do), at most 40 times.
    fn create_following(&self, path: &Path, file: bool, links: usize) -> io::Result<OwnedFd> {
        let missing = match self.resolve(path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => e,
            other => return other,
        };
        let Some(Component::Normal(name)) = path.components().next_back() else {
            return Err(missing);
        };
        let parent_path = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("/"),
        };
        let parent = self.create_following(parent_path, false, links)?;
        let made = if file {
            create_file(parent.as_raw_fd(), name)
        } else {
            mkdir(parent.as_raw_fd(), name)
        };
        match made {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
        match self.resolve(path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && links < 40 => {
                // It exists but does not resolve: a dangling symlink.
                let target = readlinkat(parent.as_raw_fd(), name).map_err(|_| e)?;
                self.create_following(&parent_path.join(target), file, links + 1)
            }
            other => other,
        }
    }

    /// Whether `fd` is the rootfs directory itself.
    pub fn is_root(&self, fd: &OwnedFd) -> bool {
        file_id(fd.as_raw_fd()).is_ok_and(|id| id == self.id)
    }

    /// The first symlink on the way to `path` and its target, for messages.
    pub fn first_symlink(&self, path: &Path) -> Option<(PathBuf, PathBuf)> {
        let mut prefix = PathBuf::from("/");
        for c in path.components() {
            let Component::Normal(name) = c else { continue };
            prefix.push(name);
            let parent = self.resolve(prefix.parent()?).ok()?;
            if let Ok(target) = readlinkat(parent.as_raw_fd(), name) {
                return Some((prefix, target));
            }
        }
        None
    }
}

/// The path through which the kernel reaches an fd's file (for mount(2),
/// which has no fd-based form that works on every kernel husk supports).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// `path` relative to the root fd (`.` for the root itself).
fn relative(path: &Path) -> PathBuf {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.to_path_buf()
    }
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(2), close-on-exec, retried on `EAGAIN`.
fn openat2(dirfd: RawFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: open_how is a plain struct of integers; all-zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    for _ in 0..RETRIES {
        // SAFETY: openat2 reads the NUL-terminated path and `how` (of the
        // size passed), both alive for the call; it returns a new fd or -1.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if rc >= 0 {
            // SAFETY: the kernel just returned this fd; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
            Some(libc::ENOSYS) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "openat2(2) is not available: husk needs Linux 5.6 or newer",
                ));
            }
            _ => return Err(err),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

fn mkdir(dirfd: RawFd, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: mkdirat reads the NUL-terminated name.
    if unsafe { libc::mkdirat(dirfd, c.as_ptr(), 0o755) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn create_file(dirfd: RawFd, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC;
    // SAFETY: openat reads the NUL-terminated name; the fd is closed below.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fd openat just returned.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

fn readlinkat(dirfd: RawFd, name: &OsStr) -> io::Result<PathBuf> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat writes at most buf.len() bytes into buf.
    let n = unsafe { libc::readlinkat(dirfd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsStr::from_bytes(&buf)))
}

/// (st_dev, st_ino) of an fd.
fn file_id(fd: RawFd) -> io::Result<(u64, u64)> {
    // SAFETY: fstat fills the zeroed struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `fd` is open for the call.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

/// A directory `name` made (if missing) in `dir` and opened without
/// following a symlink: for a tmpfs the runtime has just mounted, where
/// nothing else can have placed a symlink.
pub fn subdir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    match mkdir(dir.as_raw_fd(), name) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
        _ => {}
    }
    let c = cstr(name)?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat reads the NUL-terminated name; we own the fd it returns.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// (parent fd, last component) of `path` in `root`, the parent created if
/// missing: for mknod and symlink, which create the last component themselves.
pub fn parent_of<'p>(root: &Root, path: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = root.create(path.parent().unwrap_or(Path::new("/")), false)?;
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root_path = d.path().canonicalize().unwrap();
        std::fs::create_dir(root_path.join("etc")).unwrap();
        symlink("/etc", root_path.join("evil")).unwrap();
        symlink("../../../..", root_path.join("up")).unwrap();
        let root = Root::open(&root_path).unwrap();
        assert_eq!(
            real(&root.resolve(Path::new("/evil")).unwrap()),
            root_path.join("etc")
        );
        assert_eq!(real(&root.resolve(Path::new("/up")).unwrap()), root_path);
        assert_eq!(
            real(&root.resolve(Path::new("/etc/../../..")).unwrap()),
            root_path
        );
        assert!(root.is_root(&root.resolve(Path::new("/up")).unwrap()));
        assert!(!root.is_root(&root.resolve(Path::new("/etc")).unwrap()));
    }

    #[test]
    fn create_makes_missing_parts_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let root_path = d.path().canonicalize().unwrap();
        // An absolute symlink to a host dir: followed inside the root.
        symlink(host.path(), root_path.join("evil")).unwrap();
        let root = Root::open(&root_path).unwrap();
        let fd = root.create(Path::new("/evil/new/dir"), false).unwrap();
        let inside = root_path.join(host.path().strip_prefix("/").unwrap());
        assert_eq!(real(&fd), inside.join("new/dir"));
        assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
        let f = root.create(Path::new("/evil/new/file"), true).unwrap();
        assert!(std::fs::metadata(fd_path(&f)).unwrap().is_file());
        // Existing paths are returned as they are.
        let again = root.create(Path::new("/evil/new/dir"), false).unwrap();
        assert_eq!(real(&again), inside.join("new/dir"));
    }

    #[test]
    fn first_symlink_names_the_escape() {
        let d = tempfile::tempdir().unwrap();
        let root_path = d.path().canonicalize().unwrap();
        symlink("/", root_path.join("proc")).unwrap();
        let root = Root::open(&root_path).unwrap();
        assert!(root.is_root(&root.create(Path::new("/proc"), false).unwrap()));
        assert_eq!(
            root.first_symlink(Path::new("/proc/sys")),
            Some((PathBuf::from("/proc"), PathBuf::from("/")))
        );
        assert_eq!(root.first_symlink(Path::new("/dev")), None);
    }
}
