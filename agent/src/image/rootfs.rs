//! Container root filesystems: an overlay mount of an image's snapshots
//! (read-only lower dirs) with the container's own upper and work dirs under
//! `<root>/containers/<id>/`.
//!
//! Lower dirs are named by short symlinks in `<root>/l` and the mount is made
//! from a thread that has its own cwd there (`unshare(CLONE_FS)`), so the
//! options stay far below the page-size limit even for ~300 layers.

use std::fs;
use std::path::PathBuf;

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::fsutil;
use super::store::{ImageError, ImageStore, io_err};

/// A prepared (mounted) container rootfs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsMount {
    #[serde(rename = "containerId")]
    pub container_id: String,
    pub image: Digest,
    /// Where the overlay is mounted: the bundle's `root.path`.
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Snapshot diff_ids, top layer first.
    pub layers: Vec<Digest>,
    /// The equivalent `mount -t overlay overlay -o <options> <rootfs>` options.
    pub options: String,
}

/// The part of a rootfs record that keeps snapshots alive.
#[derive(Debug, Deserialize)]
pub(crate) struct ContainerRef {
    pub image: Digest,
    pub layers: Vec<Digest>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Unmount a container's rootfs (lazily); not mounted is fine.
fn unmount(id: &str, rootfs: &std::path::Path) -> Result<(), ImageError> {
    match nix::mount::umount2(rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(errno) => Err(ImageError::Mount {
            id: id.to_string(),
            target: rootfs.to_path_buf(),
            errno,
        }),
    }
}

impl ImageStore {
    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub(crate) fn container_records(&self) -> Vec<ContainerRef> {
        let Ok(rd) = fs::read_dir(self.root.join("containers")) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| {
                serde_json::from_slice(&fs::read(e.path().join("rootfs.json")).ok()?).ok()
            })
            .collect()
    }

