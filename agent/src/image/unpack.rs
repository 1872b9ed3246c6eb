//! Unpack one layer tar into an empty snapshot directory.
//!
//! Every path is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! relative to the snapshot, so no symlink (absolute, or with enough `..`)
//! can lead a write outside it; entries whose own name or hard-link target
//! has `..` or is absolute are refused outright. OCI whiteouts become overlay
//! whiteouts: `.wh.NAME` a 0/0 character device, `.wh..wh..opq` the
//! `trusted.overlay.opaque=y` xattr on the directory.
//!
//! Writes are bounded (see [`super::space`]): each regular file is charged
//! whole to the image's budget before its data is written, and the data to
//! the filesystem's free-space reserve. GNU sparse entries are written
//! sparse: their holes (which the tar reader yields as zeros) are skipped
//! with positioned writes and the final size set with `ftruncate`.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, SFlag, fchmod, futimens, makedev, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use super::space::{LayerCharge, LimitError, Reserve};

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?}: {reason}; refused (it would land outside the snapshot)")]
    Escape { path: String, reason: &'static str },
    #[error("layer entry {path:?}: hard link target {target:?}: {reason}; refused")]
    LinkEscape {
        path: String,
        target: String,
        reason: &'static str,
    },
    #[error("layer entry {path:?}: {op}: {errno}")]
    Sys {
        path: String,
        op: &'static str,
        errno: Errno,
    },
    #[error("layer entry {path:?}: unsupported entry type {kind}")]
    EntryType { path: String, kind: String },
    #[error("layer tar: {0}")]
    Tar(std::io::Error),
    #[error("layer entry {path:?}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("layer entry {path:?}")]
    Limit {
        path: String,
        #[source]
        source: LimitError,
    },
}

/// The limits an unpack is held to (none by default).
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackLimits<'a> {
    /// Free space to keep on the snapshot's filesystem.
    pub reserve: Option<&'a Reserve>,
    /// The layer's charge to the unpacked-size budget of its image.
    pub budget: Option<&'a LayerCharge<'a>>,
}

/// What an unpack produced.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    /// Size of the regular files unpacked (holes of sparse files included).
    pub bytes: u64,
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// What an entry without data is charged to the reserve (an inode, a directory block).
const ENTRY_COST: u64 = 4096;
/// File data is copied in pieces of this size.
const COPY_BUF: usize = 1 << 20;
/// Holes of sparse files are found at this granularity (a filesystem block).
const HOLE_BLOCK: usize = 4096;
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Split an entry path into normal components, refusing `..` and absolute paths.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path has a \"..\" component"),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn show(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

struct Unpacker<'l> {
    root: OwnedFd,
    limits: UnpackLimits<'l>,
    /// The copy buffer, reused for every file.
    buf: Vec<u8>,
    /// The parent directory of the last entry, reused for siblings.
    cached: Option<(Vec<u8>, OwnedFd)>,
    /// Directory mtimes, set at the end (creating children changes them).
    dir_times: Vec<(Vec<u8>, i64)>,
    is_root: bool,
}

/// Set the owner of `name` in `dir` without following a symlink there.
fn chown_nofollow<Fd: AsFd>(dir: Fd, name: &OsStr, uid: u32, gid: u32) -> Result<(), Errno> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

