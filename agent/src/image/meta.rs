//! Image metadata: one JSON document (`<root>/images.json`) holding every
//! image record, rewritten atomically under an exclusive lock.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("image metadata {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("image metadata {path}: corrupt JSON: {cause}")]
    Corrupt {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

/// A layer of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar: the snapshot key.
    pub diff_id: Digest,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// What the store knows about an image. Its id is the config digest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: Digest,
    /// Tags, fully qualified: `docker.io/library/busybox:latest`.
    pub names: Vec<String>,
    /// `registry/repo@sha256:...` of the manifest (or index) pulled.
    #[serde(rename = "repoDigests")]
    pub repo_digests: Vec<String>,
    pub manifest: Digest,
    /// The index (manifest list) the manifest was chosen from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    pub config: Digest,
    pub layers: Vec<LayerRecord>,
    /// Bytes of content: config plus compressed layers.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When the store got it (RFC 3339).
    pub added: String,
}

impl ImageRecord {
    /// Every blob this image keeps alive.
    pub fn blobs(&self) -> impl Iterator<Item = Digest> + '_ {
        [self.manifest, self.config]
            .into_iter()
            .chain(self.index)
            .chain(self.layers.iter().map(|l| l.digest))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ImageIndex {
    pub images: Vec<ImageRecord>,
}

impl ImageIndex {
    pub fn load(path: &Path) -> Result<Self, MetaError> {
        match fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|cause| MetaError::Corrupt {
                path: path.to_path_buf(),
                cause,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageIndex::default()),
            Err(cause) => Err(MetaError::Io {
                path: path.to_path_buf(),
                cause,
            }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), MetaError> {
        let data = serde_json::to_vec_pretty(self).map_err(|cause| MetaError::Corrupt {
            path: path.to_path_buf(),
            cause,
        })?;
        fsutil::write_atomic(path, &data).map_err(|cause| MetaError::Io {
            path: path.to_path_buf(),
            cause,
        })
    }

    /// Add or merge an image; its names move away from any other image.
    pub fn upsert(&mut self, mut rec: ImageRecord) -> ImageRecord {
        let repo_of_tag = |n: &str| {
            let slash = n.rfind('/').unwrap_or(0);
            n[slash..]
                .rfind(':')
                .map(|i| n[..slash + i].to_string())
                .unwrap_or_else(|| n.to_string())
        };
        let moved_repos: Vec<String> = rec.names.iter().map(|n| repo_of_tag(n)).collect();
        for other in self.images.iter_mut().filter(|i| i.id != rec.id) {
            let before = other.names.len();
            other.names.retain(|n| !rec.names.contains(n));
            // An image that lost its last tag to another image is gone (as in
            // containerd); its content becomes garbage for prune.
            if before > 0 && other.names.is_empty() {
                other.repo_digests.retain(|d| {
                    !moved_repos
                        .iter()
                        .any(|r| d.split('@').next() == Some(r.as_str()))
                });
            }
        }
        self.images
            .retain(|i| i.id == rec.id || !i.names.is_empty() || !i.repo_digests.is_empty());
        if let Some(existing) = self.images.iter_mut().find(|i| i.id == rec.id) {
            for n in existing.names.drain(..) {
                if !rec.names.contains(&n) {
                    rec.names.push(n);
                }
            }
            for d in existing.repo_digests.drain(..) {
                if !rec.repo_digests.contains(&d) {
                    rec.repo_digests.push(d);
                }
            }
            rec.added = existing.added.clone();
            *existing = rec.clone();
        } else {
            self.images.push(rec.clone());
        }
        rec
    }
}
