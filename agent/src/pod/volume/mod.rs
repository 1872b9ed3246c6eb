//! Pod volumes on the host, as kubelet lays them out:
//!
//! ```text
//! <root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>     dir, or tmpfs (medium: Memory)
//! <root>/pods/<uid>/volumes/kubernetes.io~configmap/<name>     atomic writer (..data swap), on disk
//! <root>/pods/<uid>/volumes/kubernetes.io~secret/<name>        atomic writer on tmpfs
//! <root>/pods/<uid>/volumes/kubernetes.io~downward-api/<name>  atomic writer on tmpfs
//! <root>/pods/<uid>/volumes/kubernetes.io~projected/<name>     atomic writer on tmpfs
//! <root>/pods/<uid>/volume-subpaths/<volume>/<container>/<i>   subPath bind mounts
//! ```
//!
//! hostPath volumes are the host path itself, after the `type` check.
//! [`setup`] builds every payload first and touches the host only when all
//! of them resolve; it is idempotent, and calling it again refreshes
//! configMap/secret/downwardAPI contents atomically (a subPath mount keeps
//! the file it was made from, as in kubelet). [`PodVolumes::mounts`] gives
//! a container's CRI mounts; [`teardown`] unmounts and removes it all.

pub mod atomic;
pub mod host;
pub mod payload;
pub mod subpath;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use self::atomic::Payload;
use self::payload::Source;
use super::downward::{DownwardError, PodFacts};
use super::env::Environment;
use super::objects::ObjectStore;
use super::quantity::Quantity;
use super::token::PodTokens;

/// Why a volume cannot be set up (the pod then waits, as kubelet's
/// `FailedMount`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced, non-optional ConfigMap or Secret does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// An `items` key is missing from a non-optional object.
    #[error("{kind} {namespace}/{name} references non-existent key {key}")]
    MissingKey {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The key.
        key: String,
    },
    /// A downward API file cannot be produced.
    #[error("downwardAPI file {path:?}")]
    Downward {
        /// The item's path.
        path: String,
        /// Why.
        #[source]
        source: DownwardError,
    },
    /// A payload path that would escape the volume.
    #[error("volume file {path:?}: {reason}")]
    Payload {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// hostPath type check failed.
    #[error("{reason}")]
    HostPath {
        /// The host path.
        path: PathBuf,
        /// kubelet's message.
        reason: String,
    },
    /// A subPath that cannot be used.
    #[error("subPath {sub_path:?}: {reason}")]
    SubPath {
        /// The subPath.
        sub_path: String,
        /// Why.
        reason: String,
    },
    /// Something husklet cannot serve.
    #[error("{0}")]
    Unsupported(String),
    /// A volumeMount names no volume.
    #[error("volumeMount {0:?}: no such volume")]
    NoVolume(String),
    /// A file system operation failed.
    #[error("{what}")]
    Io {
        /// What was done, naming the path.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// mount(2)/umount(2) failed.
    #[error("{what}")]
    Mount {
        /// What was done.
        what: String,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// Context: which volume.
    #[error("volume {name:?}")]
    Volume {
        /// Volume name.
        name: String,
        /// Why.
        #[source]
        source: Box<VolumeError>,
    },
}

/// `<root>/pods/<uid>`: a pod's directory.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// A set-up volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// What containers mount.
    pub host_path: PathBuf,
    /// configMap, secret, downwardAPI and projected are always read-only.
    pub read_only: bool,
}

/// The volumes of one pod, ready for its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodVolumes {
    /// `<root>/pods/<uid>`.
    pub pod_dir: PathBuf,
    /// By volume name.
    pub volumes: BTreeMap<String, Mounted>,
}

enum Plan {
    Dir { tmpfs: Option<Option<i64>> },
    Host { path: PathBuf, type_: String },
    Files { tmpfs: bool, payload: Payload },
}

fn plan_of(
    pod: &Pod,
    v: &k8s_openapi::api::core::v1::Volume,
    facts: &PodFacts,
    objects: &dyn ObjectStore,
    tokens: &PodTokens,
) -> Result<(&'static str, Plan), VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(e) = v.empty_dir.as_ref() {
        let tmpfs = (e.medium.as_deref() == Some("Memory")).then(|| {
            let limit = e
                .size_limit
                .as_ref()
                .and_then(|q| Quantity::parse(&q.0).ok())
                .filter(|q| !q.is_zero());
            // Without a sizeLimit, kubelet sizes it to allocatable memory.
            limit
                .or(Some(facts.allocatable.memory))
                .filter(|q| !q.is_zero())
                .map(|q| q.value())
        });
        return Ok(("empty-dir", Plan::Dir { tmpfs }));
    }
    if let Some(h) = v.host_path.as_ref() {
        return Ok((
            "host-path",
            Plan::Host {
                path: PathBuf::from(&h.path),
                type_: h.type_.clone().unwrap_or_default(),
            },
        ));
    }
    if let Some(c) = v.config_map.as_ref() {
        let p = payload::keys(
            Source::ConfigMap,
            ns,
            &c.name,
            c.items.as_deref(),
            c.default_mode,
            c.optional.unwrap_or(false),
            objects,
        )?;
        return Ok((
            "configmap",
            Plan::Files {
                tmpfs: false,
                payload: p,
            },
        ));
    }
    if let Some(s) = v.secret.as_ref() {
        let name = s.secret_name.as_deref().unwrap_or("");
        let p = payload::keys(
            Source::Secret,
            ns,
            name,
            s.items.as_deref(),
            s.default_mode,
            s.optional.unwrap_or(false),
            objects,
        )?;
        return Ok((
            "secret",
            Plan::Files {
                tmpfs: true,
                payload: p,
            },
        ));
    }
    if let Some(d) = v.downward_api.as_ref() {
        let p = payload::downward_items(
            pod,
            d.items.as_deref().unwrap_or(&[]),
            d.default_mode,
            facts,
        )?;
        return Ok((
            "downward-api",
            Plan::Files {
                tmpfs: true,
                payload: p,
            },
        ));
    }
    if let Some(pr) = v.projected.as_ref() {
        let p = payload::projected(
            pod,
            pr.sources.as_deref().unwrap_or(&[]),
            pr.default_mode,
            facts,
            objects,
            tokens,
        )?;
        return Ok((
            "projected",
            Plan::Files {
                tmpfs: true,
                payload: p,
            },
        ));
    }
    Err(VolumeError::Unsupported(
        "volume type is not supported by husklet".into(),
    ))
}

