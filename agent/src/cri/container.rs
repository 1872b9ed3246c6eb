//! Container RPCs: create, start, stop, remove, status, list. A container's
//! live state is read from its shim dir, so a restarted husklet sees what
//! happened while it was away.
//!
//! The work is split as containerd splits it: CreateContainer records the
//! container and checks its spec (the user is looked up in the image's
//! layers); StartContainer mounts the rootfs, writes the bundle and launches
//! husk-shim, which runs `husk create` and `start`. When the container
//! exits, its shim deletes it and unmounts the rootfs (`--release`), so
//! RemoveContainer only moves files aside.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use husk_shim::{ExitRecord, layout};
use k8s_cri::v1 as cri;
use serde::{Deserialize, Serialize};

use super::error::CriError;
use super::filter;
use super::limits;
use super::record;
use super::runtime::{Cri, State, blocking};
use super::spec;

/// What husklet keeps of a container (`<state>/containers/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: cri::ContainerConfig,
    /// The image id (`sha256:…`).
    pub image_id: String,
    /// The image as the request named it.
    pub image_ref: String,
    /// The reserved name key.
    pub name_key: String,
    /// Nanoseconds since the epoch; `started_at` 0 until started.
    pub created_at: i64,
    pub started_at: i64,
    /// The CRI log file (absolute).
    pub log_path: String,
    /// The bundle (config.json) and the shim's dir.
    pub bundle: PathBuf,
    pub shim_dir: PathBuf,
    /// The process's uid, gid and groups as resolved at create.
    #[serde(default)]
    pub user: Option<cri::LinuxContainerUser>,
    /// Set while CreateContainer runs: a record still pending after a
    /// crash is rolled back on start (see `super::recover`).
    #[serde(default)]
    pub pending: bool,
    /// StartContainer has mounted the rootfs and launched the shim (set
    /// before it does, so that a crash midway leaves a container that
    /// RemoveContainer cleans up). Records from before the split were
    /// launched at create.
    #[serde(default = "launched_before_the_split")]
    pub launched: bool,
}

fn launched_before_the_split() -> bool {
    true
}

/// A container's state as its shim dir tells it.
#[derive(Debug, Clone)]
pub enum Live {
    Created,
    Running,
    Exited(ExitRecord),
    /// The shim is gone without recording an exit (or never got going).
    Unknown,
}

impl ContainerRecord {
    /// Read the shim dir.
    pub fn live(&self) -> Live {
        if !self.launched {
            return Live::Created;
        }
        if let Ok(Some(e)) = husk_shim::client::read_exit(&self.shim_dir) {
            return Live::Exited(e);
        }
        let shim_pid = std::fs::read_to_string(self.shim_dir.join(layout::SHIM_PID))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let alive = shim_pid
            .is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
        // The shim writes exit.json before it exits: look again so an exit
        // between the two reads is not taken for a lost shim.
        if !alive {
            if let Ok(Some(e)) = husk_shim::client::read_exit(&self.shim_dir) {
                return Live::Exited(e);
            }
            return Live::Unknown;
        }
        if self.started_at == 0 {
            Live::Created
        } else {
            Live::Running
        }
    }

    fn cri_state(live: &Live) -> cri::ContainerState {
        match live {
            Live::Created => cri::ContainerState::ContainerCreated,
            Live::Running => cri::ContainerState::ContainerRunning,
            Live::Exited(_) => cri::ContainerState::ContainerExited,
            Live::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }

    fn metadata(&self) -> cri::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }
}

