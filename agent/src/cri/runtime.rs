//! [`Cri`]: the in-process CRI service, and its [`RuntimeService`] impl
//! (which hands sandbox and container calls to [`super::pods`] and
//! [`super::container`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_cri::v1 as cri;

use super::config::CriConfig;
use super::container::ContainerRecord;
use super::error::CriError;
use super::record;
use super::service::{CriResult, RuntimeService};
use crate::image::ImageStore;
use crate::sandbox::SandboxRecord;
use crate::sandbox::net::Cni;

/// The CRI service over the image store, sandboxes and husk-shim.
pub struct Cri {
    pub(crate) cfg: Arc<CriConfig>,
    pub(crate) images: ImageStore,
    pub(crate) cni: Cni,
    state: Mutex<State>,
    /// One async lock per sandbox or container id: calls that change an
    /// object (start, stop, remove, create in a sandbox) run one at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Container events for GetContainerEvents.
    pub(crate) events: super::events::Events,
    /// The streaming server behind Exec, Attach and PortForward URLs.
    pub(crate) streaming: std::sync::OnceLock<Arc<crate::stream::server::Server>>,
}

/// What is known in memory; the records on disk are the truth after a restart.
#[derive(Default)]
pub(crate) struct State {
    pub sandboxes: HashMap<String, SandboxRecord>,
    pub containers: HashMap<String, ContainerRecord>,
    /// Reserved names (sandbox and container name keys) → the id holding them.
    pub names: HashMap<String, String>,
}

impl State {
    /// The one id that `id` names: itself, or a unique prefix of one.
    pub fn resolve<'a, V>(
        map: &'a HashMap<String, V>,
        kind: &'static str,
        id: &str,
    ) -> Result<&'a V, CriError> {
        if let Some(v) = map.get(id) {
            return Ok(v);
        }
        let not_found = || CriError::NotFound {
            kind,
            id: id.to_string(),
        };
        if id.is_empty() {
            return Err(not_found());
        }
        let mut hits = map.iter().filter(|(k, _)| k.starts_with(id));
        match (hits.next(), hits.next()) {
            (Some((_, v)), None) => Ok(v),
            (Some(_), Some(_)) => Err(CriError::invalid(
                format!("{kind}_id"),
                format!("{id:?} matches more than one {kind}"),
            )),
            _ => Err(not_found()),
        }
    }

    /// Reserve `key` for `id`, or say who holds it.
    pub fn reserve(&mut self, kind: &'static str, key: &str, id: &str) -> Result<(), CriError> {
        if let Some(holder) = self.names.get(key) {
            return Err(CriError::AlreadyExists {
                kind,
                name: key.to_string(),
                id: holder.clone(),
            });
        }
        self.names.insert(key.to_string(), id.to_string());
        Ok(())
    }
}

