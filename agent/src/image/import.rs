//! Import images from an OCI image layout (a directory or a tar of one) or a
//! docker-archive tar (`docker save`). Every blob is verified against its
//! digest; layers are unpacked concurrently. A layout directory's files are
//! opened without following any symlink (see [`LayoutDir`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use serde::Deserialize;

use super::digest::{Digest, HashingReader};
use super::manifest::{self, Compression, Descriptor, ImageConfigBlob, Manifest, ManifestDoc};
use super::meta::{ImageRecord, LayerRecord};
use super::reference::Reference;
use super::space::{ImageBudget, limit_in};
use super::store::{ImageError, ImageStore, io_err};

/// Members this small are kept in memory while reading a tar.
const SMALL: u64 = 4 << 20;

/// An image layout directory. Every file in it (index.json and oci-layout
/// included) is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
/// and `O_NOFOLLOW` from the directory: a symlink anywhere on the path, say
/// a blob linking to /etc/shadow whose digest is known, is refused instead
/// of copied into the content store, and so is anything but a regular file.
struct LayoutDir {
    fd: OwnedFd,
}

impl LayoutDir {
    fn open(path: &Path) -> Result<Self, ImageError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(path)(e.into()))?;
        Ok(LayoutDir { fd })
    }

    /// Whether the top-level entry `name` exists (a symlink counts: reading
    /// it is refused with a clear error).
    fn has(&self, name: &str) -> bool {
        nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// Open the regular file `rel` (normalised) of the layout; the error is
    /// a message naming `rel`.
    fn open_file(&self, rel: &str) -> Result<File, String> {
        let how = OpenHow::new()
            .flags(
                OFlag::O_RDONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_NOCTTY
                    | OFlag::O_CLOEXEC,
            )
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        let f = match openat2(&self.fd, rel, how) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => return Err(format!("{rel}: missing")),
            Err(Errno::ELOOP) => {
                return Err(format!(
                    "{rel}: is a symlink or lies under one; refused (the files of an image layout must be regular files inside it)"
                ));
            }
            Err(Errno::EXDEV) => return Err(format!("{rel}: lies outside the layout; refused")),
            Err(e) => return Err(format!("{rel}: {e}")),
        };
        match f.metadata() {
            Ok(m) if m.is_file() => Ok(f),
            Ok(_) => Err(format!("{rel}: not a regular file; refused")),
            Err(e) => Err(format!("{rel}: {e}")),
        }
    }
}