fn in_volume(name: &str) -> impl FnOnce(VolumeError) -> VolumeError + '_ {
    move |source| VolumeError::Volume {
        name: name.to_string(),
        source: Box::new(source),
    }
}

/// Set up (or refresh) every volume of a validated pod under `root`;
/// `tokens` holds the service account tokens its projected
/// `serviceAccountToken` sources need ([`crate::pod::token`]).
pub fn setup(
    root: &Path,
    pod: &Pod,
    facts: &PodFacts,
    objects: &dyn ObjectStore,
    tokens: &PodTokens,
) -> Result<PodVolumes, VolumeError> {
    let uid = pod.metadata.uid.as_deref().filter(|u| !u.is_empty());
    let uid = uid.ok_or_else(|| VolumeError::Unsupported("pod has no metadata.uid".into()))?;
    let pod_dir = pod_dir(root, uid);
    let vols = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    // Resolve everything first: a missing object changes nothing on the host.
    let mut plans = Vec::new();
    for v in vols {
        plans.push((
            v.name.as_str(),
            plan_of(pod, v, facts, objects, tokens).map_err(in_volume(&v.name))?,
        ));
    }
    let mut volumes = BTreeMap::new();
    for (name, (plugin, plan)) in plans {
        let dir = pod_dir
            .join("volumes")
            .join(format!("kubernetes.io~{plugin}"))
            .join(name);
        let mounted = materialise(&dir, plan).map_err(in_volume(name))?;
        volumes.insert(name.to_string(), mounted);
    }
    Ok(PodVolumes { pod_dir, volumes })
}

/// Create `dir` with `mode`; an existing one is left as it is (a refresh
/// must not undo what containers did to it).
fn create_dir(dir: &Path, mode: u32) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|source| VolumeError::Io {
        what: format!("create {}", dir.display()),
        source,
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        VolumeError::Io {
            what: format!("chmod {}", dir.display()),
            source,
        }
    })
}

fn materialise(dir: &Path, plan: Plan) -> Result<Mounted, VolumeError> {
    match plan {
        Plan::Dir { tmpfs } => {
            // emptyDir is world-writable (0777), as kubelet makes it.
            create_dir(dir, 0o777)?;
            if let Some(size) = tmpfs {
                host::ensure_tmpfs(dir, size, 0o777)?;
            }
            Ok(Mounted {
                host_path: dir.to_path_buf(),
                read_only: false,
            })
        }
        Plan::Host { path, type_ } => {
            host::check_host_path(&path, &type_)?;
            Ok(Mounted {
                host_path: path,
                read_only: false,
            })
        }
        Plan::Files { tmpfs, payload } => {
            create_dir(dir, 0o755)?;
            if tmpfs {
                host::ensure_tmpfs(dir, None, 0o755)?;
            }
            atomic::write(dir, &payload)?;
            Ok(Mounted {
                host_path: dir.to_path_buf(),
                read_only: true,
            })
        }
    }
}

impl PodVolumes {
    /// The CRI mounts of container `c` (`makeMounts`): subPath (and
    /// `subPathExpr`, expanded with the container's `env`) prepared safely,
    /// read-only as asked or as the volume type forces, propagation mapped.
    pub fn mounts(
        &self,
        c: &Container,
        env: Option<&Environment>,
    ) -> Result<Vec<cri::Mount>, VolumeError> {
        let mut out = Vec::new();
        for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
            let vol = self
                .volumes
                .get(&m.name)
                .ok_or_else(|| VolumeError::NoVolume(m.name.clone()))?;
            let expr = m.sub_path_expr.as_deref().filter(|s| !s.is_empty());
            let sub = match (m.sub_path.as_deref().filter(|s| !s.is_empty()), expr) {
                (Some(s), _) => Some(s.to_string()),
                (None, Some(e)) => Some(
                    env.map(|env| env.expand(e))
                        .unwrap_or_else(|| e.to_string()),
                ),
                (None, None) => None,
            };
            let host_path = match sub {
                Some(sub) => {
                    subpath::prepare(&self.pod_dir, &vol.host_path, &sub, &m.name, &c.name, i)?
                }
                None => vol.host_path.clone(),
            };
            let propagation = match m.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                _ => cri::MountPropagation::PropagationPrivate,
            };
            out.push(cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: m.read_only.unwrap_or(false) || vol.read_only,
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        Ok(out)
    }
}

/// Unmount and remove a pod's volumes and subPath mounts (idempotent).
/// hostPath volumes are never touched.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    for sub in ["volume-subpaths", "volumes"] {
        let dir = pod_dir.join(sub);
        host::unmount_all(&dir)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(VolumeError::Io {
                    what: format!("remove {}", dir.display()),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