impl Cri {
    /// Open the service: create the state dirs and recover every sandbox and
    /// container record left by an earlier husklet.
    pub fn new(cfg: CriConfig, images: ImageStore) -> Result<Self, CriError> {
        for d in [
            cfg.state.clone(),
            cfg.sandboxes_dir(),
            cfg.ns_dir(),
            cfg.containers_dir(),
            cfg.shims_dir(),
            cfg.exec_dir(),
            cfg.runtime_root(),
            cfg.cni_cache_dir(),
        ] {
            std::fs::create_dir_all(&d).map_err(CriError::io("create the state dir", &d))?;
        }
        let cni = Cni::new(
            cfg.cni_conf_dir.clone(),
            cfg.cni_bin_dirs.clone(),
            cfg.cni_cache_dir(),
        );
        let mut state = State::default();
        record::sweep_temp(&cfg.containers_dir());
        // Rootfs dirs a RemoveContainer moved aside (before a crash, too).
        let store = images.clone();
        std::thread::spawn(move || store.empty_trash());
        record::sweep_temp(&cfg.sandboxes_dir());
        // Calls a crash cut short: containers first (they live in sandboxes).
        for mut c in record::load_all::<ContainerRecord>(&cfg.containers_dir()) {
            if c.pending {
                super::recover::roll_back_container(&cfg, &images, &c);
                continue;
            }
            super::recover::complete_start(&cfg, &mut c);
            super::recover::roll_back_launch(&cfg, &images, &mut c);
            state.names.insert(c.name_key.clone(), c.id.clone());
            state.containers.insert(c.id.clone(), c);
        }
        for s in record::load_all::<SandboxRecord>(&cfg.sandboxes_dir()) {
            if s.pending {
                super::recover::roll_back_sandbox(&cfg, &cni, &s);
                continue;
            }
            state
                .names
                .insert(super::pods::name_key(&s.metadata()), s.id.clone());
            state.sandboxes.insert(s.id.clone(), s);
        }
        tracing::info!(
            sandboxes = state.sandboxes.len(),
            containers = state.containers.len(),
            "recovered CRI state"
        );
        // Namespaces pinned by a RunPodSandbox that a crash cut short
        // (no record was written): unpin them.
        if let Ok(rd) = std::fs::read_dir(cfg.ns_dir()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !state.sandboxes.contains_key(&id) {
                    tracing::warn!(sandbox = %id, "unpinning the namespaces of a sandbox without a record");
                    crate::sandbox::ns::unpin(&e.path());
                }
            }
        }
        // Execs of an earlier run can no longer be waited for.
        if let Ok(rd) = std::fs::read_dir(cfg.exec_dir()) {
            for e in rd.flatten() {
                let _ = crate::image::fsutil::remove_tree(&e.path());
            }
        }
        let cri = Cri {
            cfg: Arc::new(cfg),
            images,
            cni,
            state: Mutex::new(state),
            locks: Mutex::default(),
            events: super::events::Events::new(),
            streaming: std::sync::OnceLock::new(),
        };
        cri.watch_running();
        Ok(cri)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &CriConfig {
        &self.cfg
    }

