//! A container's environment as kubelet builds it
//! (`makeEnvironmentVariables`): `envFrom` first (prefix added, invalid
//! names skipped with a warning), then `env` in order, `value` expanded
//! against what is defined so far, `valueFrom` resolved; later entries
//! override earlier ones; `$(VAR)` in a value also sees the service link
//! variables ([`services`]), which come last, each unless the container
//! defines the name itself. Then `$(VAR)` expansion of command and args.
//! Without a control plane there are no Services and no service variables.

pub mod services;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::downward::{self, DownwardError, PodFacts};
use super::expand::expand;
use super::objects::{ObjectStore, config_map_entries, secret_entries};
use super::validate::names;

/// Why a container's environment cannot be built (kubelet's
/// `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
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
    /// A referenced, non-optional key is missing.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Key.
        key: String,
    },
    /// A secret value that is not UTF-8 cannot be an env var.
    #[error("env {name}: value of key {key} in Secret {namespace}/{secret} is not valid UTF-8")]
    NotUtf8 {
        /// Env var name.
        name: String,
        /// Key.
        key: String,
        /// Namespace.
        namespace: String,
        /// Secret name.
        secret: String,
    },
    /// The Services have not been listed yet (a pod from the API server
    /// waits for them, as kubelet's pods do).
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotSynced,
    /// A `fieldRef`/`resourceFieldRef` cannot be resolved.
    #[error("env {name}")]
    Downward {
        /// Env var name.
        name: String,
        /// Why.
        #[source]
        source: DownwardError,
    },
}

/// The environment and the warnings kubelet would post as events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// Name/value pairs in definition order, each name once.
    pub vars: Vec<(String, String)>,
    /// Event-like warnings (skipped invalid `envFrom` keys).
    pub warnings: Vec<String>,
}

impl Environment {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Expand `$(VAR)` references in `s` with these variables.
    pub fn expand(&self, s: &str) -> String {
        expand(s, |n| self.get(n).map(str::to_string))
    }
}

/// Build the environment of container `c` of `pod`.
pub fn environment(
    pod: &Pod,
    c: &Container,
    facts: &PodFacts,
    objects: &dyn ObjectStore,
) -> Result<Environment, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let all_services = match objects.services() {
        Some(s) => s,
        None if super::is_static(pod) => Vec::new(),
        None => return Err(EnvError::ServicesNotSynced),
    };
    let service_env = services::service_env(pod, &all_services);
    let mut env = Environment::default();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, optional, entries) = if let Some(r) = from.config_map_ref.as_ref() {
            let obj = objects.config_map(ns, &r.name);
            (
                "configmap",
                &r.name,
                r.optional,
                obj.map(|cm| config_map_entries(&cm)),
            )
        } else if let Some(r) = from.secret_ref.as_ref() {
            let obj = objects.secret(ns, &r.name);
            (
                "secret",
                &r.name,
                r.optional,
                obj.map(|s| secret_entries(&s)),
            )
        } else {
            continue;
        };
        let Some(entries) = entries else {
            if optional.unwrap_or(false) {
                continue;
            }
            return Err(EnvError::NotFound {
                kind,
                namespace: ns.into(),
                name: name.clone(),
            });
        };
        let mut invalid = Vec::new();
        for (k, v) in entries {
            let var = format!("{prefix}{k}");
            if !names::env_var_name(&var).is_empty() {
                invalid.push(var);
                continue;
            }
            env.set(var, String::from_utf8_lossy(&v).into_owned());
        }
        if !invalid.is_empty() {
            env.warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = e.value.as_deref().filter(|v| !v.is_empty()) {
            expand(v, |n| {
                env.get(n)
                    .or_else(|| service_env.get(n).map(String::as_str))
                    .map(str::to_string)
            })
        } else if let Some(from) = e.value_from.as_ref() {
            let downward_err = |source| EnvError::Downward {
                name: e.name.clone(),
                source,
            };
            if let Some(f) = from.field_ref.as_ref() {
                downward::field_value(pod, facts, &f.field_path).map_err(downward_err)?
            } else if let Some(r) = from.resource_field_ref.as_ref() {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => downward::named_container(pod, n).map_err(downward_err)?,
                    None => c,
                };
                downward::resource_value(r, target, facts).map_err(downward_err)?
            } else if let Some(r) = from.config_map_key_ref.as_ref() {
                let optional = r.optional.unwrap_or(false);
                let Some(cm) = objects.config_map(ns, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::NotFound {
                        kind: "configmap",
                        namespace: ns.into(),
                        name: r.name.clone(),
                    });
                };
                match config_map_entries(&cm).remove(&r.key) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::KeyNotFound {
                            kind: "ConfigMap",
                            namespace: ns.into(),
                            name: r.name.clone(),
                            key: r.key.clone(),
                        });
                    }
                }
            } else if let Some(r) = from.secret_key_ref.as_ref() {
                let optional = r.optional.unwrap_or(false);
                let Some(s) = objects.secret(ns, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::NotFound {
                        kind: "secret",
                        namespace: ns.into(),
                        name: r.name.clone(),
                    });
                };
                match secret_entries(&s).remove(&r.key) {
                    Some(v) => String::from_utf8(v).map_err(|_| EnvError::NotUtf8 {
                        name: e.name.clone(),
                        key: r.key.clone(),
                        namespace: ns.into(),
                        secret: r.name.clone(),
                    })?,
                    None if optional => continue,
                    None => {
                        return Err(EnvError::KeyNotFound {
                            kind: "Secret",
                            namespace: ns.into(),
                            name: r.name.clone(),
                            key: r.key.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(e.name.clone(), value);
    }
    for (k, v) in service_env {
        if env.get(&k).is_none() {
            env.vars.push((k, v));
        }
    }
    Ok(env)
}

/// `command` and `args` with `$(VAR)` expanded (`ExpandContainerCommandAndArgs`).
pub fn command_and_args(c: &Container, env: &Environment) -> (Vec<String>, Vec<String>) {
    let map = |v: &Option<Vec<String>>| v.iter().flatten().map(|s| env.expand(s)).collect();
    (map(&c.command), map(&c.args))
}

#[cfg(test)]
mod tests;
