//! A directory of ConfigMap and Secret manifests (the node's stand-in for
//! the apiserver's objects), read with the same loader as static pods.
//! [`ConfigDir::scan`] refreshes a shared [`SharedObjects`] store that env
//! and volumes read, and names the objects that changed so the pod worker
//! can refresh the volumes that use them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::dir::{ManifestDir, SourceError};
use crate::pod::manifest::Object;
use crate::pod::objects::{MemoryObjects, ObjectStore};
use crate::pod::validate;

/// `(kind, namespace, name)` of a changed object; kind is `ConfigMap` or `Secret`.
pub type ObjectKey = (&'static str, String, String);

/// A store shared between the config dir source and the pods.
#[derive(Debug, Clone, Default)]
pub struct SharedObjects(Arc<RwLock<MemoryObjects>>);

impl SharedObjects {
    fn replace(&self, objects: MemoryObjects) {
        // A poisoned lock only means a panic elsewhere mid-replace; the data is whole.
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        *guard = objects;
    }

    /// A copy of the current objects.
    pub fn snapshot(&self) -> MemoryObjects {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ObjectStore for SharedObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config_map(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .secret(namespace, name)
    }
}

/// The config dir source.
pub struct ConfigDir {
    dir: ManifestDir,
    store: SharedObjects,
}

impl ConfigDir {
    /// The source for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> ConfigDir {
        ConfigDir {
            dir: ManifestDir::new(dir),
            store: SharedObjects::default(),
        }
    }

    /// The store this source keeps up to date.
    pub fn store(&self) -> SharedObjects {
        self.store.clone()
    }

    /// Re-read the directory; returns the objects added, changed or removed
    /// since the last scan, and this pass's errors. An invalid object is
    /// skipped with an error; the first file (by name) defining an object wins.
    pub fn scan(&mut self) -> (Vec<ObjectKey>, Vec<SourceError>) {
        let scan = self.dir.scan();
        let mut errors = scan.errors;
        if !scan.changed {
            return (Vec::new(), errors);
        }
        let mut next = MemoryObjects::default();
        for (file, objects) in &scan.files {
            for obj in objects.iter() {
                let (kind, meta, result) = match obj {
                    Object::ConfigMap(c) => ("ConfigMap", &c.metadata, validate::config_map(c)),
                    Object::Secret(s) => ("Secret", &s.metadata, validate::secret(s)),
                    Object::Pod(p) => ("Pod", &p.metadata, Ok(())),
                };
                let name = meta.name.clone().unwrap_or_default();
                let ns = meta
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "default".into());
                let invalid = |reason: String| SourceError::Invalid {
                    path: file.to_path_buf(),
                    object: format!("{kind} {ns}/{name}"),
                    reason,
                };
                if let Err(e) = result {
                    errors.push(invalid(e.to_string()));
                    continue;
                }
                let key = (ns.clone(), name.clone());
                match obj {
                    Object::ConfigMap(c) if !next.config_maps.contains_key(&key) => {
                        next.put_config_map(c.clone())
                    }
                    Object::Secret(s) if !next.secrets.contains_key(&key) => {
                        next.put_secret(s.clone())
                    }
                    Object::Pod(_) => {
                        errors.push(invalid("Pods belong in the static pod dir".into()))
                    }
                    _ => errors.push(invalid("defined by an earlier file; ignored".into())),
                }
            }
        }
        let old = self.store.snapshot();
        let mut changed = BTreeSet::new();
        for (k, v) in &next.config_maps {
            if old.config_maps.get(k) != Some(v) {
                changed.insert(("ConfigMap", k.0.clone(), k.1.clone()));
            }
        }
        for k in old
            .config_maps
            .keys()
            .filter(|k| !next.config_maps.contains_key(*k))
        {
            changed.insert(("ConfigMap", k.0.clone(), k.1.clone()));
        }
        for (k, v) in &next.secrets {
            if old.secrets.get(k) != Some(v) {
                changed.insert(("Secret", k.0.clone(), k.1.clone()));
            }
        }
        for k in old
            .secrets
            .keys()
            .filter(|k| !next.secrets.contains_key(*k))
        {
            changed.insert(("Secret", k.0.clone(), k.1.clone()));
        }
        self.store.replace(next);
        (changed.into_iter().collect(), errors)
    }

    /// Poll every `interval` on a thread of its own, sending each non-empty
    /// batch; stops when the receiver is dropped. Read objects through
    /// [`ConfigDir::store`] (take it before calling this).
    pub fn watch(
        mut self,
        interval: Duration,
    ) -> tokio::sync::mpsc::Receiver<(Vec<ObjectKey>, Vec<SourceError>)> {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn objects_changes_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        fs::write(
            d.join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\ndata: {k: v}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {pw: x}\n",
        )
        .unwrap();
        let mut src = ConfigDir::new(d);
        let store = src.store();
        let (changed, errors) = src.scan();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            changed,
            vec![
                ("ConfigMap", "ns".to_string(), "cfg".to_string()),
                ("Secret", "default".to_string(), "s".to_string())
            ]
        );
        assert_eq!(
            store.config_map("ns", "cfg").unwrap().data.unwrap()["k"],
            "v"
        );
        assert_eq!(
            store.secret("default", "s").unwrap().data.unwrap()["pw"].0,
            b"x"
        );
        assert!(store.config_map("default", "cfg").is_none(), "namespaced");
        assert_eq!(src.scan().0, vec![]);
        // An edit names just the object that changed.
        fs::write(
            d.join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\ndata: {k: v2}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {pw: x}\n",
        )
        .unwrap();
        assert_eq!(
            src.scan().0,
            vec![("ConfigMap", "ns".to_string(), "cfg".to_string())]
        );
        assert_eq!(
            store.config_map("ns", "cfg").unwrap().data.unwrap()["k"],
            "v2"
        );
        // Invalid keys: refused with the field; a later duplicate loses.
        fs::write(
            d.join("b.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {\"a/b\": x}\n",
        )
        .unwrap();
        fs::write(d.join("c.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: ns}\ndata: {k: other}\n").unwrap();
        let (changed, errors) = src.scan();
        assert_eq!(changed, vec![]);
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            msgs.iter()
                .any(|m| m.contains("b.yaml: ConfigMap default/bad: data[a/b]: Invalid value")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("c.yaml: ConfigMap ns/cfg: defined by an earlier file")),
            "{msgs:?}"
        );
        assert_eq!(
            store.config_map("ns", "cfg").unwrap().data.unwrap()["k"],
            "v2"
        );
        // Removal.
        fs::remove_file(d.join("a.yaml")).unwrap();
        let (changed, _) = src.scan();
        assert!(
            changed.contains(&("Secret", "default".to_string(), "s".to_string())),
            "{changed:?}"
        );
        assert!(store.secret("default", "s").is_none());
        assert_eq!(
            store.config_map("ns", "cfg").unwrap().data.unwrap()["k"],
            "other",
            "c.yaml now defines it"
        );
    }
}
