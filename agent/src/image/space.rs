//! Limits on what a pull or import may write: a reserve of free space kept
//! on the image filesystem, and a cap on one image's unpacked size. A small
//! compressed layer can unpack to anything (a gzip of zeros, a GNU sparse
//! entry claiming terabytes); these keep such a layer from filling the disk
//! the node runs on.
//!
//! - The reserve (`--min-free`, default 5% of the filesystem, at most 1 GiB)
//!   is checked with `fstatvfs` of the store root before every large write
//!   and at least once per MiB written, by every writer of the store (layer
//!   unpacks and content blobs).
//! - The image limit (`--max-image-size`, default 64 GiB) caps the sum of
//!   the sizes of an image's regular files, over all its layers (shared
//!   ones included); an entry is charged whole before its data is written,
//!   so an oversized entry is refused before anything of it reaches disk.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;

/// Default per-image unpacked-size limit: generous for real images (the
/// largest common ones unpack to tens of GiB), small next to a node's disk.
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 64 << 30;
/// The default reserve is this share of the filesystem ...
pub const DEFAULT_MIN_FREE_PERCENT: f64 = 5.0;
/// ... but never more than this (5% of a large disk is more than needed).
pub const DEFAULT_MIN_FREE_CAP: u64 = 1 << 30;
/// Bytes written between two free-space checks, at most.
const CHECK_EVERY: u64 = 1 << 20;

/// How much free space to keep on the image filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MinFree {
    /// 5% of the filesystem, at most 1 GiB.
    #[default]
    Default,
    /// A number of bytes (0 turns the reserve off).
    Bytes(u64),
    /// A share of the filesystem's size, in percent.
    Percent(f64),
}

impl FromStr for MinFree {
    type Err = String;
    /// `SIZE` (see [`parse_size`]) or `N%`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(MinFree::Percent(v)),
                _ => Err(format!(
                    "{s:?}: a percentage must be a number from 0 to 100"
                )),
            },
            None => parse_size(s).map(MinFree::Bytes),
        }
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinFree::Default => write!(
                f,
                "{DEFAULT_MIN_FREE_PERCENT}% (at most {})",
                show_size(DEFAULT_MIN_FREE_CAP)
            ),
            MinFree::Bytes(n) => f.write_str(&show_size(*n)),
            MinFree::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The limits an image store enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Free space kept on the image filesystem.
    pub min_free: MinFree,
    /// Largest unpacked size of one image, in bytes.
    pub max_image_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_free: MinFree::Default,
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
        }
    }
}

/// Parse a size: bytes, or a number with a `K`, `M`, `G` or `T` suffix
/// (powers of 1024; `KiB`, `MB` and the like are read the same way).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use bytes or K, M, G, T)"
            ));
        }
    };
    let bad = || format!("{s:?}: not a size (bytes, or a number with K, M, G or T)");
    if num.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("{s:?}: too large"));
    }
    let v = num.parse::<f64>().map_err(|_| bad())?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?}: too large"));
    }
    Ok(bytes as u64)
}

/// A size for messages: `64 GiB`, `1.5 MiB`, `512 bytes`.
pub fn show_size(n: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        if n >= 1 << shift {
            let v = n as f64 / (1u64 << shift) as f64;
            return if n % (1 << shift) == 0 {
                format!("{} {name}", n >> shift)
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} bytes")
}

/// A write a limit refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitError {
    #[error(
        "its unpacked size would pass the per-image limit of {} (--max-image-size)",
        show_size(*limit)
    )]
    ImageSize { limit: u64 },
    #[error(
        "writing {} more would leave less than the reserve of {} free on the image filesystem {} ({} free; --min-free)",
        show_size(*need), show_size(*reserve), path.display(), show_size(*free)
    )]
    Reserve {
        path: PathBuf,
        need: u64,
        free: u64,
        reserve: u64,
    },
    #[error("statvfs of the image filesystem {}", path.display())]
    Statvfs {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
}

/// The limit error carried inside an I/O error (writers behind `io::Write`).
pub fn limit_in(e: &std::io::Error) -> Option<LimitError> {
    e.get_ref()?.downcast_ref::<LimitError>().cloned()
}

/// The free-space reserve of one image filesystem, shared by every writer of
/// a store.
#[derive(Debug)]
pub struct Reserve {
    dir: File,
    path: PathBuf,
    min_free: u64,
    /// Bytes announced since the last check.
    unchecked: AtomicU64,
}

