//! kubelet's atomic writer (`pkg/volume/util/atomic_writer.go`): a
//! volume's files live in a timestamped dir `..2006_01_02_15_04_05.<rand>`;
//! `..data` is a symlink to it, swapped by rename, and every top-level
//! entry the user sees is a symlink through `..data`. Readers never see a
//! half-written set.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

use super::VolumeError;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a volume's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Content.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// A payload: relative path → file.
pub type Payload = BTreeMap<String, File>;

fn check_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.starts_with("..") {
        return Err(format!("{p:?}: must not start with '..'"));
    }
    for c in Path::new(p).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err(format!("{p:?}: must be relative and not contain '..'")),
        }
    }
    Ok(())
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> VolumeError {
    move |source| VolumeError::Io { what, source }
}

/// Whether the current `..data` dir holds exactly `payload`.
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA);
    payload.iter().all(|(p, f)| {
        let path = data.join(p);
        let mode_ok =
            std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode);
        mode_ok && std::fs::read(&path).is_ok_and(|d| d == f.data)
    }) && count_files(&data) == payload.len()
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return usize::MAX;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

/// Write `payload` into `dir` atomically. Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, VolumeError> {
    for p in payload.keys() {
        check_path(p).map_err(|reason| VolumeError::Payload {
            path: p.clone(),
            reason,
        })?;
    }
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let old_ts = std::fs::read_link(dir.join(DATA)).ok();
    if old_ts.is_some() && unchanged(dir, payload) {
        return Ok(false);
    }
    let ts = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S%.9f");
    let suffix = &crate::cri::record::new_id()[..8];
    let ts_name = format!("..{ts}{suffix}");
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir).map_err(io(format!("create {}", ts_dir.display())))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("chmod {}", ts_dir.display())))?;
    for (p, f) in payload {
        let path = ts_dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
        }
        let mut file =
            std::fs::File::create(&path).map_err(io(format!("write {}", path.display())))?;
        file.write_all(&f.data)
            .map_err(io(format!("write {}", path.display())))?;
        file.set_permissions(std::fs::Permissions::from_mode(f.mode))
            .map_err(io(format!("chmod {}", path.display())))?;
        file.sync_all()
            .map_err(io(format!("sync {}", path.display())))?;
    }
    // User-visible names: one symlink per top-level entry, through ..data.
    let top: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| {
            p.split('/')
                .find(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
        })
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)
                .map_err(io(format!("symlink {}", link.display())))?;
        }
    }
    // The swap: a new symlink renamed over ..data.
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts_name, &tmp).map_err(io(format!("symlink {}", tmp.display())))?;
    std::fs::rename(&tmp, dir.join(DATA))
        .map_err(io(format!("rename {} to {DATA}", tmp.display())))?;
    // Clean up: stale user-visible links and the old data dir.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !top.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old_ts {
        let old = dir.join(old);
        if old != ts_dir {
            std::fs::remove_dir_all(&old).map_err(io(format!("remove {}", old.display())))?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str, mode: u32) -> File {
        File {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn swap_update_and_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let mut p = Payload::new();
        p.insert("a.conf".into(), file("one", 0o644));
        p.insert("sub/b".into(), file("two", 0o400));
        assert!(write(&dir, &p).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a.conf")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "two");
        assert_eq!(
            std::fs::read_link(dir.join("a.conf")).unwrap(),
            Path::new("..data/a.conf")
        );
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o400);
        let first = std::fs::read_link(dir.join(DATA)).unwrap();
        assert!(first.to_string_lossy().starts_with(".."), "{first:?}");
        assert!(!write(&dir, &p).unwrap(), "same payload: nothing changes");
        assert_eq!(std::fs::read_link(dir.join(DATA)).unwrap(), first);
        // An update: new data dir, old one gone, removed key's link gone.
        p.remove("sub/b");
        p.insert("a.conf".into(), file("three", 0o644));
        assert!(write(&dir, &p).unwrap());
        let second = std::fs::read_link(dir.join(DATA)).unwrap();
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists(), "old timestamped dir removed");
        assert_eq!(
            std::fs::read_to_string(dir.join("a.conf")).unwrap(),
            "three"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("sub")).is_err(),
            "stale link removed"
        );
        // A mode change alone is an update too.
        p.insert("a.conf".into(), file("three", 0o600));
        assert!(write(&dir, &p).unwrap());
    }

    #[test]
    fn escaping_paths_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", "..data", ""] {
            let mut p = Payload::new();
            p.insert(bad.into(), file("x", 0o644));
            assert!(
                matches!(
                    write(&tmp.path().join("v"), &p),
                    Err(VolumeError::Payload { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(
            !tmp.path().join("v").exists(),
            "nothing written for a bad payload"
        );
    }
}
