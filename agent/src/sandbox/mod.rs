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
    /// Where its namespaces are pinned (files `net`, `ipc`, `uts`; `pid` and
    /// `pid.init` while its containers share one).
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

    /// The pinned namespace file of `kind`, if the sandbox pins one.
    pub fn ns_path(&self, kind: ns::Kind) -> Option<PathBuf> {
        let pinned = match kind {
            ns::Kind::Net => !self.host_network,
            ns::Kind::Ipc => mode(&self.config, ns::Kind::Ipc) != cri::NamespaceMode::Node,
            ns::Kind::Uts => true,
            ns::Kind::Pid => mode(&self.config, ns::Kind::Pid) == cri::NamespaceMode::Pod,
        };
        pinned.then(|| self.ns_dir.join(kind.name()))
    }

    /// The kinds of namespace pinned when the sandbox is set up (a shared
    /// pid namespace comes later, with its first container: [`ns::pin_pid`]).
    pub fn pinned_kinds(&self) -> Vec<ns::Kind> {
        [ns::Kind::Net, ns::Kind::Ipc, ns::Kind::Uts]
            .into_iter()
            .filter(|k| self.ns_path(*k).is_some())
            .collect()
    }

    /// The pod's sysctls, sorted (checked by [`check_sysctls`]).
    pub fn sysctls(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .config
            .linux
            .as_ref()
            .map(|l| l.sysctls.clone().into_iter().collect())
            .unwrap_or_default();
        v.sort();
        v
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

/// The pod-level mode of namespace `kind` (net, ipc or pid). Without
/// namespace options at all pid is CONTAINER (a pid namespace is pinned
/// only when asked for: its first container becomes its init), net and ipc
/// are POD.
pub fn mode(config: &cri::PodSandboxConfig, kind: ns::Kind) -> cri::NamespaceMode {
    let opts = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let Some(n) = opts else {
        return match kind {
            ns::Kind::Pid => cri::NamespaceMode::Container,
            _ => cri::NamespaceMode::Pod,
        };
    };
    let v = match kind {
        ns::Kind::Net => n.network,
        ns::Kind::Ipc => n.ipc,
        ns::Kind::Pid => n.pid,
        ns::Kind::Uts => return cri::NamespaceMode::Pod,
    };
    cri::NamespaceMode::try_from(v).unwrap_or(cri::NamespaceMode::Pod)
}

/// Refuse sysctls that are not namespaced, or whose namespace is the
/// node's (host network or ipc): the field and key are named, nothing is
/// written.
pub fn check_sysctls(config: &cri::PodSandboxConfig) -> Result<(), (String, String)> {
    let Some(l) = config.linux.as_ref() else {
        return Ok(());
    };
    let host_net = wants_host_network(config);
    let host_ipc = mode(config, ns::Kind::Ipc) == cri::NamespaceMode::Node;
    for (k, v) in &l.sysctls {
        let field = format!("config.linux.sysctls[{k:?}]");
        let ipc = k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.");
        let net = k.starts_with("net.");
        let why = if k.is_empty()
            || k.contains('/')
            || k.split('.').any(|c| c.is_empty() || c == "..")
        {
            Some("not a sysctl name".to_string())
        } else if !(ipc || net) {
            Some("not a namespaced sysctl (only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are)".into())
        } else if net && host_net {
            Some("a net.* sysctl needs the pod's own network namespace, not the node's".into())
        } else if ipc && host_ipc {
            Some("an ipc sysctl needs the pod's own ipc namespace, not the node's".into())
        } else if v.contains('\n') {
            Some("the value has a newline".into())
        } else {
            None
        };
        if let Some(why) = why {
            return Err((field, why));
        }
    }
    Ok(())
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
