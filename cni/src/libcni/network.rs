//! One network (a config list) and the ADD / CHECK / DEL / GC / STATUS
//! operations on it.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::cache::{CachedAttachment, ResultCache};
use super::conflist::{ConfListError, NetworkConfigList};
use super::exec::{ExecError, InvokeArgs, PluginExec};
use crate::types::{CniError, CniResult, CniVersion, validate};

/// Errors of network operations.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Running a plugin failed.
    #[error("network {network}: {cause}")]
    Exec {
        /// The network.
        network: String,
        /// What went wrong.
        cause: ExecError,
    },
    /// The result cache could not be read or written.
    #[error("network {network}: result cache: {cause}")]
    Cache {
        /// The network.
        network: String,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A config could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfListError),
    /// The container id, interface name or network name breaks the spec's
    /// rules: refused before any plugin runs (the error carries the code).
    #[error("network {network}: {error}")]
    Invalid {
        /// The network.
        network: String,
        /// What is wrong, with the spec's code.
        error: CniError,
    },
    /// The operation needs something the network or caller did not give.
    #[error("network {network}: {reason}")]
    Unsupported {
        /// The network.
        network: String,
        /// Why.
        reason: String,
    },
}

impl NetworkError {
    /// The plugin's CNI error document, when the failure was one.
    pub fn cni_error(&self) -> Option<&CniError> {
        match self {
            NetworkError::Exec { cause, .. } => cause.cni_error(),
            NetworkError::Invalid { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Where plugins and cached results live.
#[derive(Debug, Clone)]
pub struct CniConfig {
    exec: PluginExec,
    cache: ResultCache,
}

/// Per-attachment arguments (libcni's RuntimeConf).
#[derive(Debug, Clone, Default)]
pub struct RuntimeConf {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS (may be empty for DEL when the netns is gone).
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, ...), passed in `runtimeConfig`
    /// to plugins that declare the capability.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// An attachment of `container_id` in `netns` as `ifname`.
    pub fn new(container_id: &str, netns: &str, ifname: &str) -> Self {
        RuntimeConf {
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    /// Set a capability argument (e.g. `portMappings`).
    pub fn with_capability(mut self, name: &str, value: Value) -> Self {
        self.capability_args.insert(name.into(), value);
        self
    }

    /// This attachment with what ADD was given wherever the caller leaves
    /// it out: the capability args (`portMappings`, ...) and CNI_ARGS of the
    /// cached attachment (libcni's cached config), so CHECK and DEL act on
    /// what ADD set up without the caller passing it again.
    fn or_cached(&self, cached: Option<&CachedAttachment>) -> RuntimeConf {
        let mut rt = self.clone();
        if let Some(c) = cached {
            if rt.capability_args.is_empty() {
                rt.capability_args = c.capability_args.clone();
            }
            if rt.args.is_empty() {
                rt.args = c.cni_args.clone();
            }
        }
        rt
    }

    fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// A (container id, interface) pair that GC must keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

impl CniConfig {
    /// Plugins are looked up in `plugin_dirs`; results cached under `cache_dir`.
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        CniConfig {
            exec: PluginExec::new(plugin_dirs),
            cache: ResultCache::new(cache_dir),
        }
    }

    /// Load every network config in `dir` (sorted by file name).
    pub fn load_dir(dir: &std::path::Path) -> Result<Vec<NetworkConfigList>, ConfListError> {
        NetworkConfigList::load_dir(dir)
    }

    /// Bind a config list to this plugin path and cache.
    pub fn network(&self, list: NetworkConfigList) -> Network {
        Network {
            cfg: self.clone(),
            list,
        }
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }
}

/// A network ready to attach containers to.
#[derive(Debug, Clone)]
pub struct Network {
    cfg: CniConfig,
    list: NetworkConfigList,
}

impl Network {
    /// The network's name.
    pub fn name(&self) -> &str {
        &self.list.name
    }

    /// The config list.
    pub fn config(&self) -> &NetworkConfigList {
        &self.list
    }

    fn exec_err(&self, cause: ExecError) -> NetworkError {
        NetworkError::Exec {
            network: self.list.name.clone(),
            cause,
        }
    }

    fn cache_err(&self, cause: std::io::Error) -> NetworkError {
        NetworkError::Cache {
            network: self.list.name.clone(),
            cause,
        }
    }

    /// The stdin of one plugin (libcni's buildOneConfig).
    fn plugin_config(
        &self,
        plugin: &Map<String, Value>,
        prev: Option<&Value>,
        rt: Option<&RuntimeConf>,
        extra: &[(&str, Value)],
    ) -> Vec<u8> {
        let mut c = plugin.clone();
        c.insert("name".into(), self.list.name.clone().into());
        c.insert("cniVersion".into(), self.list.cni_version.clone().into());
        if let Some(p) = prev {
            c.insert("prevResult".into(), p.clone());
        }
        if let Some(rt) = rt {
            let caps = plugin.get("capabilities").and_then(Value::as_object);
            let mut runtime = Map::new();
            for (k, v) in &rt.capability_args {
                if caps.and_then(|c| c.get(k)).and_then(Value::as_bool) == Some(true) {
                    runtime.insert(k.clone(), v.clone());
                }
            }
            if !runtime.is_empty() {
                c.insert("runtimeConfig".into(), Value::Object(runtime));
            }
        }
        for (k, v) in extra {
            c.insert((*k).into(), v.clone());
        }
        serde_json::to_vec(&c).unwrap_or_default()
    }

    fn args<'a>(&self, command: &'a str, rt: &'a RuntimeConf) -> InvokeArgs<'a> {
        InvokeArgs {
            command,
            container_id: &rt.container_id,
            netns: &rt.netns,
            ifname: &rt.ifname,
            args: rt.cni_args(),
        }
    }

    fn plugin_type(p: &Map<String, Value>) -> &str {
        p.get("type").and_then(Value::as_str).unwrap_or_default()
    }

    /// libcni's checks of an attachment: they name the result cache's file
    /// and reach every plugin, so nothing runs or is written without them.
    fn validate(&self, rt: &RuntimeConf) -> Result<(), NetworkError> {
        validate::container_id(&rt.container_id)
            .and_then(|_| validate::network_name(&self.list.name))
            .and_then(|_| validate::ifname(&rt.ifname))
            .map_err(|error| NetworkError::Invalid {
                network: self.list.name.clone(),
                error,
            })
    }

    /// DEL of `plugins` in reverse order with `prev` as prevResult. It stops
    /// at the first failure (as libcni's DEL does) unless `best_effort`,
    /// where every plugin is asked and the first failure is returned.
    fn del_plugins(
        &self,
        plugins: &[Map<String, Value>],
        rt: &RuntimeConf,
        prev: Option<&Value>,
        best_effort: bool,
    ) -> Result<(), ExecError> {
        let mut first = None;
        for plugin in plugins.iter().rev() {
            let stdin = self.plugin_config(plugin, prev, Some(rt), &[]);
            if let Err(e) =
                self.cfg
                    .exec
                    .run(Self::plugin_type(plugin), &self.args("DEL", rt), &stdin)
            {
                if !best_effort {
                    return Err(e);
                }
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// ADD: run the chain, each plugin getting the previous result; cache
    /// and return the final result. When a plugin fails, the plugins that
    /// already ran are told to DEL so nothing is left behind.
    /// The container id, interface and network name are checked first
    /// (code 4 / 7, nothing run); a result that cannot be cached is undone
    /// with a DEL, since CHECK and DEL could not find it later.
    pub fn add(&self, rt: &RuntimeConf) -> Result<CniResult, NetworkError> {
        self.validate(rt)?;
        let mut prev: Option<Value> = None;
        for (i, plugin) in self.list.plugins.iter().enumerate() {
            let stdin = self.plugin_config(plugin, prev.as_ref(), Some(rt), &[]);
            match self.cfg.exec.run_json::<Value>(
                Self::plugin_type(plugin),
                &self.args("ADD", rt),
                &stdin,
            ) {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    self.undo(&self.list.plugins[..i], rt, prev.as_ref());
                    return Err(self.exec_err(e));
                }
            }
        }
        let result_json = prev.unwrap_or(Value::Null);
        let result: CniResult = match serde_json::from_value(result_json.clone()) {
            Ok(r) => r,
            Err(cause) => {
                self.undo(&self.list.plugins, rt, Some(&result_json));
                return Err(self.exec_err(ExecError::BadOutput {
                    plugin: "chain".into(),
                    command: "ADD".into(),
                    cause,
                }));
            }
        };
        let cached = self.cfg.cache.put(&CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: rt.container_id.clone(),
            if_name: rt.ifname.clone(),
            network_name: self.list.name.clone(),
            netns: rt.netns.clone(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            config: self.list.raw.clone(),
            result: result_json.clone(),
        });
        if let Err(e) = cached {
            self.undo(&self.list.plugins, rt, Some(&result_json));
            return Err(self.cache_err(e));
        }
        Ok(result)
    }

    /// DEL the plugins of a failed ADD that had succeeded.
    fn undo(&self, done: &[Map<String, Value>], rt: &RuntimeConf, prev: Option<&Value>) {
        if let Err(e) = self.del_plugins(done, rt, prev, true) {
            tracing::warn!(network = %self.list.name, error = %e, "cleanup DEL after failed ADD");
        }
    }

    /// The cached ADD result of an attachment.
    pub fn cached_result(&self, rt: &RuntimeConf) -> Result<Option<CniResult>, NetworkError> {
        let Some(c) = self
            .cfg
            .cache
            .get(&self.list.name, &rt.container_id, &rt.ifname)
            .map_err(|e| self.cache_err(e))?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_value(c.result).ok())
    }

    /// CHECK: every plugin verifies the attachment against the cached
    /// result, with the cached runtime config unless `rt` gives its own.
    pub fn check(&self, rt: &RuntimeConf) -> Result<(), NetworkError> {
        self.validate(rt)?;
        if self.list.disable_check {
            return Ok(());
        }
        let cached = self
            .cfg
            .cache
            .get(&self.list.name, &rt.container_id, &rt.ifname)
            .map_err(|e| self.cache_err(e))?
            .ok_or_else(|| NetworkError::Unsupported {
                network: self.list.name.clone(),
                reason: format!(
                    "CHECK: no cached result for container {} interface {}",
                    rt.container_id, rt.ifname
                ),
            })?;
        let rt = rt.or_cached(Some(&cached));
        for plugin in &self.list.plugins {
            let stdin = self.plugin_config(plugin, Some(&cached.result), Some(&rt), &[]);
            self.cfg
                .exec
                .run(Self::plugin_type(plugin), &self.args("CHECK", &rt), &stdin)
                .map_err(|e| self.exec_err(e))?;
        }
        Ok(())
    }

    /// DEL: plugins in reverse order, with the cached result as prevResult
    /// and the cached runtime config unless `rt` gives its own; then the
    /// cache entry is removed. Idempotent.
    pub fn del(&self, rt: &RuntimeConf) -> Result<(), NetworkError> {
        self.validate(rt)?;
        let cached = self
            .cfg
            .cache
            .get(&self.list.name, &rt.container_id, &rt.ifname)
            .map_err(|e| self.cache_err(e))?;
        // The ports to unmap are the ones given at ADD.
        let rt_eff = rt.or_cached(cached.as_ref());
        let prev = cached.as_ref().map(|c| &c.result);
        self.del_plugins(&self.list.plugins, &rt_eff, prev, false)
            .map_err(|e| self.exec_err(e))?;
        self.cfg
            .cache
            .remove(&self.list.name, &rt.container_id, &rt.ifname)
            .map_err(|e| self.cache_err(e))
    }

    fn require_1_1(&self, verb: &str) -> Result<(), NetworkError> {
        let v: CniVersion =
            self.list
                .cni_version
                .parse()
                .map_err(|reason| NetworkError::Unsupported {
                    network: self.list.name.clone(),
                    reason,
                })?;
        if !v.has_gc_status() {
            return Err(NetworkError::Unsupported {
                network: self.list.name.clone(),
                reason: format!("{verb} needs cniVersion 1.1.0, the list is {v}"),
            });
        }
        Ok(())
    }

    /// Whether the plugin says (VERSION) it speaks 1.1.0.
    fn plugin_has_1_1(&self, plugin: &Map<String, Value>) -> bool {
        let rt = RuntimeConf::default();
        let stdin = serde_json::to_vec(&serde_json::json!({"cniVersion": self.list.cni_version}))
            .unwrap_or_default();
        self.cfg
            .exec
            .run_json::<Value>(
                Self::plugin_type(plugin),
                &self.args("VERSION", &rt),
                &stdin,
            )
            .ok()
            .and_then(|v| v.get("supportedVersions").cloned())
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|a| a.iter().any(|x| x == "1.1.0"))
    }

    /// GC (1.1): attachments of this network not in `valid` are deleted from
    /// the cache (with a DEL, so plugins without GC clean up too), then every
    /// plugin that speaks 1.1.0 gets GC with the valid list.
    pub fn gc(&self, valid: &[Attachment]) -> Result<(), NetworkError> {
        self.require_1_1("GC")?;
        if self.list.disable_gc {
            return Ok(());
        }
        let keep: HashSet<&Attachment> = valid.iter().collect();
        let cached = self
            .cfg
            .cache
            .list(&self.list.name)
            .map_err(|e| self.cache_err(e))?;
        for c in cached {
            let a = Attachment {
                container_id: c.container_id.clone(),
                ifname: c.if_name.clone(),
            };
            if keep.contains(&a) {
                continue;
            }
            let rt = RuntimeConf {
                container_id: c.container_id.clone(),
                netns: String::new(),
                ifname: c.if_name.clone(),
                args: c.cni_args.clone(),
                capability_args: c.capability_args.clone(),
            };
            if let Err(e) = self.del(&rt) {
                tracing::warn!(network = %self.list.name, container = %c.container_id, error = %e, "GC: DEL of stale attachment");
            }
        }
        let valid_json = serde_json::to_value(valid).unwrap_or(Value::Null);
        let rt = RuntimeConf::default();
        for plugin in &self.list.plugins {
            if !self.plugin_has_1_1(plugin) {
                continue;
            }
            let stdin = self.plugin_config(
                plugin,
                None,
                None,
                &[("cni.dev/valid-attachments", valid_json.clone())],
            );
            self.cfg
                .exec
                .run(Self::plugin_type(plugin), &self.args("GC", &rt), &stdin)
                .map_err(|e| self.exec_err(e))?;
        }
        Ok(())
    }

    /// STATUS (1.1): every plugin that speaks 1.1.0 says whether it is ready.
    pub fn status(&self) -> Result<(), NetworkError> {
        self.require_1_1("STATUS")?;
        let rt = RuntimeConf::default();
        for plugin in &self.list.plugins {
            if !self.plugin_has_1_1(plugin) {
                continue;
            }
            let stdin = self.plugin_config(plugin, None, None, &[]);
            self.cfg
                .exec
                .run(Self::plugin_type(plugin), &self.args("STATUS", &rt), &stdin)
                .map_err(|e| self.exec_err(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_falls_back_to_the_cached_one() {
        let pm = serde_json::json!([{"hostPort": 8080, "containerPort": 80}]);
        let cached = CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: "c".into(),
            if_name: "eth0".into(),
            network_name: "n".into(),
            netns: String::new(),
            cni_args: vec![("K8S_POD_NAME".into(), "p".into())],
            capability_args: [("portMappings".to_string(), pm.clone())]
                .into_iter()
                .collect(),
            config: Value::Null,
            result: Value::Null,
        };
        let bare = RuntimeConf::new("c", "/x", "eth0");
        let rt = bare.or_cached(Some(&cached));
        assert_eq!(rt.capability_args["portMappings"], pm);
        assert_eq!(rt.cni_args(), "K8S_POD_NAME=p");
        assert!(bare.or_cached(None).capability_args.is_empty());
        // What the caller passes wins.
        let own = serde_json::json!([]);
        let given =
            RuntimeConf::new("c", "/x", "eth0").with_capability("portMappings", own.clone());
        assert_eq!(
            given.or_cached(Some(&cached)).capability_args["portMappings"],
            own
        );
    }
}
