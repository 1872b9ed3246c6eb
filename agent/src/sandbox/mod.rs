//! Pod sandboxes without a pause process: pinned namespaces ([`ns`]), the
//! pod's network through CNI ([`net`]), and the hostname, hosts and
//! resolv.conf files its containers mount ([`files`]).

pub mod files;
pub mod net;
pub mod ns;

use std::path::PathBuf;

use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

/// What husklet keeps of a sandbox (`<state>/sandboxes/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// False once stopped.
    pub ready: bool,
    /// Where its namespaces are pinned (files `net`, `ipc`, `uts`).
    pub ns_dir: PathBuf,
    /// Its hostname, hosts and resolv.conf.
    pub files_dir: PathBuf,
    /// Uses the node's network namespace.
    pub host_network: bool,
    /// The CNI network it was added to, while attached.
    #[serde(default)]
    pub network: Option<String>,
    /// Pod IPs from CNI, first one primary.
    #[serde(default)]
    pub ips: Vec<String>,
    /// Written before RunPodSandbox changes anything and cleared once it
    /// succeeded: a record still pending after a crash is rolled back on
    /// start (CNI DEL on `network`, unpin, remove the files).
    #[serde(default)]
    pub pending: bool,
}

impl SandboxRecord {
    /// The sandbox's metadata (validated at creation).
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The pinned namespace file of `kind` (`net`, `ipc`, `uts`), if pinned.
    pub fn ns_path(&self, kind: ns::Kind) -> Option<PathBuf> {
        if kind == ns::Kind::Net && self.host_network {
            return None;
        }
        Some(self.ns_dir.join(kind.name()))
    }

    /// The cgroup parent of its containers (empty: husklet's default).
    pub fn cgroup_parent(&self) -> String {
        self.config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }

    /// The hostname its containers see.
    pub fn hostname(&self) -> String {
        if self.config.hostname.is_empty() {
            self.metadata().name
        } else {
            self.config.hostname.clone()
        }
    }
}

/// Whether the sandbox config asks for the node's network namespace.
pub fn wants_host_network(config: &cri::PodSandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32)
}
