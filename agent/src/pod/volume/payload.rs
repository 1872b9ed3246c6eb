//! The files of configMap, secret, downwardAPI and projected volumes
//! (kubelet's `MakePayload` and `CollectData`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, VolumeProjection};

use super::VolumeError;
use super::atomic::{File, Payload};
use crate::pod::defaults::DEFAULT_VOLUME_MODE;
use crate::pod::downward::{self, PodFacts};
use crate::pod::objects::{ObjectStore, config_map_entries, secret_entries};
use crate::pod::token::{DEFAULT_EXPIRATION_SECONDS, PodTokens};

/// Which object a key projection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::ConfigMap => "configmap",
            Source::Secret => "secret",
        }
    }
}

/// Files of a ConfigMap or Secret: every key, or only `items` (key → path,
/// own mode). A missing object or key is an error unless `optional`.
pub fn keys(
    source: Source,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    objects: &dyn ObjectStore,
) -> Result<Payload, VolumeError> {
    let entries: Option<BTreeMap<String, Vec<u8>>> = match source {
        Source::ConfigMap => objects
            .config_map(namespace, name)
            .map(|c| config_map_entries(&c)),
        Source::Secret => objects.secret(namespace, name).map(|s| secret_entries(&s)),
    };
    let Some(entries) = entries else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(VolumeError::NotFound {
            kind: source.name(),
            namespace: namespace.into(),
            name: name.into(),
        });
    };
    let default_mode = default_mode.unwrap_or(DEFAULT_VOLUME_MODE) as u32;
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in entries {
                payload.insert(
                    k,
                    File {
                        data: v,
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                let Some(data) = entries.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError::MissingKey {
                        kind: source.name(),
                        namespace: namespace.into(),
                        name: name.into(),
                        key: it.key.clone(),
                    });
                };
                let mode = it.mode.map(|m| m as u32).unwrap_or(default_mode);
                payload.insert(
                    it.path.clone(),
                    File {
                        data: data.clone(),
                        mode,
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// Files of a downwardAPI volume or projection.
pub fn downward_items(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    facts: &PodFacts,
) -> Result<Payload, VolumeError> {
    let default_mode = default_mode.unwrap_or(DEFAULT_VOLUME_MODE) as u32;
    let mut payload = Payload::new();
    for it in items {
        let value = if let Some(f) = it.field_ref.as_ref() {
            downward::field_value(pod, facts, &f.field_path)
        } else if let Some(r) = it.resource_field_ref.as_ref() {
            let name = r.container_name.as_deref().unwrap_or("");
            downward::named_container(pod, name).and_then(|c| downward::resource_value(r, c, facts))
        } else {
            continue;
        }
        .map_err(|source| VolumeError::Downward {
            path: it.path.clone(),
            source,
        })?;
        let mode = it.mode.map(|m| m as u32).unwrap_or(default_mode);
        payload.insert(
            it.path.clone(),
            File {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(payload)
}

/// Files of a projected volume: every source's, merged.
pub fn projected(
    pod: &Pod,
    sources: &[VolumeProjection],
    default_mode: Option<i32>,
    facts: &PodFacts,
    objects: &dyn ObjectStore,
    tokens: &PodTokens,
) -> Result<Payload, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut payload = Payload::new();
    for src in sources {
        let part = if let Some(c) = src.config_map.as_ref() {
            keys(
                Source::ConfigMap,
                ns,
                &c.name,
                c.items.as_deref(),
                default_mode,
                c.optional.unwrap_or(false),
                objects,
            )?
        } else if let Some(s) = src.secret.as_ref() {
            keys(
                Source::Secret,
                ns,
                &s.name,
                s.items.as_deref(),
                default_mode,
                s.optional.unwrap_or(false),
                objects,
            )?
        } else if let Some(d) = src.downward_api.as_ref() {
            downward_items(pod, d.items.as_deref().unwrap_or(&[]), default_mode, facts)?
        } else if let Some(t) = src.service_account_token.as_ref() {
            let audience = t.audience.clone().unwrap_or_default();
            let exp = t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
            // The caller fetched every token the pod's sources name.
            let token = tokens.get(&(audience, exp)).ok_or_else(|| {
                VolumeError::Unsupported(format!(
                    "serviceAccountToken {:?}: no token was fetched for it",
                    t.path
                ))
            })?;
            let mut part = Payload::new();
            part.insert(
                t.path.clone(),
                File {
                    data: token.clone().into_bytes(),
                    mode: default_mode.unwrap_or(DEFAULT_VOLUME_MODE) as u32,
                },
            );
            part
        } else {
            return Err(VolumeError::Unsupported(
                "projected clusterTrustBundle: not supported".into(),
            ));
        };
        payload.extend(part);
    }
    Ok(payload)
}
