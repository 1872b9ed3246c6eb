//! Content-addressed blob store: `<root>/content/sha256/<hex>`. A blob is
//! written to a temp file, hashed on the way, fsynced, and renamed into place
//! only when its digest (and size) match what was expected.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::digest::{Digest, Hasher};
use super::fsutil;
use super::space::{LimitError, Reserve, limit_in};

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {expected}: content does not match its digest (got {actual}); discarded")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}; discarded")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the content store")]
    Missing(Digest),
    #[error("content store {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("content store: blob not written")]
    Limit(#[source] LimitError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ContentError + '_ {
    move |cause| match limit_in(&cause) {
        Some(l) => ContentError::Limit(l),
        None => ContentError::Io {
            path: path.to_path_buf(),
            cause,
        },
    }
}

/// The blob store.
#[derive(Debug, Clone)]
pub struct ContentStore {
    dir: PathBuf,
    tmp: PathBuf,
    reserve: Option<Arc<Reserve>>,
}

impl ContentStore {
    /// `dir` holds the blobs; `tmp` (same filesystem) the writes in progress.
    pub fn open(dir: PathBuf, tmp: PathBuf) -> Result<Self, ContentError> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(ContentStore {
            dir,
            tmp,
            reserve: None,
        })
    }

    /// Hold every blob write to a free-space reserve.
    pub fn with_reserve(mut self, reserve: Arc<Reserve>) -> Self {
        self.reserve = Some(reserve);
        self
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Size of a stored blob.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.path(d)).ok().map(|m| m.len())
    }

    /// Read a (small) blob whole, verifying its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, ContentError> {
        let p = self.path(d);
        let data = match fs::read(&p) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContentError::Missing(*d));
            }
            Err(e) => return Err(io(&p)(e)),
        };
        let actual = Digest::of(&data);
        if actual != *d {
            return Err(ContentError::DigestMismatch {
                expected: *d,
                actual,
            });
        }
        Ok(data)
    }

    /// Open a stored blob for streaming.
    pub fn open_blob(&self, d: &Digest) -> Result<File, ContentError> {
        let p = self.path(d);
        File::open(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ContentError::Missing(*d)
            } else {
                io(&p)(e)
            }
        })
    }

    /// Start writing a blob.
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        fs::create_dir_all(&self.tmp).map_err(io(&self.tmp))?;
        let path = self.tmp.join(format!(
            "{}-{:016x}.blob",
            std::process::id(),
            fsutil::rand_u64()
        ));
        let file = File::create(&path).map_err(io(&path))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            dir: self.dir.clone(),
            hasher: Hasher::new(),
            reserve: self.reserve.clone(),
        })
    }

    /// Store `data`, which must have digest `expected`.
    pub fn put(&self, data: &[u8], expected: &Digest) -> Result<(), ContentError> {
        if self.has(expected) {
            return Ok(());
        }
        let mut w = self.writer()?;
        w.write_all(data).map_err(io(&self.tmp))?;
        w.commit(expected, Some(data.len() as u64))
    }

    /// Store the whole of `r`, which must have digest `expected`.
    pub fn put_reader(
        &self,
        mut r: impl Read,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<(), ContentError> {
        if self.has(expected) {
            return Ok(());
        }
        let mut w = self.writer()?;
        std::io::copy(&mut r, &mut w).map_err(io(&self.tmp))?;
        w.commit(expected, size)
    }

    pub fn remove(&self, d: &Digest) -> Result<(), ContentError> {
        let p = self.path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        super::digest::sha256_entries(&self.dir).map_err(io(&self.dir))
    }
}

/// A blob being written; dropped without `commit` it leaves nothing behind.
pub struct BlobWriter {
    file: Option<File>,
    path: PathBuf,
    dir: PathBuf,
    hasher: Hasher,
    reserve: Option<Arc<Reserve>>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }
    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// Verify digest and size, fsync, and move the blob into the store.
    pub fn commit(mut self, expected: &Digest, size: Option<u64>) -> Result<(), ContentError> {
        let actual = self.hasher.clone().finish();
        if let Some(s) = size
            && s != self.hasher.len()
        {
            return Err(ContentError::SizeMismatch {
                digest: *expected,
                expected: s,
                actual: self.hasher.len(),
            });
        }
        if actual != *expected {
            return Err(ContentError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        let file = self.file.take().expect("commit once");
        file.sync_all().map_err(io(&self.path))?;
        drop(file);
        let dest = self.dir.join(expected.hex());
        fs::rename(&self.path, &dest).map_err(io(&dest))?;
        fsutil::sync_dir(&self.dir).map_err(io(&self.dir))?;
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob already committed"))?;
        if let Some(r) = &self.reserve {
            r.charge(buf.len() as u64).map_err(std::io::Error::other)?;
        }
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(t.path().join("blobs"), t.path().join("tmp")).unwrap();
        let wrong = Digest::of(b"other");
        let err = cs.put(b"data", &wrong).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        assert!(!cs.has(&wrong));
        assert_eq!(fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
        let d = Digest::of(b"data");
        cs.put(b"data", &d).unwrap();
        assert_eq!(cs.read(&d).unwrap(), b"data");
        assert_eq!(cs.list().unwrap(), vec![d]);
    }
}