    /// The in-memory state (never held across an await).
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps (every
        // mutation is a single insert or remove), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Cri {
    /// Hold `id`'s lock until the guard is dropped.
    pub(crate) async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    /// Forget `id`'s lock (the object is gone; waiters find no record).
    pub(crate) fn drop_lock(&self, id: &str) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Run blocking work (syscalls, plugins, the shim launch) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, CriError> + Send + 'static,
) -> Result<T, CriError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CriError::internal(what.to_string(), e))?
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, _req: cri::VersionRequest) -> CriResult<cri::VersionResponse> {
        Ok(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "husk".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self, req: cri::StatusRequest) -> CriResult<cri::StatusResponse> {
        let cni = self.cni.clone();
        let net = blocking("load CNI config", move || Ok(cni.default_network())).await?;
        let network = match &net {
            Ok(_) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: super::error::chain(e),
            },
        };
        let mut info = HashMap::new();
        if req.verbose {
            let cfg = serde_json::json!({
                "root": self.cfg.root,
                "state": self.cfg.state,
                "runtime": self.cfg.runtime,
                "shim": self.cfg.shim,
                "cniConfDir": self.cfg.cni_conf_dir,
                "cniBinDirs": self.cfg.cni_bin_dirs,
                "network": net.as_ref().ok().map(|n| n.name.clone()),
            });
            info.insert("config".into(), cfg.to_string());
        }
        Ok(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cri::RuntimeCondition {
                        r#type: "RuntimeReady".into(),
                        status: true,
                        ..Default::default()
                    },
                    network,
                ],
            }),
            info,
            ..Default::default()
        })
    }

    async fn runtime_config(
        &self,
        _req: cri::RuntimeConfigRequest,
    ) -> CriResult<cri::RuntimeConfigResponse> {
        Ok(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    async fn run_pod_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> CriResult<cri::RunPodSandboxResponse> {
        self.run_sandbox(req).await
    }

    async fn stop_pod_sandbox(
        &self,
        req: cri::StopPodSandboxRequest,
    ) -> CriResult<cri::StopPodSandboxResponse> {
        self.stop_sandbox(&req.pod_sandbox_id).await?;
        Ok(cri::StopPodSandboxResponse {})
    }

    async fn remove_pod_sandbox(
        &self,
        req: cri::RemovePodSandboxRequest,
    ) -> CriResult<cri::RemovePodSandboxResponse> {
        self.remove_sandbox(&req.pod_sandbox_id).await?;
        Ok(cri::RemovePodSandboxResponse {})
    }

    async fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> CriResult<cri::PodSandboxStatusResponse> {
        self.sandbox_status(&req.pod_sandbox_id, req.verbose)
    }

    async fn list_pod_sandbox(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> CriResult<cri::ListPodSandboxResponse> {
        Ok(cri::ListPodSandboxResponse {
            items: self.list_sandboxes(req.filter.as_ref()),
        })
    }

    async fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> CriResult<cri::CreateContainerResponse> {
        self.create(req).await
    }

    async fn start_container(
        &self,
        req: cri::StartContainerRequest,
    ) -> CriResult<cri::StartContainerResponse> {
        self.start(&req.container_id).await?;
        Ok(cri::StartContainerResponse {})
    }

    async fn stop_container(
        &self,
        req: cri::StopContainerRequest,
    ) -> CriResult<cri::StopContainerResponse> {
        self.stop(&req.container_id, req.timeout).await?;
        Ok(cri::StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        req: cri::RemoveContainerRequest,
    ) -> CriResult<cri::RemoveContainerResponse> {
        self.remove(&req.container_id).await?;
        Ok(cri::RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        req: cri::ListContainersRequest,
    ) -> CriResult<cri::ListContainersResponse> {
        Ok(cri::ListContainersResponse {
            containers: self.list(req.filter.as_ref()),
        })
    }

    async fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> CriResult<cri::ContainerStatusResponse> {
        self.status_of(&req.container_id, req.verbose)
    }

    async fn container_stats(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> CriResult<cri::ContainerStatsResponse> {
        self.container_stats_of(&req.container_id).await
    }

    async fn list_container_stats(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> CriResult<cri::ListContainerStatsResponse> {
        self.list_container_stats_of(req.filter).await
    }

    async fn pod_sandbox_stats(
        &self,
        req: cri::PodSandboxStatsRequest,
    ) -> CriResult<cri::PodSandboxStatsResponse> {
        let id = self.sandbox_id(&req.pod_sandbox_id)?;
        let stats = self.pod_stats(&id, &HashMap::new()).await?;
        match stats
            .into_iter()
            .find(|s| s.attributes.as_ref().is_some_and(|a| a.id == id))
        {
            Some(s) => Ok(cri::PodSandboxStatsResponse { stats: Some(s) }),
            None => Err(CriError::FailedPrecondition(format!(
                "sandbox {id} is not ready"
            ))),
        }
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: cri::ListPodSandboxStatsRequest,
    ) -> CriResult<cri::ListPodSandboxStatsResponse> {
        let f = req.filter.unwrap_or_default();
        Ok(cri::ListPodSandboxStatsResponse {
            stats: self.pod_stats(&f.id, &f.label_selector).await?,
        })
    }

    async fn reopen_container_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> CriResult<cri::ReopenContainerLogResponse> {
        self.reopen_log(&req.container_id).await?;
        Ok(cri::ReopenContainerLogResponse {})
    }

    async fn update_runtime_config(
        &self,
        req: cri::UpdateRuntimeConfigRequest,
    ) -> CriResult<cri::UpdateRuntimeConfigResponse> {
        // The pod CIDR is the CNI config's business here (host-local ranges);
        // it is only logged.
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(pod_cidr = %cidr, "UpdateRuntimeConfig");
        Ok(cri::UpdateRuntimeConfigResponse {})
    }

    async fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriResult<cri::ExecSyncResponse> {
        self.exec_sync_in(req).await
    }

    async fn update_container_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> CriResult<cri::UpdateContainerResourcesResponse> {
        self.update_resources(req).await?;
        Ok(cri::UpdateContainerResourcesResponse {})
    }

    fn container_events(self: Arc<Self>) -> CriResult<super::events::EventStream> {
        Ok(super::events::stream(self))
    }

    async fn exec(&self, req: cri::ExecRequest) -> CriResult<cri::ExecResponse> {
        self.exec_url(req)
    }

    async fn attach(&self, req: cri::AttachRequest) -> CriResult<cri::AttachResponse> {
        self.attach_url(req)
    }

    async fn port_forward(
        &self,
        req: cri::PortForwardRequest,
    ) -> CriResult<cri::PortForwardResponse> {
        self.port_forward_url(req)
    }
}
