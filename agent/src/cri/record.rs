//! Records on disk: one JSON file per object, written atomically (temp,
//! fsync, rename), read back when husklet starts.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::CriError;
use crate::image::fsutil::write_atomic;

/// Write `value` as `<dir>/<id>.json`.
pub fn save<T: Serialize>(dir: &Path, id: &str, value: &T) -> Result<(), CriError> {
    let path = record_path(dir, id);
    std::fs::create_dir_all(dir).map_err(CriError::io("create the record dir", dir))?;
    let data = serde_json::to_vec(value)
        .map_err(|e| CriError::internal(format!("encode record {id}"), e))?;
    write_atomic(&path, &data).map_err(CriError::io(format!("write record {id}"), &path))
}

/// Remove `<dir>/<id>.json` (gone already is fine).
pub fn remove(dir: &Path, id: &str) -> Result<(), CriError> {
    let path = record_path(dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CriError::io(format!("remove record {id}"), &path)(e)),
    }
}

/// Every record in `dir`; unreadable ones are logged and skipped (a
/// half-written temp file is never named `*.json`).
pub fn load_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&p).map(|b| serde_json::from_slice::<T>(&b)) {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(err)) => {
                tracing::warn!(path = %p.display(), error = %err, "skipping a corrupt record")
            }
            Err(err) => {
                tracing::warn!(path = %p.display(), error = %err, "skipping an unreadable record")
            }
        }
    }
    out
}

/// Remove the temp files of writes a crash cut short (`.<id>.json.tmp-…`,
/// see `write_atomic`). Only at start, when no write of ours is running.
pub fn sweep_temp(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".json.tmp-") {
            tracing::info!(path = %e.path().display(), "removing the temp file of a cut-short write");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// A new random 64-hex-digit id (as containerd's).
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    if !ok {
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&crate::image::fsutil::rand_u64().to_le_bytes());
        }
    }
    hex::encode(b)
}

/// Nanoseconds since the epoch (CRI timestamps).
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip_and_temp_files_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        save(d.path(), "a", &vec![1, 2]).unwrap();
        std::fs::write(d.path().join(".a.json.tmp-1-2"), "garbage").unwrap();
        std::fs::write(d.path().join("b.json"), "{not json").unwrap();
        let all: Vec<Vec<i32>> = load_all(d.path());
        assert_eq!(all, vec![vec![1, 2]]);
        sweep_temp(d.path());
        assert!(!d.path().join(".a.json.tmp-1-2").exists());
        assert!(d.path().join("b.json").exists());
        remove(d.path(), "a").unwrap();
        remove(d.path(), "a").unwrap();
        assert!(load_all::<Vec<i32>>(d.path()).is_empty());
        assert_eq!(new_id().len(), 64);
    }
}