    pub(crate) fn containers_using(&self, image: &Digest) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.root.join("containers")) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| {
                let r: ContainerRef =
                    serde_json::from_slice(&fs::read(e.path().join("rootfs.json")).ok()?).ok()?;
                (r.image == *image).then(|| e.file_name().to_string_lossy().into_owned())
            })
            .collect()
    }

    /// Mount a fresh overlay rootfs for `container_id` from `image`.
    pub fn prepare_rootfs(
        &self,
        image: &str,
        container_id: &str,
    ) -> Result<RootfsMount, ImageError> {
        if !valid_id(container_id) {
            return Err(ImageError::ContainerId(container_id.to_string()));
        }
        let _gc = self.lock("gc.lock", false)?;
        let rec = self.resolve(image)?;
        // Only layers unpacked again count here: the image passed the limit
        // when it was pulled, and a lowered limit must not stop its containers.
        let budget = self.budget(image);
        for l in &rec.layers {
            if !self.snapshots.has(&l.diff_id) {
                self.unpack_stored_layer(l, &budget)?;
            }
        }
        let dir = self.container_dir(container_id);
        fs::create_dir_all(self.root.join("containers")).map_err(io_err(&dir))?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ImageError::RootfsExists(container_id.to_string()));
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        let res = self.mount_rootfs(
            &rec.id,
            rec.layers.iter().rev().map(|l| l.diff_id).collect(),
            container_id,
            &dir,
        );
        if res.is_err() {
            let _ = fsutil::remove_tree(&dir);
        }
        res
    }

    fn mount_rootfs(
        &self,
        image: &Digest,
        layers: Vec<Digest>,
        id: &str,
        dir: &std::path::Path,
    ) -> Result<RootfsMount, ImageError> {
        let upper = dir.join("upper");
        let work = dir.join("work");
        let rootfs = dir.join("rootfs");
        for d in [&upper, &work, &rootfs] {
            fs::create_dir(d).map_err(io_err(d))?;
        }
        let shorts = layers
            .iter()
            .map(|l| self.snapshots.short_link(l))
            .collect::<Result<Vec<_>, _>>()?;
        let m = RootfsMount {
            container_id: id.to_string(),
            image: *image,
            rootfs: rootfs.clone(),
            upper: upper.clone(),
            work: work.clone(),
            options: format!(
                "lowerdir={},upperdir={},workdir={}",
                layers
                    .iter()
                    .map(|l| self.snapshots.fs_path(l).display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
                upper.display(),
                work.display()
            ),
            layers,
        };
        // The record first: from now on prune keeps the snapshots.
        let rec_path = dir.join("rootfs.json");
        let data = serde_json::to_vec_pretty(&m).map_err(|e| io_err(&rec_path)(e.into()))?;
        fsutil::write_atomic(&rec_path, &data).map_err(io_err(&rec_path))?;

        let short_opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            shorts.join(":"),
            upper.display(),
            work.display()
        );
        let links = self.snapshots.links_dir().to_path_buf();
        let target = rootfs.clone();
        let res = std::thread::spawn(move || -> nix::Result<()> {
            // Own cwd for this thread only, so the relative lower dirs resolve in links/.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(&links)?;
            nix::mount::mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::empty(),
                Some(short_opts.as_str()),
            )
        })
        .join()
        .unwrap_or(Err(nix::errno::Errno::EIO));
        res.map_err(|errno| ImageError::Mount {
            id: id.to_string(),
            target: rootfs.clone(),
            errno,
        })?;
        Ok(m)
    }

    /// The rootfs record of a container.
    pub fn rootfs(&self, container_id: &str) -> Result<RootfsMount, ImageError> {
        if !valid_id(container_id) {
            return Err(ImageError::ContainerId(container_id.to_string()));
        }
        let p = self.container_dir(container_id).join("rootfs.json");
        let data = fs::read(&p).map_err(|_| ImageError::NoRootfs(container_id.to_string()))?;
        serde_json::from_slice(&data).map_err(|e| io_err(&p)(e.into()))
    }

    /// Where a container's rootfs is mounted by [`ImageStore::prepare_rootfs`].
    pub fn rootfs_path(&self, container_id: &str) -> PathBuf {
        self.container_dir(container_id).join("rootfs")
    }

    /// A container's rootfs dir, its overlay unmounted (for removal).
    fn unmounted_dir(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        if !valid_id(container_id) {
            return Err(ImageError::ContainerId(container_id.to_string()));
        }
        let dir = self.container_dir(container_id);
        if !dir.exists() {
            return Err(ImageError::NoRootfs(container_id.to_string()));
        }
        unmount(container_id, &dir.join("rootfs"))?;
        Ok(dir)
    }

    /// Take a container's rootfs out of the store at the cost of an unmount
    /// and a rename: its dir moves into `trash/`, which
    /// [`ImageStore::empty_trash`] deletes later (RemoveContainer does not
    /// wait for the upper dir's files to be unlinked). The snapshots are
    /// free to be pruned from the rename on.
    pub fn discard_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        let dir = self.unmounted_dir(container_id)?;
        let trash = self.root.join("trash");
        fs::create_dir_all(&trash).map_err(io_err(&trash))?;
        let to = trash.join(format!("{container_id}.{:x}", fsutil::rand_u64()));
        fs::rename(&dir, &to).map_err(io_err(&dir))
    }

    /// Delete what [`ImageStore::discard_rootfs`] moved aside (and what a
    /// crash left there). Safe to run at any time; one run at a time.
    pub fn empty_trash(&self) {
        static RUNNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let Ok(_one) = RUNNING.lock() else { return };
        let trash = self.root.join("trash");
        let Ok(rd) = fs::read_dir(&trash) else { return };
        for e in rd.flatten() {
            let p = e.path();
            // Never follow a mount left inside: unmount it first.
            let _ = nix::mount::umount2(&p.join("rootfs"), MntFlags::MNT_DETACH);
            if let Err(err) = fsutil::remove_tree(&p) {
                tracing::warn!(path = %p.display(), error = %err, "empty the rootfs trash");
            }
        }
    }

    /// Unmount and delete a container's rootfs (upper and work dirs included).
    pub fn remove_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        let dir = self.unmounted_dir(container_id)?;
        // Delete the record last so a crash midway leaves a removable container.
        for sub in ["upper", "work", "rootfs"] {
            let p = dir.join(sub);
            fsutil::remove_tree(&p).map_err(io_err(&p))?;
        }
        fsutil::remove_tree(&dir).map_err(io_err(&dir))
    }
}
