//! Where ConfigMaps, Secrets and Services come from: the config dir source
//! (`crate::source::config`) or the apiserver (`crate::node::objects`).
//! Env and volumes read them through [`ObjectStore`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};

/// Read access to ConfigMaps and Secrets by namespace and name.
pub trait ObjectStore: Send + Sync {
    /// The ConfigMap `namespace/name`, if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    /// The Secret `namespace/name`, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
    /// Every Service of the cluster (for the service link env vars);
    /// `None` until they have been listed once. Without a control plane
    /// there are none.
    fn services(&self) -> Option<Vec<Service>> {
        Some(Vec::new())
    }
}

/// A plain in-memory store (a snapshot of a source).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryObjects {
    /// ConfigMaps by (namespace, name).
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    /// Secrets by (namespace, name).
    pub secrets: BTreeMap<(String, String), Secret>,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

impl MemoryObjects {
    /// Add or replace a ConfigMap (namespace `default` when unset).
    pub fn put_config_map(&mut self, cm: ConfigMap) {
        self.config_maps.insert(key(&cm.metadata), cm);
    }

    /// Add or replace a Secret (namespace `default` when unset).
    pub fn put_secret(&mut self, s: Secret) {
        self.secrets.insert(key(&s.metadata), s);
    }
}

impl ObjectStore for MemoryObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.config_maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// A ConfigMap's entries as bytes: `data` and `binaryData` together.
pub fn config_map_entries(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

/// A Secret's entries as bytes.
pub fn secret_entries(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}
