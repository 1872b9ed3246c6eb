//! ConfigMaps and Secrets from the apiserver for the pods bound to this
//! node: each object a pod refers to (volumes, projected sources, env,
//! envFrom, imagePullSecrets) is watched on its own (a list/watch with
//! `metadata.name=<name>`, what the Node authorizer lets a node do for
//! objects its pods use), so updates reach the pods' volumes; the watch
//! ends when no pod uses the object any more. Env and volumes read the
//! cache through [`ObjectStore`]. Every Service is watched too
//! ([`services`], for the service link env vars), and service account
//! tokens are requested here ([`tokens`]).

pub mod services;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::ResourceExt as _;
use kube::api::Api;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::reflect::{Change, reflect};
use crate::pod::objects::{MemoryObjects, ObjectStore};

/// `(kind, namespace, name)`; kind is `ConfigMap` or `Secret`.
pub type ObjectKey = (&'static str, String, String);

/// How long a new pod waits for its objects' first list before it starts
/// anyway (a missing object is then reported by the pod as kubelet does).
const FIRST_LIST: Duration = Duration::from_secs(10);

struct Watched {
    users: BTreeSet<String>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Inner {
    store: RwLock<MemoryObjects>,
    client: OnceLock<kube::Client>,
    watches: Mutex<HashMap<ObjectKey, Watched>>,
    /// Every Service by (namespace, name).
    services: RwLock<BTreeMap<(String, String), Service>>,
    /// Set once the Services have been listed.
    services_synced: AtomicBool,
}

/// The cache of the objects this node's pods use.
#[derive(Clone, Default)]
pub struct ApiObjects(Arc<Inner>);

impl ObjectStore for ApiObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.store().config_map(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.store().secret(namespace, name)
    }

    fn services(&self) -> Option<Vec<Service>> {
        if !self.0.services_synced.load(Ordering::SeqCst) {
            return None;
        }
        let services = self.0.services.read().unwrap_or_else(|e| e.into_inner());
        Some(services.values().cloned().collect())
    }
}

/// The objects `pod` refers to.
pub fn references(pod: &Pod) -> BTreeSet<ObjectKey> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let mut out = BTreeSet::new();
    let mut cm = |n: &str| out.insert(("ConfigMap", ns.clone(), n.to_string()));
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeSet::new();
    };
    let mut secrets = Vec::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cm(&c.name);
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            secrets.push(s.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                cm(&c.name);
            }
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    cm(&r.name);
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cm(&r.name);
            }
            if let Some(r) = &e.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        secrets.push(s.name.clone());
    }
    for s in secrets.into_iter().filter(|s| !s.is_empty()) {
        out.insert(("Secret", ns.clone(), s));
    }
    out.retain(|k| !k.2.is_empty());
    out
}

impl ApiObjects {
    fn store(&self) -> std::sync::RwLockReadGuard<'_, MemoryObjects> {
        // A poisoned lock means a panic mid-update elsewhere; the map is whole.
        self.0.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn store_mut(&self) -> std::sync::RwLockWriteGuard<'_, MemoryObjects> {
        self.0.store.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Use `client` for the watches (set once, when the node has joined)
    /// and start watching the Services.
    pub fn connect(&self, client: kube::Client) {
        if self.0.client.set(client.clone()).is_ok() {
            tokio::spawn(self.clone().watch_services(client));
        }
    }

    /// Watch what `pod` (UID `uid`) refers to; returns once every newly
    /// watched object has been listed (or [`FIRST_LIST`] passed).
    pub async fn track(&self, uid: &str, pod: &Pod) {
        let Some(client) = self.0.client.get().cloned() else {
            return;
        };
        let mut firsts = Vec::new();
        {
            let mut watches = self.0.watches.lock().unwrap_or_else(|e| e.into_inner());
            for key in references(pod) {
                if let Some(w) = watches.get_mut(&key) {
                    w.users.insert(uid.to_string());
                    continue;
                }
                let (first_tx, first_rx) = oneshot::channel();
                let task = tokio::spawn(self.clone().watch(client.clone(), key.clone(), first_tx));
                firsts.push(first_rx);
                watches.insert(
                    key,
                    Watched {
                        users: BTreeSet::from([uid.to_string()]),
                        task,
                    },
                );
            }
        }
        let all = futures::future::join_all(firsts);
        let _ = tokio::time::timeout(FIRST_LIST, all).await;
    }

    /// Pod `uid` is gone: stop watching what only it used.
    pub fn untrack(&self, uid: &str) {
        let mut watches = self.0.watches.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        for (key, w) in watches.iter_mut() {
            w.users.remove(uid);
            if w.users.is_empty() {
                w.task.abort();
                gone.push(key.clone());
            }
        }
        let mut store = self.store_mut();
        for key in gone {
            watches.remove(&key);
            remove(&mut store, &key);
        }
    }

    async fn watch(self, client: kube::Client, key: ObjectKey, first: oneshot::Sender<()>) {
        let ns = key.1.clone();
        if key.0 == "ConfigMap" {
            let api: Api<ConfigMap> = Api::namespaced(client, &ns);
            self.watch_kind(api, key, first, Obj::ConfigMap).await
        } else {
            let api: Api<Secret> = Api::namespaced(client, &ns);
            self.watch_kind(api, key, first, Obj::Secret).await
        }
    }

    /// The reflector and the cache updates run in this one task, so that
    /// aborting it (the last user went) ends the watch too.
    async fn watch_kind<K>(
        self,
        api: Api<K>,
        key: ObjectKey,
        first: oneshot::Sender<()>,
        wrap: fn(K) -> Obj,
    ) where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel(4);
        let selector = format!("metadata.name={}", key.2);
        let what = format!("{} {}/{}", key.0, key.1, key.2);
        let reflector = reflect(api, selector, what, tx);
        let consume = async {
            let mut first = Some(first);
            while let Some(change) = rx.recv().await {
                let mut store = self.store_mut();
                match change {
                    Change::Listed(items) => {
                        remove(&mut store, &key);
                        items.into_iter().for_each(|o| put(&mut store, wrap(o)));
                    }
                    Change::Applied(o) => put(&mut store, wrap(o)),
                    Change::Deleted(_) => remove(&mut store, &key),
                }
                drop(store);
                if let Some(f) = first.take() {
                    let _ = f.send(());
                }
            }
        };
        tokio::join!(reflector, consume);
    }
}

enum Obj {
    ConfigMap(ConfigMap),
    Secret(Secret),
}

fn put(store: &mut MemoryObjects, o: Obj) {
    match o {
        Obj::ConfigMap(c) => store.put_config_map(c),
        Obj::Secret(s) => store.put_secret(s),
    }
}

fn remove(store: &mut MemoryObjects, key: &ObjectKey) {
    let k = (key.1.clone(), key.2.clone());
    if key.0 == "ConfigMap" {
        store.config_maps.remove(&k);
    } else {
        store.secrets.remove(&k);
    }
}
