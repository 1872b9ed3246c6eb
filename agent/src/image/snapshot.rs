//! Layer snapshots: each layer unpacked once into
//! `<root>/snapshots/<diff_id hex>/fs`, shared by every image that has it.
//! A snapshot is unpacked in a temp dir and renamed into place when complete,
//! so a present snapshot is always a whole one. `<root>/l/<short>` holds short
//! symlinks to snapshot dirs to keep overlay mount options small.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot store {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("layer {0} is not unpacked")]
    Missing(Digest),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |cause| SnapshotError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Facts recorded with a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub diff_id: Digest,
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    links: PathBuf,
    tmp: PathBuf,
}

/// Length of the short link names under `<root>/l`.
const SHORT: usize = 12;

impl SnapshotStore {
    pub fn open(dir: PathBuf, links: PathBuf, tmp: PathBuf) -> Result<Self, SnapshotError> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        fs::create_dir_all(&links).map_err(io(&links))?;
        Ok(SnapshotStore { dir, links, tmp })
    }

    pub fn dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// The unpacked layer root.
    pub fn fs_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir(diff_id).join("fs")
    }

    pub fn has(&self, diff_id: &Digest) -> bool {
        self.dir(diff_id).join("info.json").exists()
    }

    pub fn info(&self, diff_id: &Digest) -> Option<SnapshotInfo> {
        serde_json::from_slice(&fs::read(self.dir(diff_id).join("info.json")).ok()?).ok()
    }

    /// The directory short links live in.
    pub fn links_dir(&self) -> &Path {
        &self.links
    }

    /// The short link name for a snapshot, created if missing.
    pub fn short_link(&self, diff_id: &Digest) -> Result<String, SnapshotError> {
        if !self.has(diff_id) {
            return Err(SnapshotError::Missing(*diff_id));
        }
        let name = diff_id.hex()[..SHORT].to_string();
        let link = self.links.join(&name);
        let target = PathBuf::from("../snapshots").join(diff_id.hex()).join("fs");
        match fs::read_link(&link) {
            Ok(t) if t == target => {}
            _ => {
                let tmp = self.links.join(format!(".{name}.{}", fsutil::rand_u64()));
                std::os::unix::fs::symlink(&target, &tmp).map_err(io(&tmp))?;
                fs::rename(&tmp, &link).map_err(io(&link))?;
            }
        }
        Ok(name)
    }

    /// Start a snapshot in a temp dir.
    pub fn begin(&self) -> Result<PendingSnapshot, SnapshotError> {
        fs::create_dir_all(&self.tmp).map_err(io(&self.tmp))?;
        let dir = self.tmp.join(format!(
            "{}-{:016x}.snap",
            std::process::id(),
            fsutil::rand_u64()
        ));
        let fs_dir = dir.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io(&fs_dir))?;
        Ok(PendingSnapshot { dir, done: false })
    }

    pub fn remove(&self, diff_id: &Digest) -> Result<(), SnapshotError> {
        let link = self.links.join(&diff_id.hex()[..SHORT]);
        let _ = fs::remove_file(&link);
        // Rename first so a half-removed snapshot is never taken for a whole one.
        let dir = self.dir(diff_id);
        let doomed = self.tmp.join(format!(
            "{}-{:016x}.gone",
            std::process::id(),
            fsutil::rand_u64()
        ));
        fs::create_dir_all(&self.tmp).map_err(io(&self.tmp))?;
        match fs::rename(&dir, &doomed) {
            Ok(()) => fsutil::remove_tree(&doomed).map_err(io(&doomed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    pub fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        super::digest::sha256_entries(&self.dir).map_err(io(&self.dir))
    }

    /// Move a finished snapshot into place (or drop it if another process won the race).
    pub fn commit(&self, mut p: PendingSnapshot, info: &SnapshotInfo) -> Result<(), SnapshotError> {
        let fs_dir = p.fs_path();
        // One syncfs for the whole tree instead of an fsync per file.
        let d = fs::File::open(&fs_dir).map_err(io(&fs_dir))?;
        nix::unistd::syncfs(&d).map_err(|e| io(&fs_dir)(e.into()))?;
        let info_path = p.dir.join("info.json");
        let data = serde_json::to_vec(info).map_err(|e| io(&info_path)(e.into()))?;
        fsutil::write_atomic(&info_path, &data).map_err(io(&info_path))?;
        let dest = self.dir(&info.diff_id);
        if self.has(&info.diff_id) {
            return Ok(()); // PendingSnapshot's drop removes ours.
        }
        // A dir without info.json is a leftover of an interrupted remove.
        let _ = fsutil::remove_tree(&dest);
        match fs::rename(&p.dir, &dest) {
            Ok(()) => {
                p.done = true;
                fsutil::sync_dir(&self.dir).map_err(io(&self.dir))
            }
            Err(_) if self.has(&info.diff_id) => Ok(()),
            Err(e) => Err(io(&dest)(e)),
        }
    }
}

/// A snapshot being unpacked; removed on drop unless committed.
pub struct PendingSnapshot {
    dir: PathBuf,
    done: bool,
}

impl PendingSnapshot {
    pub fn fs_path(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for PendingSnapshot {
    fn drop(&mut self) {
        if !self.done {
            let _ = fsutil::remove_tree(&self.dir);
        }
    }
}