/// Where an archive's files are: a directory, or a tar read once.
enum Source {
    Dir(LayoutDir),
    Tar {
        /// Small members by normalised path.
        small: HashMap<String, Vec<u8>>,
        /// Large members (already in the content store) by path.
        stored: HashMap<String, Digest>,
        /// Symlink members: path -> normalised target.
        links: HashMap<String, String>,
    },
}

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn norm(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

impl ImageStore {
    /// Import every image in the archive or layout at `path`. `name`
    /// overrides the image name (only for a single-image archive).
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let arch_err = |message: String| ImageError::Archive {
            path: path.to_path_buf(),
            message,
        };
        let name_override = name.map(|n| n.parse::<Reference>()).transpose()?;
        let _gc = self.lock("gc.lock", false)?;
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let mut added = Vec::new();
        let src = if meta.is_dir() {
            Source::Dir(LayoutDir::open(path)?)
        } else {
            self.read_tar(path, &mut added).map_err(|e| match e {
                ImageError::Io { cause, .. } => {
                    arch_err(format!("not a readable tar archive: {cause}"))
                }
                other => other,
            })?
        };
        let stem = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem
            .trim_end_matches(".tar")
            .trim_end_matches(".docker")
            .trim_end_matches(".oci")
            .to_string();
        let res = if src.has("index.json") && (src.has("oci-layout") || !src.has("manifest.json")) {
            self.import_oci(path, &src, &stem, name_override)
        } else if src.has("manifest.json") {
            self.import_docker(path, &src, name_override)
        } else {
            Err(arch_err("neither an OCI image layout (index.json, oci-layout) nor a docker archive (manifest.json)".into()))
        };
        // Large members nothing referenced (or everything, on failure).
        let keep: std::collections::HashSet<Digest> = match &res {
            Ok(recs) => recs
                .iter()
                .flat_map(|r| r.blobs().collect::<Vec<_>>())
                .collect(),
            Err(_) => Default::default(),
        };
        for d in added.iter().filter(|d| !keep.contains(d)) {
            let _ = self.content.remove(d);
        }
        res
    }

    fn read_tar(&self, path: &Path, added: &mut Vec<Digest>) -> Result<Source, ImageError> {
        let arch_err = |message: String| ImageError::Archive {
            path: path.to_path_buf(),
            message,
        };
        let f = File::open(path).map_err(io_err(path))?;
        let mut a = tar::Archive::new(std::io::BufReader::with_capacity(256 << 10, f));
        let (mut small, mut stored, mut links) = (HashMap::new(), HashMap::new(), HashMap::new());
        let entries = a
            .entries()
            .map_err(|e| arch_err(format!("not a tar archive: {e}")))?;
        for e in entries {
            let mut e = e.map_err(|e| {
                arch_err(format!(
                    "not a valid tar archive: {}",
                    printable(&e.to_string())
                ))
            })?;
            let p = norm(&String::from_utf8_lossy(&e.path_bytes()));
            match e.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = e.link_name_bytes() {
                        let t = String::from_utf8_lossy(&t).into_owned();
                        let target = if e.header().entry_type() == tar::EntryType::Symlink {
                            let parent = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                            norm(&format!("{parent}/{t}"))
                        } else {
                            norm(&t)
                        };
                        links.insert(p, target);
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if e.size() <= SMALL {
                        let mut buf = Vec::with_capacity(e.size() as usize);
                        e.read_to_end(&mut buf)
                            .map_err(|err| arch_err(format!("{p}: corrupt tar: {err}")))?;
                        small.insert(p, buf);
                    } else {
                        let mut w = self.content.writer()?;
                        let mut h = HashingReader::new(&mut e);
                        std::io::copy(&mut h, &mut w).map_err(|err| match limit_in(&err) {
                            Some(l) => ImageError::Space(l),
                            None => arch_err(format!("{p}: corrupt tar: {err}")),
                        })?;
                        let (d, n) = h.finish().map_err(|err| arch_err(format!("{p}: {err}")))?;
                        let existed = self.content.has(&d);
                        w.commit(&d, Some(n))?;
                        if !existed {
                            added.push(d);
                        }
                        stored.insert(p, d);
                    }
                }
                _ => {}
            }
        }
        Ok(Source::Tar {
            small,
            stored,
            links,
        })
    }

    fn import_oci(
        &self,
        path: &Path,
        src: &Source,
        stem: &str,
        name: Option<Reference>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let arch_err = |message: String| ImageError::Archive {
            path: path.to_path_buf(),
            message,
        };
        if src.has("oci-layout") {
            // Read like every other file of the layout (a symlink is refused).
            let data = src.small(path, "oci-layout")?;
            let version = serde_json::from_slice::<serde_json::Value>(&data)
                .ok()
                .and_then(|v| v.get("imageLayoutVersion")?.as_str().map(String::from));
            if version.is_none() {
                return Err(arch_err(
                    "oci-layout: not a JSON object with an \"imageLayoutVersion\"".into(),
                ));
            }
        }
        let idx_data = src.small(path, "index.json")?;
        let ManifestDoc::Index(idx) = manifest::parse_manifest(
            &format!("{}: index.json", path.display()),
            Some(manifest::OCI_INDEX),
            &idx_data,
        )?
        else {
            return Err(arch_err("index.json is not an image index".into()));
        };
        // Flatten nested indexes to (descriptor, ref name).
        let mut todo: Vec<(Descriptor, Option<String>)> = Vec::new();
        for d in &idx.manifests {
            let refname = d
                .annotations
                .as_ref()
                .and_then(|a| {
                    a.get("io.containerd.image.name")
                        .or_else(|| a.get("org.opencontainers.image.ref.name"))
                })
                .cloned();
            if d.media_type == manifest::OCI_INDEX || d.media_type == manifest::DOCKER_LIST {
                let data = self.stage_blob(path, src, d)?;
                let ManifestDoc::Index(inner) = manifest::parse_manifest(
                    &format!("index {}", d.digest),
                    Some(&d.media_type),
                    &data,
                )?
                else {
                    return Err(arch_err(format!("{}: not an index", d.digest)));
                };
                let chosen = manifest::select_platform(
                    &format!("index {}", d.digest),
                    &inner,
                    manifest::host_arch(),
                )?;
                todo.push((chosen.clone(), refname));
            } else if d
                .platform
                .as_ref()
                .is_none_or(|p| p.os == "linux" && p.architecture == manifest::host_arch())
            {
                todo.push((d.clone(), refname));
            }
        }
        if todo.is_empty() {
            return Err(arch_err(format!(
                "no linux/{} image in index.json",
                manifest::host_arch()
            )));
        }
        if name.is_some() && todo.len() > 1 {
            return Err(arch_err(format!(
                "--name given but the layout has {} images",
                todo.len()
            )));
        }
        let mut out = Vec::new();
        for (d, refname) in todo {
            let img_name = match (&name, refname) {
                (Some(n), _) => Some(n.clone()),
                (None, Some(r)) if r.contains('/') || r.contains(':') => {
                    Some(r.parse::<Reference>()?)
                }
                (None, Some(tag)) => Some(
                    format!("localhost/{}:{tag}", stem.to_ascii_lowercase())
                        .parse::<Reference>()?,
                ),
                (None, None) => None,
            };
            let mdata = self.stage_blob(path, src, &d)?;
            let ManifestDoc::Image(m) = manifest::parse_manifest(
                &format!("manifest {}", d.digest),
                Some(&d.media_type),
                &mdata,
            )?
            else {
                return Err(arch_err(format!("{}: not an image manifest", d.digest)));
            };
            out.push(self.import_manifest(path, src, &m, d.digest, img_name)?);
        }
        Ok(out)
    }

    /// Store the blobs of one manifest, unpack its layers, record the image.
    fn import_manifest(
        &self,
        path: &Path,
        src: &Source,
        m: &Manifest,
        mdigest: Digest,
        name: Option<Reference>,
    ) -> Result<ImageRecord, ImageError> {
        let cdata = self.stage_blob(path, src, &m.config)?;
        let what = format!("{}: manifest {mdigest}", path.display());
        let cfg = ImageConfigBlob::parse(&format!("{what} config"), &cdata)?;
        manifest::check_layers(&what, m, &cfg)?;
        let mut layers = Vec::new();
        for (l, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            self.stage_blob(path, src, l)?;
            layers.push(LayerRecord {
                digest: l.digest,
                diff_id: *diff_id,
                size: l.size,
                media_type: l.media_type.clone(),
            });
        }
        let label = match &name {
            Some(n) => n.to_string(),
            None => format!("manifest {mdigest}"),
        };
        self.unpack_all(&layers, &self.budget(label))?;
        let rec = ImageRecord {
            id: m.config.digest,
            names: name
                .as_ref()
                .and_then(|n| n.tagged_name())
                .into_iter()
                .collect(),
            repo_digests: vec![],
            manifest: mdigest,
            index: None,
            config: m.config.digest,
            size: m.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
            layers,
            created: cfg.created.clone(),
            added: chrono::Utc::now().to_rfc3339(),
        };
        self.commit_image(rec)
    }

    /// Unpack missing snapshots, a thread per layer, within `budget` (which
    /// present snapshots count towards too).
    fn unpack_all(&self, layers: &[LayerRecord], budget: &ImageBudget) -> Result<(), ImageError> {
        let mut missing = Vec::new();
        for l in layers {
            if self.snapshots.has(&l.diff_id) {
                self.charge_existing(l, budget)?;
            } else {
                missing.push(l);
            }
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = missing
                .into_iter()
                .map(|l| s.spawn(move || self.unpack_stored_layer(l, budget)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ImageError::NotFound("unpack thread panicked".into()))
                    })
                })
                .collect::<Result<Vec<()>, _>>()
        })?;
        Ok(())
    }

    /// Put the blob a descriptor names into the store (verified); small ones are returned.
    fn stage_blob(&self, path: &Path, src: &Source, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let arch_err = |message: String| ImageError::Archive {
            path: path.to_path_buf(),
            message,
        };
        let rel = format!("blobs/sha256/{}", d.digest.hex());
        match src {
            Source::Dir(dir) => {
                let f = dir.open_file(&rel).map_err(arch_err)?;
                self.content.put_reader(
                    std::io::BufReader::with_capacity(256 << 10, f),
                    &d.digest,
                    Some(d.size),
                )?;
            }
            Source::Tar { .. } => {
                if let Some(data) = src.small_opt(&rel) {
                    self.content.put(data, &d.digest)?;
                } else if let Some(stored) = src.stored(&rel) {
                    if stored != d.digest {
                        return Err(arch_err(format!(
                            "{rel}: content has digest {stored}, not {}",
                            d.digest
                        )));
                    }
                } else {
                    return Err(arch_err(format!("{rel}: missing")));
                }
            }
        }
        if d.size < SMALL {
            Ok(self.content.read(&d.digest)?)
        } else {
            Ok(Vec::new())
        }
    }

    fn import_docker(
        &self,
        path: &Path,
        src: &Source,
        name: Option<Reference>,
    ) -> Result<Vec<ImageRecord>, ImageError> {
        let arch_err = |message: String| ImageError::Archive {
            path: path.to_path_buf(),
            message,
        };
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&src.small(path, "manifest.json")?)
                .map_err(|e| arch_err(format!("manifest.json: {e}")))?;
        if entries.is_empty() {
            return Err(arch_err("manifest.json lists no images".into()));
        }
        if name.is_some() && entries.len() > 1 {
            return Err(arch_err(format!(
                "--name given but the archive has {} images",
                entries.len()
            )));
        }
        let mut out = Vec::new();
        for e in entries {
            let cdata = src.small(path, &e.config)?;
            let cdigest = Digest::of(&cdata);
            let cfg = ImageConfigBlob::parse(&format!("{}: {}", path.display(), e.config), &cdata)?;
            if cfg.rootfs.diff_ids.len() != e.layers.len() {
                return Err(arch_err(format!(
                    "{}: {} diff_ids for {} layers",
                    e.config,
                    cfg.rootfs.diff_ids.len(),
                    e.layers.len()
                )));
            }
            self.content.put(&cdata, &cdigest)?;
            let mut layers = Vec::new();
            for (lp, diff_id) in e.layers.iter().zip(&cfg.rootfs.diff_ids) {
                let (digest, size, head) = match src.small_opt(lp) {
                    Some(data) => {
                        let d = Digest::of(data);
                        self.content.put(data, &d)?;
                        (d, data.len() as u64, data.get(..4).unwrap_or(data).to_vec())
                    }
                    None => {
                        let d = src
                            .stored(lp)
                            .ok_or_else(|| arch_err(format!("layer {lp}: missing")))?;
                        let mut head = [0u8; 4];
                        let n = self
                            .content
                            .open_blob(&d)?
                            .read(&mut head)
                            .map_err(io_err(path))?;
                        (d, self.content.size(&d).unwrap_or(0), head[..n].to_vec())
                    }
                };
                let media_type = match Compression::sniff(&head) {
                    Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
                    Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                };
                layers.push(LayerRecord {
                    digest,
                    diff_id: *diff_id,
                    size,
                    media_type: media_type.into(),
                });
            }
            let m = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cdigest, "size": cdata.len()},
                "layers": layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
            });
            let mdata = serde_json::to_vec(&m).map_err(|err| arch_err(err.to_string()))?;
            let mdigest = Digest::of(&mdata);
            self.content.put(&mdata, &mdigest)?;

            let names: Vec<Reference> = match &name {
                Some(n) => vec![n.clone()],
                None => e
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| t.parse::<Reference>())
                    .collect::<Result<_, _>>()?,
            };
            let label = match names.first() {
                Some(n) => n.to_string(),
                None => format!("config {cdigest}"),
            };
            self.unpack_all(&layers, &self.budget(label))?;
            let rec = ImageRecord {
                id: cdigest,
                names: names.iter().filter_map(|n| n.tagged_name()).collect(),
                repo_digests: vec![],
                manifest: mdigest,
                index: None,
                config: cdigest,
                size: cdata.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>(),
                layers,
                created: cfg.created.clone(),
                added: chrono::Utc::now().to_rfc3339(),
            };
            out.push(self.commit_image(rec)?);
        }
        Ok(out)
    }
}