/// Check what CreateContainer needs before anything is changed.
fn validate(req: &cri::CreateContainerRequest) -> Result<&cri::ContainerConfig, CriError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(CriError::invalid("pod_sandbox_id", "must not be empty"));
    }
    let config = req
        .config
        .as_ref()
        .ok_or_else(|| CriError::invalid("config", "missing"))?;
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("config.metadata", "missing"))?;
    if md.name.is_empty() {
        return Err(CriError::invalid(
            "config.metadata.name",
            "must not be empty",
        ));
    }
    let image = config
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .unwrap_or("");
    if image.is_empty() {
        return Err(CriError::invalid("config.image.image", "must not be empty"));
    }
    if config.log_path.starts_with('/') || config.log_path.split('/').any(|c| c == "..") {
        return Err(CriError::invalid(
            "config.log_path",
            "must be relative to the sandbox's log_directory, without ..",
        ));
    }
    limits::check_labels("config.labels", &config.labels)?;
    limits::check_annotations("config.annotations", &config.annotations)?;
    for (i, m) in config.mounts.iter().enumerate() {
        if !m.container_path.starts_with('/') {
            return Err(CriError::invalid(
                format!("config.mounts[{i}].container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if !m.host_path.starts_with('/') {
            return Err(CriError::invalid(
                format!("config.mounts[{i}].host_path"),
                format!("{:?} is not an absolute path", m.host_path),
            ));
        }
        if std::fs::symlink_metadata(&m.host_path).is_err() {
            return Err(CriError::invalid(
                format!("config.mounts[{i}].host_path"),
                format!("{:?} does not exist", m.host_path),
            ));
        }
    }
    Ok(config)
}

impl Cri {
    pub(crate) fn container(&self, id: &str) -> Result<ContainerRecord, CriError> {
        let st = self.state();
        State::resolve(&st.containers, "container", id).cloned()
    }

    pub(crate) async fn create(
        &self,
        req: cri::CreateContainerRequest,
    ) -> Result<cri::CreateContainerResponse, CriError> {
        let config = validate(&req)?.clone();
        let sandbox = {
            let st = self.state();
            State::resolve(&st.sandboxes, "sandbox", &req.pod_sandbox_id)
                .map_err(|_| CriError::NotFound {
                    kind: "sandbox (pod_sandbox_id)",
                    id: req.pod_sandbox_id.clone(),
                })?
                .clone()
        };
        // A sandbox being stopped or removed takes no new containers meanwhile.
        let _sandbox_lock = self.lock(&sandbox.id).await;
        let sandbox = match self.state().sandboxes.get(&sandbox.id) {
            Some(s) => s.clone(),
            None => {
                return Err(CriError::NotFound {
                    kind: "sandbox (pod_sandbox_id)",
                    id: req.pod_sandbox_id.clone(),
                });
            }
        };
        if !sandbox.ready {
            return Err(CriError::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sandbox.id
            )));
        }
        let image_ref = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let store = self.images.clone();
        let r = image_ref.clone();
        let details = blocking("inspect the image", move || Ok(store.inspect(&r)?))
            .await
            .map_err(|e| match e {
                CriError::Image(crate::image::ImageError::NotFound(_)) => CriError::NotFound {
                    kind: "image (config.image.image)",
                    id: image_ref.clone(),
                },
                e => e,
            })?;
        let target_pid_ns = self.target_pid_ns(&config)?;
        let md = config.metadata.clone().unwrap_or_default();
        let pmd = sandbox.metadata();
        let key = format!(
            "{}_{}_{}_{}_{}",
            md.name, pmd.name, pmd.namespace, pmd.uid, md.attempt
        );
        let id = record::new_id();
        self.state().reserve("container", &key, &id)?;
        let dir = self.cfg.containers_dir().join(&id);
        let log_path = if sandbox.config.log_directory.is_empty() || config.log_path.is_empty() {
            dir.join("container.log")
        } else {
            Path::new(&sandbox.config.log_directory).join(&config.log_path)
        };
        let mut rec = ContainerRecord {
            user: None,
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            image_id: details.record.id.to_string(),
            image_ref,
            name_key: key.clone(),
            created_at: record::now_ns(),
            started_at: 0,
            log_path: log_path.to_string_lossy().into_owned(),
            bundle: dir.join("bundle"),
            shim_dir: self.cfg.shim_dir(&id),
            config,
            pending: true,
            launched: false,
        };
        let (cfg, store, mut r, sb) = (self.cfg.clone(), self.images.clone(), rec.clone(), sandbox);
        let made = blocking("create the container", move || {
            let res = (|| {
                // Pending first: a crash from here on is rolled back on restart.
                record::save(&cfg.containers_dir(), &r.id, &r)?;
                // The spec is built now to report a bad config here; start
                // builds it again (the namespaces it joins may have changed).
                let accounts = spec::Accounts::of_image(&store, &r.image_id)?;
                let spec = spec::build(&spec::Inputs {
                    id: &r.id,
                    config: &r.config,
                    image: &details.config,
                    sandbox: &sb,
                    rootfs: &store.rootfs_path(&r.id),
                    accounts: &accounts,
                    target_pid_ns,
                })?;
                r.user = spec_user(&spec);
                if let Some(d) = Path::new(&r.log_path).parent() {
                    std::fs::create_dir_all(d).map_err(CriError::io("create the log dir", d))?;
                }
                r.pending = false;
                record::save(&cfg.containers_dir(), &r.id, &r)?;
                Ok(r.user.clone())
            })();
            if res.is_err() {
                let _ = record::remove(&cfg.containers_dir(), &r.id);
            }
            res
        })
        .await;
        match made {
            Ok(user) => {
                tracing::info!(container = %id, "container created");
                rec.user = user;
                rec.pending = false;
                let sandbox_id = rec.sandbox_id.clone();
                self.state().containers.insert(id.clone(), rec);
                self.emit(
                    &id,
                    &sandbox_id,
                    cri::ContainerEventType::ContainerCreatedEvent,
                );
                Ok(cri::CreateContainerResponse { container_id: id })
            }
            Err(e) => {
                self.state().names.remove(&key);
                Err(e)
            }
        }
    }

    /// Mount the rootfs, write the bundle and launch the shim (`husk
    /// create`): the first half of StartContainer. On failure everything
    /// is undone and the container stays created.
    async fn launch(&self, rec: &mut ContainerRecord) -> Result<(), CriError> {
        let sandbox = self
            .state()
            .sandboxes
            .get(&rec.sandbox_id)
            .cloned()
            .ok_or_else(|| {
                CriError::FailedPrecondition(format!(
                    "container {}: its sandbox {} is gone",
                    rec.id, rec.sandbox_id
                ))
            })?;
        let target_pid_ns = self.target_pid_ns(&rec.config)?;
        // A pod sharing its pid namespace: join the pinned one while its
        // init lives, else this container starts (and pins) a fresh one.
        let pin_pid_ns = self
            .pod_pid_ns(&rec.config, &sandbox)
            .then(|| sandbox.ns_dir.clone());
        rec.launched = true;
        record::save(&self.cfg.containers_dir(), &rec.id, &*rec)?;
        let (cfg, store, r) = (self.cfg.clone(), self.images.clone(), rec.clone());
        let launched = blocking("start the container", move || {
            let res = (|| {
                let details = store.inspect(&r.image_id)?;
                let accounts = spec::Accounts::of_image(&store, &r.image_id)?;
                let rootfs = store.prepare_rootfs(&r.image_id, &r.id)?;
                let spec = spec::build(&spec::Inputs {
                    id: &r.id,
                    config: &r.config,
                    image: &details.config,
                    sandbox: &sandbox,
                    rootfs: &rootfs.rootfs,
                    accounts: &accounts,
                    target_pid_ns,
                })?;
                std::fs::create_dir_all(&r.bundle)
                    .map_err(CriError::io("create the bundle", &r.bundle))?;
                let path = r.bundle.join("config.json");
                let data = serde_json::to_vec(&spec)
                    .map_err(|e| CriError::internal("encode config.json", e))?;
                crate::image::fsutil::write_atomic(&path, &data)
                    .map_err(CriError::io("write config.json", &path))?;
                let pid = husk_shim::launch(&husk_shim::LaunchConfig {
                    shim: cfg.shim.clone(),
                    runtime: cfg.runtime.clone(),
                    root: cfg.runtime_root(),
                    id: r.id.clone(),
                    bundle: r.bundle.clone(),
                    dir: r.shim_dir.clone(),
                    log_path: PathBuf::from(&r.log_path),
                    stdin: r.config.stdin,
                    exec: None,
                    release: Some(rootfs.rootfs.clone()),
                })
                .map_err(|e| {
                    CriError::internal(format!("container {}: start husk-shim", r.id), e)
                })?;
                Ok((pid, spec_user(&spec)))
            })();
            if res.is_err() {
                // The shim leaves nothing behind when it fails.
                let _ = store.remove_rootfs(&r.id);
                let _ = crate::image::fsutil::remove_tree(&cfg.containers_dir().join(&r.id));
                let _ = crate::image::fsutil::remove_tree(&r.shim_dir);
            }
            res
        })
        .await;
        let (pid, user) = match launched {
            Ok(x) => x,
            Err(e) => {
                rec.launched = false;
                if let Err(e) = record::save(&self.cfg.containers_dir(), &rec.id, &*rec) {
                    tracing::warn!(container = %rec.id, error = %super::error::chain(&e), "save the record");
                }
                return Err(e);
            }
        };
        tracing::debug!(container = %rec.id, pid, "husk-shim launched");
        rec.user = user;
        if let Some(dir) = pin_pid_ns {
            let (cid, dir2) = (rec.id.clone(), dir.clone());
            if let Err(e) = blocking("pin the pid namespace", move || {
                crate::sandbox::ns::pin_pid(&dir2, pid, &cid).map_err(|e| {
                    CriError::internal(format!("container {cid}: pin its pid namespace"), e)
                })
            })
            .await
            {
                // The container runs; the pod's next containers get a pid
                // namespace of their own instead.
                tracing::warn!(container = %rec.id, error = %super::error::chain(&e), "pod pid namespace not shared");
            }
        }
        Ok(())
    }

    pub(crate) async fn start(&self, id: &str) -> Result<(), CriError> {
        let full = self.container(id)?.id;
        let _lock = self.lock(&full).await;
        let mut rec = self.container(&full)?;
        match rec.live() {
            Live::Created => {}
            other => {
                return Err(CriError::FailedPrecondition(format!(
                    "container {} is {:?}, not created",
                    rec.id,
                    ContainerRecord::cri_state(&other)
                )));
            }
        }
        if !rec.launched {
            self.launch(&mut rec).await?;
        }
        let dir = rec.shim_dir.clone();
        let cid = rec.id.clone();
        blocking("start the container", move || {
            husk_shim::Ctl::connect(&dir)
                .map_err(|e| {
                    CriError::internal(format!("container {cid}: connect to husk-shim"), e)
                })?
                .start()
                .map_err(|e| CriError::internal(format!("container {cid}: start"), e))
        })
        .await?;
        rec.started_at = record::now_ns();
        record::save(&self.cfg.containers_dir(), &rec.id, &rec)?;
        let (cid, sandbox_id, dir) = (rec.id.clone(), rec.sandbox_id.clone(), rec.shim_dir.clone());
        self.state().containers.insert(rec.id.clone(), rec);
        self.emit(
            &cid,
            &sandbox_id,
            cri::ContainerEventType::ContainerStartedEvent,
        );
        self.events.watch_exit(&cid, &sandbox_id, dir);
        Ok(())
    }

    /// Have the shim reopen the log file (after a rotator renamed it).
    pub(crate) async fn reopen_log(&self, id: &str) -> Result<(), CriError> {
        let rec = self.container(id)?;
        if !matches!(rec.live(), Live::Running) {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let (dir, cid) = (rec.shim_dir.clone(), rec.id.clone());
        blocking("reopen the log", move || {
            husk_shim::Ctl::connect(&dir)
                .map_err(|e| {
                    CriError::internal(format!("container {cid}: connect to husk-shim"), e)
                })?
                .reopen_log()
                .map_err(|e| CriError::internal(format!("container {cid}: reopen the log"), e))
        })
        .await
    }

    /// Stop: the stop signal, then SIGKILL after `timeout` seconds.
    pub(crate) async fn stop(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        let full = self.container(id)?.id;
        let _lock = self.lock(&full).await;
        match self.container(&full) {
            Ok(rec) => self.stop_locked(&rec, timeout).await,
            // Removed while we waited.
            Err(CriError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Stop with the container's lock held.
    async fn stop_locked(&self, rec: &ContainerRecord, timeout: i64) -> Result<(), CriError> {
        if !rec.launched || matches!(rec.live(), Live::Exited(_) | Live::Unknown) {
            return Ok(());
        }
        if timeout > 0 {
            let sig = self
                .images
                .inspect(&rec.image_id)
                .ok()
                .and_then(|d| d.config.stop_signal)
                .unwrap_or_else(|| "SIGTERM".into());
            self.kill(rec, &sig).await;
            if wait_exit(rec, Duration::from_secs(timeout as u64)).await {
                return Ok(());
            }
        }
        self.kill(rec, "SIGKILL").await;
        if wait_exit(rec, Duration::from_secs(10)).await {
            return Ok(());
        }
        Err(CriError::DeadlineExceeded(format!(
            "container {}: still running 10 s after SIGKILL",
            rec.id
        )))
    }

    async fn kill(&self, rec: &ContainerRecord, sig: &str) {
        let out = tokio::process::Command::new(&self.cfg.runtime)
            .arg("--root")
            .arg(self.cfg.runtime_root())
            .args(["kill", &rec.id, sig])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {}
            // Exited meanwhile: the wait that follows sees exit.json.
            Ok(o) => {
                tracing::debug!(container = %rec.id, sig, stderr = %String::from_utf8_lossy(&o.stderr), "husk kill")
            }
            Err(e) => tracing::warn!(container = %rec.id, error = %e, "run husk kill"),
        }
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), CriError> {
        let rec = match self.container(id) {
            Ok(r) => r,
            // Removed already: RemoveContainer is idempotent.
            Err(CriError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lock = self.lock(&rec.id).await;
        let rec = match self.container(&rec.id) {
            Ok(r) => r,
            // Removed while we waited.
            Err(CriError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_locked(&rec, 0).await?;
        // Released by its shim at exit (the usual case): nothing to delete.
        let released = matches!(rec.live(), Live::Exited(e) if e.released);
        if rec.launched && !released {
            self.husk_delete(&rec.id).await?;
        }
        let (store, cfg, cid) = (self.images.clone(), self.cfg.clone(), rec.id.clone());
        blocking("remove the container", move || {
            match store.discard_rootfs(&cid) {
                Ok(()) | Err(crate::image::ImageError::NoRootfs(_)) => {}
                Err(e) => return Err(e.into()),
            }
            for dir in [cfg.containers_dir().join(&cid), cfg.shim_dir(&cid)] {
                match crate::image::fsutil::remove_tree(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(CriError::io("remove the container dir", &dir)(e)),
                }
            }
            record::remove(&cfg.containers_dir(), &cid)
        })
        .await?;
        let store = self.images.clone();
        tokio::task::spawn_blocking(move || store.empty_trash());
        {
            let mut st = self.state();
            st.containers.remove(&rec.id);
            st.names.remove(&rec.name_key);
        }
        self.drop_lock(&rec.id);
        tracing::info!(container = %rec.id, "container removed");
        self.events.settle(&rec.id).await;
        self.emit(
            &rec.id,
            &rec.sandbox_id,
            cri::ContainerEventType::ContainerDeletedEvent,
        );
        Ok(())
    }

    /// `husk delete --force`: the container's processes, cgroup and state.
    async fn husk_delete(&self, id: &str) -> Result<(), CriError> {
        let out = tokio::process::Command::new(&self.cfg.runtime)
            .arg("--root")
            .arg(self.cfg.runtime_root())
            .args(["delete", "--force", id])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| CriError::internal(format!("container {id}: run husk delete"), e))?;
        if !out.status.success() {
            return Err(CriError::internal(
                format!("container {id}: husk delete"),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    pub(crate) fn list(&self, f: Option<&cri::ContainerFilter>) -> Vec<cri::Container> {
        let recs: Vec<ContainerRecord> = self.state().containers.values().cloned().collect();
        let mut out: Vec<cri::Container> = recs
            .iter()
            .filter_map(|c| {
                let state = ContainerRecord::cri_state(&c.live());
                if let Some(f) = f {
                    let keep = filter::id_matches(&c.id, &f.id)
                        && filter::id_matches(&c.sandbox_id, &f.pod_sandbox_id)
                        && f.state.as_ref().is_none_or(|s| s.state == state as i32)
                        && filter::labels_match(&c.config.labels, &f.label_selector);
                    if !keep {
                        return None;
                    }
                }
                Some(cri::Container {
                    id: c.id.clone(),
                    pod_sandbox_id: c.sandbox_id.clone(),
                    metadata: c.config.metadata.clone(),
                    image: Some(cri::ImageSpec {
                        image: c.image_id.clone(),
                        ..Default::default()
                    }),
                    image_ref: c.image_id.clone(),
                    state: state as i32,
                    created_at: c.created_at,
                    labels: c.config.labels.clone(),
                    annotations: c.config.annotations.clone(),
                    image_id: c.image_id.clone(),
                })
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        out
    }

    pub(crate) fn status_of(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse, CriError> {
        let c = self.container(id)?;
        let live = c.live();
        let (exit_code, finished_at, reason) = match &live {
            Live::Exited(e) => (
                e.exit_code,
                chrono::DateTime::parse_from_rfc3339(&e.finished_at)
                    .ok()
                    .and_then(|t| t.timestamp_nanos_opt())
                    .unwrap_or(0),
                if e.oom_killed {
                    "OOMKilled"
                } else if e.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                },
            ),
            Live::Unknown => (255, 0, "Unknown"),
            _ => (0, 0, ""),
        };
        let status = cri::ContainerStatus {
            id: c.id.clone(),
            metadata: Some(c.metadata()),
            state: ContainerRecord::cri_state(&live) as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at,
            exit_code,
            image: Some(cri::ImageSpec {
                image: c.image_ref.clone(),
                ..Default::default()
            }),
            image_ref: c.image_id.clone(),
            reason: reason.into(),
            message: String::new(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c.log_path.clone(),
            resources: c
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|r| cri::ContainerResources {
                    linux: Some(r),
                    windows: None,
                }),
            image_id: c.image_id.clone(),
            user: c
                .user
                .clone()
                .map(|u| cri::ContainerUser { linux: Some(u) }),
        };
        let mut info = HashMap::new();
        if verbose {
            let pid = std::fs::read_to_string(c.shim_dir.join(layout::PID))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok());
            let v = serde_json::json!({
                "sandboxID": c.sandbox_id,
                "pid": pid,
                "bundle": c.bundle,
                "shimDir": c.shim_dir,
                "config": c.config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(cri::ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }
}

/// The user of a built config.json, for ContainerStatus.
fn spec_user(spec: &serde_json::Value) -> Option<cri::LinuxContainerUser> {
    let u = &spec["process"]["user"];
    Some(cri::LinuxContainerUser {
        uid: u["uid"].as_i64()?,
        gid: u["gid"].as_i64()?,
        supplemental_groups: u["additionalGids"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.as_i64()).collect())
            .unwrap_or_default(),
    })
}

/// Wait up to `limit` for the shim to record the exit.
async fn wait_exit(rec: &ContainerRecord, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    // A killed container is usually reaped within a few ms: look again
    // soon, then back off to every 20 ms.
    let mut pause = Duration::from_millis(1);
    loop {
        if matches!(rec.live(), Live::Exited(_) | Live::Unknown) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
