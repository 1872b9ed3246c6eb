//! A directory of manifests, re-read by polling: files named `*.yaml`,
//! `*.yml` or `*.json` (not starting with '.'; subdirectories are not
//! entered, as kubelet's file source), each parsed only when its content
//! hash changed. A file that fails keeps its last good objects and reports
//! the error, so one bad edit does not take anything down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::pod::manifest::{self, Format, Object};

/// A manifest file that cannot be used; the message names the file and,
/// for a decoding error, the document and field.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory or a file cannot be read.
    #[error("read {path}")]
    Read {
        /// File or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not decode.
    #[error("{path}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: manifest::ManifestError,
    },
    /// A pod or object that decodes but is invalid or not allowed here.
    #[error("{path}: {object}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `Pod ns/name` or similar.
        object: String,
        /// The field errors, or why the object is refused.
        reason: String,
    },
}

struct Entry {
    hash: [u8; 32],
    objects: Vec<Object>,
}

/// Polled manifest directory.
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, Entry>,
    /// Content hash of files whose last version failed: reported once.
    failed: BTreeMap<PathBuf, [u8; 32]>,
}

/// Result of one pass over the directory.
pub struct DirScan<'a> {
    /// Whether any file's objects changed (added, edited, removed).
    pub changed: bool,
    /// Current objects per file, in file name order.
    pub files: Vec<(&'a Path, &'a [Object])>,
    /// Files that failed this pass (their last good objects are kept);
    /// each bad content is reported once.
    pub errors: Vec<SourceError>,
}

impl ManifestDir {
    /// Watch `dir` (it may not exist yet: then it holds nothing).
    pub fn new(dir: impl Into<PathBuf>) -> ManifestDir {
        ManifestDir {
            dir: dir.into(),
            files: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Re-read the directory.
    pub fn scan(&mut self) -> DirScan<'_> {
        let mut errors = Vec::new();
        let mut changed = false;
        let mut present = Vec::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let path = e.path();
                    let name = e.file_name();
                    let hidden = name.to_string_lossy().starts_with('.');
                    let is_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
                    if !hidden && is_file && Format::from_path(&path).is_some() {
                        present.push(path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => errors.push(SourceError::Read {
                path: self.dir.clone(),
                source,
            }),
        }
        present.sort();
        let before = self.files.len();
        self.files.retain(|p, _| present.contains(p));
        self.failed.retain(|p, _| present.contains(p));
        changed |= self.files.len() != before;
        for path in &present {
            let text = match std::fs::read(path) {
                Ok(t) => t,
                // Removed between listing and reading: gone next pass.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    errors.push(SourceError::Read {
                        path: path.clone(),
                        source,
                    });
                    continue;
                }
            };
            let hash: [u8; 32] = Sha256::digest(&text).into();
            let known = self.files.get(path).is_some_and(|e| e.hash == hash);
            if known || self.failed.get(path) == Some(&hash) {
                continue;
            }
            let format = Format::from_path(path).unwrap_or(Format::Yaml);
            let parsed = std::str::from_utf8(&text)
                .map_err(|e| manifest::ManifestError::Syntax {
                    doc: 1,
                    cause: e.to_string(),
                })
                .and_then(|t| manifest::parse(t, format));
            match parsed {
                Ok(objects) => {
                    self.failed.remove(path);
                    self.files.insert(path.clone(), Entry { hash, objects });
                    changed = true;
                }
                Err(source) => {
                    self.failed.insert(path.clone(), hash);
                    errors.push(SourceError::Manifest {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        let files = self
            .files
            .iter()
            .map(|(p, e)| (p.as_path(), e.objects.as_slice()))
            .collect();
        DirScan {
            changed,
            files,
            errors,
        }
    }
}
