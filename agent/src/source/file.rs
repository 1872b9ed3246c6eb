//! Static pods from `--pod-manifest-path`, as kubelet's file source: each
//! pod is named `<name>-<node>`, bound to the node, given namespace
//! `default` if none, a UID derived from its manifest, node name and file
//! (so a restart of husklet keeps its identity and an edit makes a new
//! one), the `kubernetes.io/config.{hash,source}` annotations and the
//! NoExecute toleration; then the apiserver's defaulting and validation.
//!
//! [`StaticPods::scan`] turns the directory into typed events keyed by the
//! pod's full name (`namespace/name`). A bad file yields an error naming
//! the file and field and leaves every pod alone, including the last good
//! version of that file's own pods. Two files with the same pod: the first
//! (by file name) wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Toleration};
use sha2::{Digest, Sha256};

use super::dir::{ManifestDir, SourceError};
use crate::pod::manifest::Object;
use crate::pod::{defaults, validate};

/// What changed in the static pod dir.
#[derive(Debug, Clone, PartialEq)]
pub enum PodEvent {
    /// A new pod.
    Add(Box<Pod>),
    /// The manifest of a running pod changed (its UID changed with it:
    /// kubelet treats this as a new pod replacing the old).
    Update {
        /// The UID being replaced.
        old_uid: String,
        /// The new pod.
        pod: Box<Pod>,
    },
    /// The pod's manifest is gone.
    Remove {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// UID.
        uid: String,
    },
}

/// The static pod source.
pub struct StaticPods {
    dir: ManifestDir,
    node: String,
    /// Current pods by `namespace/name`.
    pods: BTreeMap<String, Pod>,
}

/// `namespace/name` of a pod.
pub fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// kubelet's static pod UID: a hash of the pod as written, the node name
/// and the file (`applyDefaults`), 32 hex digits.
pub fn static_uid(pod: &Pod, node: &str, file: &Path) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(pod).unwrap_or_default());
    h.update(format!("host:{node}").as_bytes());
    h.update(format!("file:{}", file.display()).as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Make a static pod of `pod` read from `file`, then default and validate it.
pub fn prepare(mut pod: Pod, node: &str, file: &Path) -> Result<Pod, String> {
    if pod.metadata.uid.as_deref().unwrap_or("").is_empty() {
        pod.metadata.uid = Some(static_uid(&pod, node, file));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod.metadata.name = Some(format!("{name}-{}", node.to_lowercase()));
    let ann = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    ann.insert("kubernetes.io/config.hash".into(), uid);
    ann.insert("kubernetes.io/config.source".into(), "file".into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_string());
        let tolerate_all = Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        if !tolerations.contains(&tolerate_all) {
            tolerations.push(tolerate_all);
        }
    }
    defaults::apply(&mut pod);
    validate::pod(&pod).map_err(|e| e.to_string())?;
    Ok(pod)
}

impl StaticPods {
    /// The source for `dir` on node `node`.
    pub fn new(dir: impl Into<PathBuf>, node: &str) -> StaticPods {
        StaticPods {
            dir: ManifestDir::new(dir),
            node: node.to_string(),
            pods: BTreeMap::new(),
        }
    }

    /// The current pods by full name.
    pub fn pods(&self) -> &BTreeMap<String, Pod> {
        &self.pods
    }

    /// Re-read the directory; returns the events since the last scan and
    /// this pass's errors.
    pub fn scan(&mut self) -> (Vec<PodEvent>, Vec<SourceError>) {
        let scan = self.dir.scan();
        let mut errors = scan.errors;
        if !scan.changed {
            return (Vec::new(), errors);
        }
        let mut next: BTreeMap<String, Pod> = BTreeMap::new();
        for (file, objects) in &scan.files {
            let mut from_file = Vec::new();
            let mut bad = false;
            for obj in objects.iter() {
                let Object::Pod(p) = obj else {
                    errors.push(SourceError::Invalid {
                        path: file.to_path_buf(),
                        object: describe(obj),
                        reason: "only Pods belong in the static pod dir".into(),
                    });
                    continue;
                };
                match prepare((**p).clone(), &self.node, file) {
                    Ok(pod) => from_file.push(pod),
                    Err(reason) => {
                        errors.push(SourceError::Invalid {
                            path: file.to_path_buf(),
                            object: describe(obj),
                            reason,
                        });
                        bad = true;
                    }
                }
            }
            if bad {
                // Keep what this file gave last time it was good.
                from_file = self
                    .pods
                    .values()
                    .filter(|p| source_file(p) == Some(file))
                    .cloned()
                    .collect();
            }
            for mut pod in from_file {
                let key = full_name(&pod);
                if next.contains_key(&key) {
                    errors.push(SourceError::Invalid {
                        path: file.to_path_buf(),
                        object: format!("Pod {key}"),
                        reason: "a pod of this name comes from an earlier file; ignored".into(),
                    });
                    continue;
                }
                pod.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(FILE_ANNOTATION.into(), file.display().to_string());
                next.insert(key, pod);
            }
        }
        let mut events = Vec::new();
        for (key, old) in &self.pods {
            if !next.contains_key(key) {
                events.push(PodEvent::Remove {
                    namespace: old.metadata.namespace.clone().unwrap_or_default(),
                    name: old.metadata.name.clone().unwrap_or_default(),
                    uid: old.metadata.uid.clone().unwrap_or_default(),
                });
            }
        }
        for (key, pod) in &next {
            match self.pods.get(key) {
                None => events.push(PodEvent::Add(Box::new(pod.clone()))),
                Some(old) if old != pod => events.push(PodEvent::Update {
                    old_uid: old.metadata.uid.clone().unwrap_or_default(),
                    pod: Box::new(pod.clone()),
                }),
                Some(_) => {}
            }
        }
        self.pods = next;
        (events, errors)
    }

    /// Poll every `interval` on a thread of its own (kubelet re-lists
    /// every 20 s besides inotify; 1–2 s polling reacts about as fast) and
    /// send each non-empty batch; stops when the receiver is dropped.
    pub fn watch(
        mut self,
        interval: Duration,
    ) -> tokio::sync::mpsc::Receiver<(Vec<PodEvent>, Vec<SourceError>)> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        std::thread::spawn(move || {
            while !tx.is_closed() {
                let batch = self.scan();
                if (!batch.0.is_empty() || !batch.1.is_empty()) && tx.blocking_send(batch).is_err()
                {
                    return;
                }
                std::thread::sleep(interval);
            }
        });
        rx
    }
}

/// Annotation naming the manifest file a static pod came from (husklet's own).
pub const FILE_ANNOTATION: &str = "husk.dev/manifest-file";

fn source_file(p: &Pod) -> Option<&Path> {
    p.metadata
        .annotations
        .as_ref()?
        .get(FILE_ANNOTATION)
        .map(Path::new)
}

fn describe(obj: &Object) -> String {
    let (kind, meta) = match obj {
        Object::Pod(p) => ("Pod", &p.metadata),
        Object::ConfigMap(c) => ("ConfigMap", &c.metadata),
        Object::Secret(s) => ("Secret", &s.metadata),
    };
    format!("{kind} {}", meta.name.as_deref().unwrap_or("<unnamed>"))
}

#[cfg(test)]
mod tests;
