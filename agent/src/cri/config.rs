//! Where the CRI service keeps things and which programs it runs.

use std::path::PathBuf;

/// The CRI service's settings (`husklet serve`'s options).
#[derive(Debug, Clone)]
pub struct CriConfig {
    /// The image store root (`--root`, default `/var/lib/husk`).
    pub root: PathBuf,
    /// Volatile state: records, pinned namespaces, shim dirs (`--state`, default `/run/husk`).
    pub state: PathBuf,
    /// The OCI runtime binary (`husk`).
    pub runtime: PathBuf,
    /// The `husk-shim` binary.
    pub shim: PathBuf,
    /// CNI conflists (`--cni-conf-dir`).
    pub cni_conf_dir: PathBuf,
    /// CNI plugin dirs, searched in order (`--cni-bin-dir`).
    pub cni_bin_dirs: Vec<PathBuf>,
}

impl CriConfig {
    /// The runtime's `--root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.state.join("runtime")
    }

    /// Sandbox records and files.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.state.join("sandboxes")
    }

    /// Pinned namespaces.
    pub fn ns_dir(&self) -> PathBuf {
        self.state.join("ns")
    }

    /// Container records, bundles and shim dirs.
    pub fn containers_dir(&self) -> PathBuf {
        self.state.join("containers")
    }

    /// Shim dirs: short paths, as their sockets' paths must fit in
    /// sockaddr_un (108 bytes).
    pub fn shims_dir(&self) -> PathBuf {
        self.state.join("shim")
    }

    /// The shim dir of a container (named by the first 32 hex digits of its id).
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.shims_dir().join(&id[..id.len().min(32)])
    }

    /// Exec sessions.
    pub fn exec_dir(&self) -> PathBuf {
        self.state.join("exec")
    }

    /// The CNI result cache.
    pub fn cni_cache_dir(&self) -> PathBuf {
        self.state.join("cni")
    }
}