impl Source {
    fn resolve<'a>(&'a self, p: &'a str) -> String {
        let mut p = norm(p);
        if let Source::Tar { links, .. } = self {
            for _ in 0..8 {
                match links.get(&p) {
                    Some(t) => p = t.clone(),
                    None => break,
                }
            }
        }
        p
    }

    fn has(&self, p: &str) -> bool {
        match self {
            Source::Dir(d) => d.has(p),
            Source::Tar { small, stored, .. } => {
                let p = self.resolve(p);
                small.contains_key(&p) || stored.contains_key(&p)
            }
        }
    }

    fn small_opt(&self, p: &str) -> Option<&Vec<u8>> {
        match self {
            Source::Tar { small, .. } => small.get(&self.resolve(p)),
            Source::Dir(_) => None,
        }
    }

    fn stored(&self, p: &str) -> Option<Digest> {
        match self {
            Source::Tar { stored, .. } => stored.get(&self.resolve(p)).copied(),
            Source::Dir(_) => None,
        }
    }

    /// A small file of the archive (index.json, manifest.json, a config).
    fn small(&self, path: &Path, p: &str) -> Result<Vec<u8>, ImageError> {
        let missing = || ImageError::Archive {
            path: path.to_path_buf(),
            message: format!("{p}: missing"),
        };
        let arch_err = |message: String| ImageError::Archive {
            path: path.to_path_buf(),
            message,
        };
        match self {
            Source::Dir(d) => {
                let mut f = d.open_file(&norm(p)).map_err(arch_err)?;
                let len = f
                    .metadata()
                    .map_err(|e| arch_err(format!("{p}: {e}")))?
                    .len();
                if len > SMALL {
                    return Err(arch_err(format!("{p}: larger than {SMALL} bytes")));
                }
                let mut data = Vec::with_capacity(len as usize);
                f.read_to_end(&mut data)
                    .map_err(|e| arch_err(format!("{p}: {e}")))?;
                Ok(data)
            }
            Source::Tar { .. } => self.small_opt(p).cloned().ok_or_else(missing),
        }
    }
}

/// Error text from the tar crate can quote raw header bytes: keep it readable.
fn printable(s: &str) -> String {
    let cut: String = s
        .chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > 80 {
        format!("{cut}...")
    } else {
        cut
    }
}
