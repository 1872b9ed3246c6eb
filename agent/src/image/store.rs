//! `ImageStore`: the facade over blobs, snapshots and image metadata.
//!
//! Layout under the root (default `/var/lib/husk`):
//! ```text
//! content/sha256/<hex>       blobs (manifests, configs, layers)
//! snapshots/<diff_id>/fs     unpacked layers, shared by every image
//! l/<short>                  short symlinks to snapshots (overlay options)
//! images.json                image records (atomic rewrite)
//! containers/<id>/           rootfs overlays: upper, work, rootfs, rootfs.json
//! tmp/<pid>-<rand>.*         writes in progress (removed when their pid is dead)
//! gc.lock, meta.lock         flocks: gc (shared by writers, exclusive by prune), metadata
//! ```

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};

use super::content::{ContentError, ContentStore};
use super::digest::Digest;
use super::manifest::{ImageConfigBlob, ManifestError, RunConfig};
use super::meta::{ImageIndex, ImageRecord, MetaError};
use super::reference::{Reference, ReferenceError};
use super::registry::{RegistryConfig, RegistryError};
use super::snapshot::{SnapshotError, SnapshotStore};
use super::space::{LimitError, Limits, Reserve};
use super::unpack::UnpackError;

/// Every way an image operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("layer {layer}: {cause}")]
    Unpack { layer: Digest, cause: UnpackError },
    /// A pull or import stopped at a limit (nothing of the layer is kept).
    #[error(
        "image {image}: layer {layer}{}",
        entry.as_ref().map(|e| format!(", entry {e:?}")).unwrap_or_default()
    )]
    Limit {
        image: String,
        layer: Digest,
        entry: Option<String>,
        #[source]
        source: Box<LimitError>,
    },
    #[error(transparent)]
    Space(LimitError),
    #[error(
        "layer {layer}: uncompressed content has digest {actual}, but the image config says {expected}"
    )]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {layer}: {message}")]
    Layer { layer: Digest, message: String },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("image {0:?} is ambiguous: it matches several image ids")]
    Ambiguous(String),
    #[error("image {image}: in use by container(s) {containers}")]
    InUse { image: String, containers: String },
    #[error(
        "container id {0:?}: must be 1-128 characters of [A-Za-z0-9_.-], not starting with . or -"
    )]
    ContainerId(String),
    #[error("container {0}: a rootfs already exists")]
    RootfsExists(String),
    #[error("container {0}: no rootfs")]
    NoRootfs(String),
    #[error("container {id}: mount overlay at {target}: {errno}")]
    Mount {
        id: String,
        target: PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("archive {path}: {message}")]
    Archive { path: PathBuf, message: String },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("pull of {reference}: {message}")]
    Pull { reference: String, message: String },
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ImageError + '_ {
    move |cause| ImageError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The image store rooted at one directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: SnapshotStore,
    pub(crate) registry: RegistryConfig,
    pub(crate) tmp: PathBuf,
    pub(crate) limits: Limits,
    /// The free-space reserve every writer of this store is held to.
    pub(crate) reserve: Arc<Reserve>,
}

/// The image config fields a container needs, plus identity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageDetails {
    #[serde(flatten)]
    pub record: ImageRecord,
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
    #[serde(rename = "diffIds")]
    pub diff_ids: Vec<Digest>,
}

/// What `fs_usage` reports (CRI ImageFsInfo).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct FsUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
    #[serde(rename = "reclaimedBytes")]
    pub reclaimed_bytes: u64,
}