/// Set the access and modification times of `name` in `dir` to `mtime`,
/// without following a symlink there.
fn set_mtime_nofollow<Fd: AsFd>(dir: Fd, name: &OsStr, mtime: i64) -> Result<(), Errno> {
    let t = TimeSpec::new(mtime, 0);
    utimensat(
        dir,
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
}

fn sys<'a>(path: &'a [u8], op: &'static str) -> impl Fn(Errno) -> UnpackError + 'a {
    move |errno| UnpackError::Sys {
        path: show(path),
        op,
        errno,
    }
}

fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

impl Unpacker<'_> {
    /// Open (creating missing ones) the directory `comps` under the root.
    fn dir(&mut self, entry: &[u8], comps: &[&[u8]]) -> Result<BorrowedFd<'_>, UnpackError> {
        let joined = comps.join(&b'/');
        if self.cached.as_ref().is_some_and(|(p, _)| *p == joined) {
            return Ok(self
                .cached
                .as_ref()
                .map(|(_, fd)| fd.as_fd())
                .expect("checked"));
        }
        let fd = if comps.is_empty() {
            self.root.try_clone().map_err(|e| UnpackError::Io {
                path: show(entry),
                cause: e,
            })?
        } else {
            match openat2(
                &self.root,
                OsStr::from_bytes(&joined),
                beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
            ) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => self.make_dirs(entry, comps)?,
                Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                    return Err(UnpackError::Escape {
                        path: show(entry),
                        reason: "its parent resolves through a symlink that leaves the snapshot",
                    });
                }
                Err(e) => return Err(sys(entry, "open parent directory")(e)),
            }
        };
        self.cached = Some((joined, fd));
        Ok(self
            .cached
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("just set"))
    }

    /// Create missing parent directories one component at a time (tars may omit them).
    fn make_dirs(&self, entry: &[u8], comps: &[&[u8]]) -> Result<OwnedFd, UnpackError> {
        let mut cur = self.root.try_clone().map_err(|e| UnpackError::Io {
            path: show(entry),
            cause: e,
        })?;
        for c in comps {
            let name = OsStr::from_bytes(c);
            match mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(sys(entry, "mkdir parent")(e)),
            }
            cur = match openat2(&cur, name, beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY)) {
                Ok(fd) => fd,
                Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                    return Err(UnpackError::Escape {
                        path: show(entry),
                        reason: "its parent resolves through a symlink that leaves the snapshot",
                    });
                }
                Err(e) => return Err(sys(entry, "open parent directory")(e)),
            };
        }
        Ok(cur)
    }

    /// Remove whatever is at `name` (a directory recursively) unless `keep_dir`
    /// and it is a directory. Returns true if a directory was kept.
    fn clear(
        &mut self,
        entry: &[u8],
        parent: &[&[u8]],
        name: &[u8],
        keep_dir: bool,
    ) -> Result<bool, UnpackError> {
        let pfd = self.dir(entry, parent)?;
        let st = match nix::sys::stat::fstatat(
            pfd,
            OsStr::from_bytes(name),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(sys(entry, "stat")(e)),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        if is_dir {
            let d = openat(
                pfd,
                OsStr::from_bytes(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(sys(entry, "open directory to replace"))?;
            remove_contents(d).map_err(sys(entry, "remove replaced directory"))?;
            let pfd = self.dir(entry, parent)?;
            unlinkat(pfd, OsStr::from_bytes(name), UnlinkatFlags::RemoveDir)
                .map_err(sys(entry, "rmdir"))?;
        } else {
            unlinkat(pfd, OsStr::from_bytes(name), UnlinkatFlags::NoRemoveDir)
                .map_err(sys(entry, "unlink"))?;
        }
        // A removed directory may have been (a prefix of) the cached parent.
        self.cached = None;
        Ok(false)
    }

    fn entry<R: Read>(
        &mut self,
        mut e: tar::Entry<'_, R>,
        stats: &mut UnpackStats,
    ) -> Result<(), UnpackError> {
        let raw = e.path_bytes().into_owned();
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let comps = components(&raw).map_err(|reason| UnpackError::Escape {
            path: show(&raw),
            reason,
        })?;
        let hdr = e.header();
        let mode = hdr.mode().map_err(|err| UnpackError::Io {
            path: show(&raw),
            cause: err,
        })? & 0o7777;
        let uid = hdr.uid().map_err(|err| UnpackError::Io {
            path: show(&raw),
            cause: err,
        })? as u32;
        let gid = hdr.gid().map_err(|err| UnpackError::Io {
            path: show(&raw),
            cause: err,
        })? as u32;
        let mtime = hdr.mtime().unwrap_or(0) as i64;
        let xattrs = read_xattrs(&mut e);
        stats.entries += 1;
        if let Some(r) = self.limits.reserve {
            r.charge(ENTRY_COST).map_err(limit(&raw))?;
        }

        let Some((name, parent)) = comps.split_last() else {
            // "./": the snapshot root itself.
            if kind.is_dir() {
                self.meta_fd(
                    &raw,
                    self.root.try_clone().map_err(|err| UnpackError::Io {
                        path: show(&raw),
                        cause: err,
                    })?,
                    uid,
                    gid,
                    mode,
                    &xattrs,
                )?;
                self.dir_times.push((Vec::new(), mtime));
            }
            return Ok(());
        };
        let name = *name;

        if name.starts_with(WHITEOUT_PREFIX) {
            let pfd = self.dir(&raw, parent)?;
            if name == OPAQUE {
                let d = openat(
                    pfd,
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(sys(&raw, "open opaque dir"))?;
                set_xattr(d.as_fd(), "trusted.overlay.opaque", b"y")
                    .map_err(sys(&raw, "setxattr trusted.overlay.opaque"))?;
            } else if name.starts_with(b".wh..wh.") {
                // aufs metadata (.wh..wh.plnk etc.): meaningless for overlay.
            } else {
                let target = &name[WHITEOUT_PREFIX.len()..];
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(UnpackError::Escape {
                        path: show(&raw),
                        reason: "whiteout of an invalid name",
                    });
                }
                self.clear(&raw, parent, target, false)?;
                let pfd = self.dir(&raw, parent)?;
                mknodat(
                    pfd,
                    OsStr::from_bytes(target),
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    makedev(0, 0),
                )
                .map_err(sys(&raw, "mknod whiteout"))?;
            }
            return Ok(());
        }

        let os_name = OsStr::from_bytes(name);
        match kind {
            tar::EntryType::Directory => {
                let kept = self.clear(&raw, parent, name, true)?;
                let pfd = self.dir(&raw, parent)?;
                if !kept {
                    mkdirat(pfd, os_name, Mode::from_bits_truncate(0o700))
                        .map_err(sys(&raw, "mkdir"))?;
                }
                let d = openat(
                    pfd,
                    os_name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(sys(&raw, "open directory"))?;
                self.meta_fd(&raw, d, uid, gid, mode, &xattrs)?;
                self.dir_times.push((comps.join(&b'/'), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // Charged whole before any data is written: an entry that would
                // cross a limit is refused before it takes any space.
                let size = e.size();
                let stored = e.header().entry_size().unwrap_or(size);
                if let Some(b) = self.limits.budget {
                    b.charge(size).map_err(limit(&raw))?;
                }
                if let Some(r) = self.limits.reserve {
                    r.charge(stored).map_err(limit(&raw))?;
                }
                self.clear(&raw, parent, name, false)?;
                let pfd = self.dir(&raw, parent)?;
                let fd = openat(
                    pfd,
                    os_name,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(sys(&raw, "create file"))?;
                let f = File::from(fd);
                let sparse = kind == tar::EntryType::GNUSparse;
                stats.bytes +=
                    copy_data(&mut e, &f, sparse, &mut self.buf, self.limits.reserve, &raw)?;
                let fd = OwnedFd::from(f);
                futimens(&fd, &TimeSpec::new(mtime, 0), &TimeSpec::new(mtime, 0))
                    .map_err(sys(&raw, "set times"))?;
                self.meta_fd(&raw, fd, uid, gid, mode, &xattrs)?;
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Escape {
                        path: show(&raw),
                        reason: "symlink without a target",
                    })?
                    .into_owned();
                self.clear(&raw, parent, name, false)?;
                let skip_chown = self.is_root && uid == 0 && gid == 0;
                let pfd = self.dir(&raw, parent)?;
                // The target is stored, never followed here: later lookups use RESOLVE_BENEATH.
                symlinkat(OsStr::from_bytes(&target), pfd, os_name)
                    .map_err(sys(&raw, "symlink"))?;
                if !skip_chown {
                    chown_nofollow(pfd, os_name, uid, gid).map_err(sys(&raw, "lchown"))?;
                }
                set_mtime_nofollow(pfd, os_name, mtime).map_err(sys(&raw, "set symlink times"))?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Escape {
                        path: show(&raw),
                        reason: "hard link without a target",
                    })?
                    .into_owned();
                let tcomps = components(&target).map_err(|reason| UnpackError::LinkEscape {
                    path: show(&raw),
                    target: show(&target),
                    reason,
                })?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(UnpackError::LinkEscape {
                        path: show(&raw),
                        target: show(&target),
                        reason: "empty target",
                    });
                };
                let tparent_fd = match openat2(
                    &self.root,
                    OsStr::from_bytes(&tparent.join(&b'/')),
                    beneath(OFlag::O_PATH | OFlag::O_DIRECTORY),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                        return Err(UnpackError::LinkEscape {
                            path: show(&raw),
                            target: show(&target),
                            reason: "target resolves through a symlink that leaves the snapshot",
                        });
                    }
                    Err(err) => return Err(sys(&raw, "open hard link target directory")(err)),
                };
                if tcomps == comps {
                    return Ok(());
                }
                self.clear(&raw, parent, name, false)?;
                let pfd = self.dir(&raw, parent)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                linkat(
                    &tparent_fd,
                    OsStr::from_bytes(tname),
                    pfd,
                    os_name,
                    AtFlags::empty(),
                )
                .map_err(sys(&raw, "hard link"))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Char | tar::EntryType::Block => {
                        let major = e.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = e.header().device_minor().ok().flatten().unwrap_or(0);
                        let f = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (f, makedev(major as u64, minor as u64))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.clear(&raw, parent, name, false)?;
                let pfd = self.dir(&raw, parent)?;
                mknodat(pfd, os_name, sflag, Mode::from_bits_truncate(mode), dev)
                    .map_err(sys(&raw, "mknod"))?;
                chown_nofollow(pfd, os_name, uid, gid).map_err(sys(&raw, "chown"))?;
                // mknod applied the umask; set the exact mode through an O_PATH-free path: fchmodat.
                nix::sys::stat::fchmodat(
                    pfd,
                    os_name,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(sys(&raw, "chmod"))?;
                set_mtime_nofollow(pfd, os_name, mtime).map_err(sys(&raw, "set times"))?;
            }
            other => {
                return Err(UnpackError::EntryType {
                    path: show(&raw),
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    /// Owner, mode (after chown: chown clears set-id bits) and xattrs through an open fd.
    fn meta_fd(
        &self,
        raw: &[u8],
        fd: OwnedFd,
        uid: u32,
        gid: u32,
        mode: u32,
        xattrs: &[(CString, Vec<u8>)],
    ) -> Result<(), UnpackError> {
        if !(self.is_root && uid == 0 && gid == 0) {
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(sys(raw, "chown"))?;
        }
        fchmod(&fd, Mode::from_bits_truncate(mode)).map_err(sys(raw, "chmod"))?;
        for (k, v) in xattrs {
            set_xattr_c(fd.as_fd(), k, v).map_err(sys(raw, "setxattr"))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        self.cached = None;
        for (path, mtime) in self.dir_times.iter().rev() {
            let fd = if path.is_empty() {
                self.root.try_clone().map_err(|e| UnpackError::Io {
                    path: String::new(),
                    cause: e,
                })?
            } else {
                match openat2(
                    &self.root,
                    OsStr::from_bytes(path),
                    beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW),
                ) {
                    Ok(fd) => fd,
                    // Replaced by a later entry of the same layer.
                    Err(Errno::ENOENT) | Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => continue,
                    Err(e) => return Err(sys(path, "open directory for times")(e)),
                }
            };
            futimens(&fd, &TimeSpec::new(*mtime, 0), &TimeSpec::new(*mtime, 0))
                .map_err(sys(path, "set directory times"))?;
        }
        Ok(())
    }
}

fn limit(path: &[u8]) -> impl Fn(LimitError) -> UnpackError + '_ {
    move |source| UnpackError::Limit {
        path: show(path),
        source,
    }
}

/// Read into `buf` until it is full or the input ends; returns the bytes read.
fn fill(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copy a file entry's data into `f`, announcing every write to the
/// reserve. With `sparse`, blocks of zeros are left as holes. Returns the
/// file's size.
fn copy_data(
    src: &mut impl Read,
    f: &File,
    sparse: bool,
    buf: &mut Vec<u8>,
    reserve: Option<&Reserve>,
    path: &[u8],
) -> Result<u64, UnpackError> {
    let io = |cause| UnpackError::Io {
        path: show(path),
        cause,
    };
    let write = |data: &[u8], at: u64| -> Result<(), UnpackError> {
        if let Some(r) = reserve {
            r.charge(data.len() as u64).map_err(limit(path))?;
        }
        f.write_all_at(data, at).map_err(io)
    };
    buf.resize(COPY_BUF, 0);
    let mut off = 0u64;
    loop {
        let n = fill(src, buf).map_err(io)?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        if sparse {
            // Buffers are whole multiples of HOLE_BLOCK, so blocks stay aligned to the file.
            let is_hole = |i: usize| {
                let end = (i + HOLE_BLOCK).min(n);
                data[i..end] == ZEROS[..end - i]
            };
            let mut i = 0;
            while i < n {
                if is_hole(i) {
                    i += HOLE_BLOCK;
                    continue;
                }
                let start = i;
                while i < n && !is_hole(i) {
                    i += HOLE_BLOCK;
                }
                let end = i.min(n);
                write(&data[start..end], off + start as u64)?;
            }
        } else {
            write(data, off)?;
        }
        off += n as u64;
    }
    if sparse {
        // A trailing hole: only the size says it is there.
        f.set_len(off).map_err(io)?;
    }
    Ok(off)
}

fn read_xattrs<R: Read>(e: &mut tar::Entry<'_, R>) -> Vec<(CString, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = e.pax_extensions() {
        for ext in exts.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.")
                && let Ok(c) = CString::new(name.to_vec())
            {
                out.push((c, ext.value_bytes().to_vec()));
            }
        }
    }
    out
}

fn set_xattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> Result<(), Errno> {
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    set_xattr_c(fd, &c, value)
}

fn set_xattr_c(fd: BorrowedFd<'_>, name: &CString, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: fd is open, name is NUL-terminated, value pointer/len describe a live slice.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

/// Remove everything inside an open directory (not following symlinks).
pub(crate) fn remove_contents(dir: OwnedFd) -> Result<(), Errno> {
    let mut d = nix::dir::Dir::from_fd(dir)?;
    let names: Vec<(CString, bool)> = d
        .iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
        .map(|e| {
            (
                e.file_name().to_owned(),
                e.file_type() == Some(nix::dir::Type::Directory),
            )
        })
        .collect();
    let fd = d.as_fd();
    for (name, is_dir) in names {
        if is_dir {
            let sub = openat(
                fd,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            remove_contents(sub)?;
            unlinkat(fd, name.as_c_str(), UnlinkatFlags::RemoveDir)?;
        } else {
            unlinkat(fd, name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(())
}

/// Unpack the tar stream `reader` into the (empty, existing) directory
/// `dest`, held to `limits`.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    limits: UnpackLimits<'_>,
) -> Result<UnpackStats, UnpackError> {
    let root = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::Sys {
        path: dest.display().to_string(),
        op: "open snapshot",
        errno,
    })?;
    let mut u = Unpacker {
        root,
        limits,
        buf: Vec::new(),
        cached: None,
        dir_times: Vec::new(),
        is_root: Uid::effective().is_root(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let entry = entry.map_err(UnpackError::Tar)?;
        u.entry(entry, &mut stats)?;
    }
    u.finish()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn entry(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn unpack(
        build: impl FnOnce(&mut tar::Builder<Vec<u8>>),
    ) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        unpack_with(build, UnpackLimits::default())
    }

    fn unpack_with(
        build: impl FnOnce(&mut tar::Builder<Vec<u8>>),
        limits: UnpackLimits<'_>,
    ) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let data = b.into_inner().unwrap();
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("fs");
        std::fs::create_dir(&dest).unwrap();
        let r = unpack_layer(&data[..], &dest, limits);
        (t, r)
    }

    /// A GNU sparse entry of `size` bytes with data `regions` (offset, bytes).
    fn sparse(b: &mut tar::Builder<Vec<u8>>, name: &str, size: u64, regions: &[(u64, &[u8])]) {
        let data: Vec<u8> = regions.iter().flat_map(|(_, d)| d.to_vec()).collect();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        for (slot, (off, d)) in g.sparse.iter_mut().zip(regions) {
            slot.set_offset(*off);
            slot.set_length(d.len() as u64);
        }
        g.set_real_size(size);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }

    #[test]
    fn sparse_entries_are_written_sparse() {
        const SIZE: u64 = 64 << 20;
        let a = vec![b'a'; 8192];
        let mut m = vec![0u8; 512];
        m[..2].copy_from_slice(b"b\n");
        let c = vec![b'c'; 100];
        // Every region but the last fills whole 512-byte tar blocks.
        let (t, r) = unpack(|b| {
            sparse(
                b,
                "sparse",
                SIZE,
                &[(0, &a), (40 << 20, &m), (SIZE - 100, &c)],
            )
        });
        let stats = r.unwrap();
        assert_eq!(stats.bytes, SIZE);
        let path = t.path().join("fs/sparse");
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.len(), SIZE);
        assert!(
            m.blocks() * 512 <= 256 << 10,
            "{} bytes allocated for 10 KiB of data",
            m.blocks() * 512
        );
        let got = std::fs::read(&path).unwrap();
        let mut want = vec![0u8; SIZE as usize];
        want[..8192].copy_from_slice(&a);
        want[40 << 20..(40 << 20) + 2].copy_from_slice(b"b\n");
        want[(SIZE - 100) as usize..].copy_from_slice(&c);
        assert!(got == want, "sparse file content differs");
    }

    #[test]
    fn limits_refuse_an_entry_before_writing_it() {
        let budget = crate::image::space::ImageBudget::new("img", 1 << 20);
        let charge = budget.layer();
        let limits = UnpackLimits {
            reserve: None,
            budget: Some(&charge),
        };
        let (t, r) = unpack_with(
            |b| {
                entry(b, tar::EntryType::Regular, "small", None, b"x", 0o644);
                // A trailing hole is a last, empty region at the end.
                sparse(b, "huge", 1 << 40, &[(0, b"y"), (1 << 40, b"")]);
            },
            limits,
        );
        assert!(
            matches!(&r, Err(UnpackError::Limit { path, source: LimitError::ImageSize { limit } }) if path == "huge" && *limit == 1 << 20),
            "{r:?}"
        );
        assert!(!t.path().join("fs/huge").exists());
    }

    #[test]
    fn whiteouts_modes_links() {
        husk_tests::require_root!();
        let (t, r) = unpack(|b| {
            entry(b, tar::EntryType::Directory, "d/", None, b"", 0o750);
            entry(b, tar::EntryType::Regular, "d/f", None, b"hi", 0o4755);
            entry(b, tar::EntryType::Regular, "d/.wh.gone", None, b"", 0o644);
            entry(
                b,
                tar::EntryType::Regular,
                "o/.wh..wh..opq",
                None,
                b"",
                0o644,
            );
            entry(
                b,
                tar::EntryType::Symlink,
                "abs",
                Some("/etc/passwd"),
                b"",
                0o777,
            );
            entry(b, tar::EntryType::Link, "d/hard", Some("d/f"), b"", 0o644);
            entry(b, tar::EntryType::Char, "null", None, b"", 0o666);
        });
        r.unwrap();
        let fs = t.path().join("fs");
        let f = std::fs::metadata(fs.join("d/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o4755);
        assert_eq!(f.mtime(), 1_700_000_000);
        assert_eq!(
            std::fs::metadata(fs.join("d")).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(
            std::fs::metadata(fs.join("d")).unwrap().mtime(),
            1_700_000_000
        );
        let w = std::fs::symlink_metadata(fs.join("d/gone")).unwrap();
        assert!(w.file_type().is_char_device());
        assert_eq!(w.rdev(), 0);
        let mut buf = [0u8; 8];
        let path = CString::new(fs.join("o").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path and buffer.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(&buf[..n as usize], b"y");
        assert_eq!(
            std::fs::read_link(fs.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::metadata(fs.join("d/hard")).unwrap().ino(), f.ino());
        assert!(
            std::fs::symlink_metadata(fs.join("null"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn escapes_are_refused() {
        let (_t, r) = unpack(|b| entry(b, tar::EntryType::Regular, "a/../../x", None, b"x", 0o644));
        assert!(matches!(r, Err(UnpackError::Escape { .. })), "{r:?}");
        let (_t, r) = unpack(|b| {
            entry(b, tar::EntryType::Symlink, "l", Some("/tmp"), b"", 0o777);
            entry(b, tar::EntryType::Regular, "l/x", None, b"x", 0o644);
        });
        assert!(matches!(r, Err(UnpackError::Escape { .. })), "{r:?}");
        let (_t, r) = unpack(|b| {
            entry(
                b,
                tar::EntryType::Link,
                "h",
                Some("../etc/shadow"),
                b"",
                0o644,
            )
        });
        assert!(matches!(r, Err(UnpackError::LinkEscape { .. })), "{r:?}");
        let (t, r) = unpack(|b| {
            entry(b, tar::EntryType::Regular, "f", None, b"x", 0o644);
            // A later symlink replaces the file; a write to its name must not follow it.
            entry(
                b,
                tar::EntryType::Symlink,
                "f",
                Some("/tmp/husk-unpack-test-should-not-exist"),
                b"",
                0o777,
            );
            entry(b, tar::EntryType::Regular, "f", None, b"y", 0o644);
        });
        r.unwrap();
        assert_eq!(std::fs::read(t.path().join("fs/f")).unwrap(), b"y");
        assert!(!Path::new("/tmp/husk-unpack-test-should-not-exist").exists());
    }
}