impl Reserve {
    /// The reserve for the filesystem holding `path` (a directory).
    pub fn open(path: &Path, min_free: MinFree) -> Result<Self, LimitError> {
        let statvfs = |errno| LimitError::Statvfs {
            path: path.to_path_buf(),
            errno,
        };
        let dir = File::open(path)
            .map_err(|e| statvfs(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
        let st = nix::sys::statvfs::fstatvfs(&dir).map_err(statvfs)?;
        let total = st.blocks() as u64 * st.fragment_size() as u64;
        let share = |p: f64| (total as f64 * p / 100.0) as u64;
        let min_free = match min_free {
            MinFree::Default => share(DEFAULT_MIN_FREE_PERCENT).min(DEFAULT_MIN_FREE_CAP),
            MinFree::Bytes(n) => n,
            MinFree::Percent(p) => share(p),
        };
        Ok(Reserve {
            dir,
            path: path.to_path_buf(),
            min_free,
            // The first write checks at once: the filesystem may already be short.
            unchecked: AtomicU64::new(CHECK_EVERY),
        })
    }

    /// The reserve in bytes (0: off).
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Free bytes (for unprivileged use: `f_bavail`).
    pub fn free(&self) -> Result<u64, LimitError> {
        let st = nix::sys::statvfs::fstatvfs(&self.dir).map_err(|errno| LimitError::Statvfs {
            path: self.path.clone(),
            errno,
        })?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// Announce `n` bytes about to be written. Checks the free space when
    /// `n` is large or a MiB has been announced since the last check, and
    /// refuses when the write would eat into the reserve.
    pub fn charge(&self, n: u64) -> Result<(), LimitError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let since = self.unchecked.fetch_add(n, Ordering::Relaxed) + n;
        if since < CHECK_EVERY {
            return Ok(());
        }
        self.unchecked.store(0, Ordering::Relaxed);
        let free = self.free()?;
        if free < self.min_free.saturating_add(n) {
            return Err(LimitError::Reserve {
                path: self.path.clone(),
                need: n,
                free,
                reserve: self.min_free,
            });
        }
        Ok(())
    }
}

/// One image's unpacked size against the per-image limit, shared by the
/// concurrent unpacks of its layers.
#[derive(Debug)]
pub struct ImageBudget {
    image: String,
    limit: u64,
    used: AtomicU64,
}

impl ImageBudget {
    /// A budget for `image` (a name for messages) of `limit` bytes.
    pub fn new(image: impl Into<String>, limit: u64) -> Self {
        ImageBudget {
            image: image.into(),
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// The image this budget is for, as messages name it.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charge `n` bytes of unpacked content; refused when the total passes the limit.
    pub fn charge(&self, n: u64) -> Result<(), LimitError> {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            return Err(LimitError::ImageSize { limit: self.limit });
        }
        Ok(())
    }

    /// A charge for one layer's unpack, given back unless kept.
    pub fn layer(&self) -> LayerCharge<'_> {
        LayerCharge {
            budget: self,
            charged: AtomicU64::new(0),
            kept: false,
        }
    }
}

/// What one layer's unpack charged to its image's budget. Dropped without
/// [`LayerCharge::keep`] (the unpack failed, its snapshot is gone) it gives
/// the bytes back, so a layer fetched again from another endpoint does not
/// count twice.
#[derive(Debug)]
pub struct LayerCharge<'a> {
    budget: &'a ImageBudget,
    charged: AtomicU64,
    kept: bool,
}

impl LayerCharge<'_> {
    /// Charge `n` bytes to the image's budget.
    pub fn charge(&self, n: u64) -> Result<(), LimitError> {
        self.charged.fetch_add(n, Ordering::Relaxed);
        self.budget.charge(n)
    }

    /// The layer's snapshot is in place: its bytes stay charged.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for LayerCharge<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let n = self.charged.load(Ordering::Relaxed);
            self.budget.used.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_show() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("64 G"), Ok(64 << 30));
        assert_eq!(parse_size("2t"), Ok(2 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!("5%".parse::<MinFree>(), Ok(MinFree::Percent(5.0)));
        assert_eq!("1G".parse::<MinFree>(), Ok(MinFree::Bytes(1 << 30)));
        assert!("101%".parse::<MinFree>().is_err());
        assert_eq!(show_size(64 << 30), "64 GiB");
        assert_eq!(show_size(3 << 19), "1.5 MiB");
        assert_eq!(show_size(512), "512 bytes");
    }

    #[test]
    fn budget_refuses_past_the_limit() {
        let b = ImageBudget::new("img", 100);
        b.charge(60).unwrap();
        b.charge(40).unwrap();
        assert!(matches!(
            b.charge(1),
            Err(LimitError::ImageSize { limit: 100 })
        ));
        let b = ImageBudget::new("img", 100);
        let failed = b.layer();
        failed.charge(70).unwrap();
        assert!(failed.charge(70).is_err());
        drop(failed);
        assert_eq!(b.used(), 0, "a failed layer gives its charge back");
        let kept = b.layer();
        kept.charge(70).unwrap();
        kept.keep();
        assert_eq!(b.used(), 70);
    }

    #[test]
    fn reserve_refuses_a_write_into_it() {
        let t = tempfile::tempdir().unwrap();
        let r = Reserve::open(t.path(), MinFree::Bytes(1)).unwrap();
        let free = r.free().unwrap();
        r.charge(1).unwrap();
        assert!(matches!(
            r.charge(free),
            Err(LimitError::Reserve { need, .. }) if need == free
        ));
        let off = Reserve::open(t.path(), MinFree::Bytes(0)).unwrap();
        off.charge(u64::MAX).unwrap();
    }
}