impl ImageStore {
    /// Open (creating) a store with the default limits; removes leftovers
    /// of writers that died.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        Self::open_with_limits(root, Limits::default())
    }

    /// Open (creating) a store held to `limits`. A relative `root` is made
    /// absolute here, once: overlay mounts and short links need it so.
    pub fn open_with_limits(root: impl Into<PathBuf>, limits: Limits) -> Result<Self, ImageError> {
        let root: PathBuf = root.into();
        let root = std::path::absolute(&root).map_err(io_err(&root))?;
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let reserve = Arc::new(Reserve::open(&root, limits.min_free).map_err(ImageError::Space)?);
        let content = ContentStore::open(root.join("content/sha256"), tmp.clone())?
            .with_reserve(reserve.clone());
        let snapshots = SnapshotStore::open(root.join("snapshots"), root.join("l"), tmp.clone())?;
        let store = ImageStore {
            root,
            content,
            snapshots,
            registry: RegistryConfig::default(),
            tmp,
            limits,
            reserve,
        };
        store.clean_tmp();
        Ok(store)
    }

    /// Use these registry settings (hosts.toml dir, docker config).
    pub fn with_registry_config(mut self, cfg: RegistryConfig) -> Self {
        self.registry = cfg;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The free-space reserve in bytes (0: off).
    pub fn min_free_bytes(&self) -> u64 {
        self.reserve.min_free()
    }

    /// Remove temp entries of processes that no longer exist.
    fn clean_tmp(&self) {
        let Ok(rd) = fs::read_dir(&self.tmp) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let dead = match pid {
                Some(pid) => {
                    pid != std::process::id() as i32
                        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                            == Err(nix::errno::Errno::ESRCH)
                }
                None => true,
            };
            if dead {
                tracing::info!(path = %e.path().display(), "removing leftover of an interrupted write");
                let _ = super::fsutil::remove_tree(&e.path());
            }
        }
    }

    pub(crate) fn lock(&self, name: &str, exclusive: bool) -> Result<Flock<File>, ImageError> {
        let p = self.root.join(name);
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        Flock::lock(f, arg).map_err(|(_, e)| ImageError::Io {
            path: p,
            cause: e.into(),
        })
    }

    fn meta_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// Every image record.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(ImageIndex::load(&self.meta_path())?.images)
    }

    /// Record an image (merging names with an existing record of the same id).
    pub(crate) fn commit_image(&self, rec: ImageRecord) -> Result<ImageRecord, ImageError> {
        let _l = self.lock("meta.lock", true)?;
        let mut idx = ImageIndex::load(&self.meta_path())?;
        let out = idx.upsert(rec);
        idx.save(&self.meta_path())?;
        Ok(out)
    }

    /// Find an image by full or short id, tag, or repo digest.
    pub fn resolve(&self, what: &str) -> Result<ImageRecord, ImageError> {
        let images = self.list()?;
        find(&images, what)
    }

    /// `resolve`, with `None` when no image matches (CRI ImageStatus).
    pub fn status(&self, what: &str) -> Result<Option<ImageRecord>, ImageError> {
        match self.resolve(what) {
            Ok(r) => Ok(Some(r)),
            Err(ImageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An image with its config (Entrypoint, Cmd, Env, ...).
    pub fn inspect(&self, what: &str) -> Result<ImageDetails, ImageError> {
        let record = self.resolve(what)?;
        let cfg = self.config_of(&record)?;
        Ok(ImageDetails {
            architecture: cfg.architecture,
            os: cfg.os,
            config: cfg.config.unwrap_or_default(),
            diff_ids: cfg.rootfs.diff_ids,
            record,
        })
    }

    pub(crate) fn config_of(&self, record: &ImageRecord) -> Result<ImageConfigBlob, ImageError> {
        let data = self.content.read(&record.config)?;
        Ok(ImageConfigBlob::parse(
            &format!("image {} config", record.id),
            &data,
        )?)
    }

    /// Remove an image: a tag removes that name (and the image with its last
    /// name), an id or repo digest removes the image. Frees its blobs and
    /// snapshots that no other image uses.
    pub fn remove(&self, what: &str) -> Result<ImageRecord, ImageError> {
        self.remove_unless_used(what, &|_| Vec::new())
    }

    /// [`ImageStore::remove`], with `users` naming containers outside the
    /// store's rootfs records that hold an image (by id).
    pub fn remove_unless_used(
        &self,
        what: &str,
        users_of: &dyn Fn(&Digest) -> Vec<String>,
    ) -> Result<ImageRecord, ImageError> {
        let removed = {
            let _l = self.lock("meta.lock", true)?;
            let mut idx = ImageIndex::load(&self.meta_path())?;
            let rec = find(&idx.images, what)?;
            let by_tag = what
                .parse::<Reference>()
                .ok()
                .and_then(|r| r.tagged_name())
                .filter(|n| rec.names.contains(n) && r_has_no_digest(what));
            let pos = idx
                .images
                .iter()
                .position(|i| i.id == rec.id)
                .expect("found above");
            let drop_all = match &by_tag {
                Some(name) => {
                    idx.images[pos].names.retain(|n| n != name);
                    idx.images[pos].names.is_empty()
                }
                None => true,
            };
            if drop_all {
                let mut users = self.containers_using(&rec.id);
                users.extend(users_of(&rec.id));
                if !users.is_empty() {
                    return Err(ImageError::InUse {
                        image: what.to_string(),
                        containers: users.join(", "),
                    });
                }
                idx.images.remove(pos);
            }
            idx.save(&self.meta_path())?;
            rec
        };
        self.collect(false)?;
        Ok(removed)
    }

    /// Remove every blob and snapshot no image or container refers to, and
    /// leftovers of interrupted writes.
    pub fn prune(&self) -> Result<PruneReport, ImageError> {
        self.collect(true)
    }

    fn collect(&self, clean_tmp: bool) -> Result<PruneReport, ImageError> {
        let _gc = self.lock("gc.lock", true)?;
        if clean_tmp {
            self.clean_tmp();
        }
        let images = self.list()?;
        let mut blobs = std::collections::HashSet::new();
        let mut snaps = std::collections::HashSet::new();
        for img in &images {
            blobs.extend(img.blobs());
            snaps.extend(img.layers.iter().map(|l| l.diff_id));
        }
        for c in self.container_records() {
            snaps.extend(c.layers);
        }
        let mut report = PruneReport::default();
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                report.reclaimed_bytes += self.content.size(&d).unwrap_or(0);
                self.content.remove(&d)?;
                report.blobs.push(d);
            }
        }
        for d in self.snapshots.list()? {
            if !snaps.contains(&d) {
                report.reclaimed_bytes += super::fsutil::usage(&self.snapshots.dir(&d)).0;
                self.snapshots.remove(&d)?;
                report.snapshots.push(d);
            }
        }
        // Short links whose snapshot is gone.
        if let Ok(rd) = fs::read_dir(self.snapshots.links_dir()) {
            for e in rd.flatten() {
                if fs::metadata(e.path()).is_err() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(report)
    }

    /// Bytes and inodes used by blobs and snapshots.
    pub fn fs_usage(&self) -> FsUsage {
        let (b1, i1) = super::fsutil::usage(&self.root.join("content"));
        let (b2, i2) = super::fsutil::usage(&self.root.join("snapshots"));
        FsUsage {
            bytes: b1 + b2,
            inodes: i1 + i2,
        }
    }

    /// Where image data lives (CRI ImageFsInfo mountpoint).
    pub fn fs_mountpoint(&self) -> PathBuf {
        self.root.clone()
    }
}

fn r_has_no_digest(what: &str) -> bool {
    !what.contains('@')
}

/// Match `what` against records: full id (with or without `sha256:`), tag,
/// repo digest, or a unique id prefix of at least 6 hex characters.
pub(crate) fn find(images: &[ImageRecord], what: &str) -> Result<ImageRecord, ImageError> {
    let hexish = |s: &str| {
        s.len() >= 6
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if let Ok(d) = what.parse::<Digest>()
        && let Some(i) = images.iter().find(|i| i.id == d)
    {
        return Ok(i.clone());
    }
    if what.len() == 64
        && hexish(what)
        && let Some(i) = images.iter().find(|i| i.id.hex() == what)
    {
        return Ok(i.clone());
    }
    if let Ok(r) = what.parse::<Reference>() {
        if let Some(d) = &r.digest {
            let name = r.digested_name(d);
            if let Some(i) = images.iter().find(|i| i.repo_digests.contains(&name)) {
                return Ok(i.clone());
            }
        } else if let Some(t) = r.tagged_name()
            && let Some(i) = images.iter().find(|i| i.names.contains(&t))
        {
            return Ok(i.clone());
        }
    }
    let prefix = what.strip_prefix("sha256:").unwrap_or(what);
    if hexish(prefix) {
        let m: Vec<_> = images
            .iter()
            .filter(|i| i.id.hex().starts_with(prefix))
            .collect();
        match m.len() {
            1 => return Ok(m[0].clone()),
            0 => {}
            _ => return Err(ImageError::Ambiguous(what.to_string())),
        }
    }
    if let Err(e) = what.parse::<Reference>()
        && !hexish(prefix)
        && what.parse::<Digest>().is_err()
    {
        return Err(e.into());
    }
    Err(ImageError::NotFound(what.to_string()))
}
