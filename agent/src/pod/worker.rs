//! One pod worker per pod: a task that drives the pod's sandbox and
//! containers towards its spec through the CRI traits, and publishes the
//! pod's status.
//!
//! The worker is a loop of `sync` passes. Each pass reads what the runtime
//! reports, then takes the next step the pod's state allows:
//!
//! ```text
//! Pending ──sandbox──► Initializing ──init done──► Running ──(policy)──► Succeeded | Failed
//!    │                      │                         │
//!    └──────────────────────┴───── removed ───────────┴──► Terminating ──► Gone
//! ```
//!
//! Within a pass, each container is in one of [`Slot`]'s states; restarts
//! wait out kubelet's back-off. Nothing here blocks on a container: a pass
//! returns, and the loop sleeps until the next deadline, a probe result or a
//! spec change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::config::{self, Kind, NodeContext};
use super::events::{EventLog, Timeline};
use super::host::PodHost;
use super::keys;
use super::probing::{ProbeKind, ProbeSet, ProbeUpdate};
use super::status;
use crate::cri::{ImageService, RuntimeService};

/// What the worker is asked to do with its pod.
#[derive(Clone, Debug)]
pub enum Desired {
    /// Run this spec (a new spec for the same UID replaces the old one).
    Run(Arc<Pod>),
    /// Terminate the pod with this grace period, then forget it.
    Remove { grace: Duration },
}

/// The pod-level state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// No sandbox yet (or it is being made).
    Pending,
    /// The sandbox runs; init containers are not all done.
    Initializing,
    /// Init containers are done; app containers run (or restart).
    Running,
    /// Every app container exited and none will restart.
    Succeeded,
    Failed,
    /// Being removed: preStop, stop, sandbox teardown.
    Terminating,
}

impl Stage {
    pub fn is_terminal(self) -> bool {
        matches!(self, Stage::Succeeded | Stage::Failed)
    }
}

/// Where one container of the spec stands.
#[derive(Clone, Debug)]
pub enum Slot {
    /// Not created, or waiting to be (re)created: the reason and message.
    Waiting { reason: String, message: String },
    /// Created and started; `started` is false until the startup probe
    /// passes, `ready` follows the readiness probe.
    Running {
        since: SystemTime,
        started: bool,
        ready: bool,
    },
    /// The current instance exited.
    Exited(Terminated),
}

/// How a container instance ended.
#[derive(Clone, Debug)]
pub struct Terminated {
    pub id: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub started: SystemTime,
    pub finished: SystemTime,
}

/// A container of the spec and its instances.
#[derive(Debug)]
pub struct Track {
    pub name: String,
    pub kind: Kind,
    /// The current instance's CRI id.
    pub id: Option<String>,
    pub image_ref: String,
    /// Restarts so far: the current instance's attempt.
    pub restart_count: u32,
    pub slot: Slot,
    /// The previous instance's end (`lastState`).
    pub last: Option<Terminated>,
    /// Earliest time of the next start, while backing off.
    pub not_before: Option<Instant>,
    /// A successful init container never runs again.
    pub done: bool,
    pub hash: String,
}

/// What the worker publishes after each pass.
#[derive(Clone, Debug)]
pub struct Report {
    pub pod: Arc<Pod>,
    pub stage: Stage,
    pub status: k8s_openapi::api::core::v1::PodStatus,
    pub events: EventLog,
    pub timeline: Timeline,
    /// The sandbox's CRI id, once there is one.
    pub sandbox_id: Option<String>,
    /// Where the pod's container logs are (`<dir>/<container>/<n>.log`).
    pub log_directory: String,
    /// The worker is done: the pod is gone from the node.
    pub gone: bool,
}

/// The worker of one pod.
pub struct Worker {
    pub(super) rt: Arc<dyn RuntimeService>,
    pub(super) images: Arc<dyn ImageService>,
    pub(super) host: Arc<dyn PodHost>,
    pub(super) ctx: Arc<NodeContext>,
    pub(super) pod: Arc<Pod>,
    pub(super) stage: Stage,
    pub(super) sandbox: Option<SandboxInfo>,
    pub(super) tracks: Vec<Track>,
    pub(super) events: EventLog,
    pub(super) timeline: Timeline,
    pub(super) probes: HashMap<String, ProbeSet>,
    pub(super) probe_tx: mpsc::Sender<ProbeUpdate>,
    /// CrashLoopBackOff of this pod's containers.
    pub(super) backoff: Backoff,
    /// ImagePullBackOff per image, and when each may be pulled again.
    pub(super) image_backoff: Backoff,
    pub(super) image_not_before: HashMap<String, Instant>,
    pub(super) runtime_type: String,
    pub(super) start_time: Option<SystemTime>,
    /// Every init container finished and every sidecar started once: from
    /// then on a restarting sidecar no longer holds the app containers
    /// back (nor clears the Initialized condition).
    pub(super) initialized: bool,
}

/// The pod's sandbox as the worker knows it.
#[derive(Clone, Debug)]
pub struct SandboxInfo {
    pub id: String,
    pub ip: String,
    pub ips: Vec<String>,
    pub attempt: u32,
    pub config: cri::PodSandboxConfig,
}

/// How long a pass may sleep when nothing is pending.
const RESYNC: Duration = Duration::from_secs(1);

impl Worker {
    /// A worker for `pod`; run it with [`Worker::run`].
    pub fn new(
        rt: Arc<dyn RuntimeService>,
        images: Arc<dyn ImageService>,
        host: Arc<dyn PodHost>,
        ctx: Arc<NodeContext>,
        pod: Arc<Pod>,
        runtime_type: String,
        probe_tx: mpsc::Sender<ProbeUpdate>,
    ) -> Self {
        let tracks = tracks_of(&pod);
        let mut timeline = Timeline::default();
        Timeline::mark(&mut timeline.accepted);
        Worker {
            rt,
            images,
            host,
            ctx,
            pod,
            stage: Stage::Pending,
            sandbox: None,
            tracks,
            events: EventLog::default(),
            timeline,
            probes: HashMap::new(),
            probe_tx,
            backoff: Backoff::new(),
            image_backoff: Backoff::new(),
            image_not_before: HashMap::new(),
            runtime_type,
            start_time: None,
            initialized: false,
        }
    }

    /// Drive the pod until it is removed, publishing a [`Report`] after
    /// every pass.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Desired>,
        mut probe_rx: mpsc::Receiver<ProbeUpdate>,
        report: watch::Sender<Report>,
    ) {
        self.recover().await;
        loop {
            let want = desired.borrow_and_update().clone();
            match want {
                Desired::Remove { grace } => {
                    self.stage = Stage::Terminating;
                    self.publish(&report, false);
                    self.terminate(grace).await;
                    self.remove_all().await;
                    self.publish(&report, true);
                    return;
                }
                Desired::Run(pod) => {
                    if !Arc::ptr_eq(&pod, &self.pod) {
                        self.update_spec(pod);
                    }
                }
            }
            self.sync().await;
            self.publish(&report, false);
            let wake = self.next_wake();
            tokio::select! {
                r = desired.changed() => {
                    if r.is_err() {
                        // The manager is gone (husklet is exiting): leave
                        // the pod running for the next husklet.
                        self.stop_probes();
                        return;
                    }
                }
                Some(u) = probe_rx.recv() => self.on_probe(u).await,
                _ = tokio::time::sleep(wake) => {}
            }
        }
    }

    fn publish(&mut self, report: &watch::Sender<Report>, gone: bool) {
        let mut status = status::pod_status(self);
        // A condition keeps its transition time while its value holds.
        if let (Some(new), Some(old)) = (&mut status.conditions, &report.borrow().status.conditions)
        {
            for c in new.iter_mut() {
                if let Some(o) = old
                    .iter()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
                {
                    c.last_transition_time = o.last_transition_time.clone();
                }
            }
        }
        if status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            Timeline::mark(&mut self.timeline.ready);
        }
        report.send_replace(Report {
            pod: self.pod.clone(),
            stage: self.stage,
            status,
            events: self.events.clone(),
            timeline: self.timeline.clone(),
            sandbox_id: self.sandbox.as_ref().map(|s| s.id.clone()),
            log_directory: config::log_directory(&self.ctx, &self.pod),
            gone,
        });
    }

    /// How long to sleep: until the nearest back-off ends, at most [`RESYNC`].
    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        self.tracks
            .iter()
            .filter_map(|t| t.not_before)
            .chain(self.image_not_before.values().copied())
            .filter(|at| *at > now)
            .map(|at| at - now)
            .min()
            .unwrap_or(RESYNC)
            .min(RESYNC)
    }

    /// A changed spec: containers whose spec hash changed are restarted
    /// (kubelet's rule for the fields a running pod may change).
    fn update_spec(&mut self, pod: Arc<Pod>) {
        let fresh = tracks_of(&pod);
        for t in &mut self.tracks {
            if let Some(n) = fresh.iter().find(|n| n.name == t.name) {
                if n.hash != t.hash {
                    self.events.normal(
                        "Killing",
                        &field_path(t.kind, &t.name),
                        format!("Container {} definition changed, will be restarted", t.name),
                    );
                    t.hash = n.hash.clone();
                    t.done = false;
                    if let Slot::Running { .. } = t.slot {
                        t.slot = Slot::Waiting {
                            reason: "SpecChanged".into(),
                            message: String::new(),
                        };
                    }
                }
            }
        }
        self.pod = pod;
    }

    /// One pass: observe, then act on what the stage allows.
    async fn sync(&mut self) {
        if self.stage.is_terminal() {
            return;
        }
        if !self.ensure_sandbox().await {
            return;
        }
        self.observe().await;
        if let Err(e) = self.host.setup_pod(&self.pod).await {
            // Volumes that were made stay; a failed refresh is reported.
            self.events
                .warning(e.reason, "", format!("refresh volumes: {}", e.message));
        }
        if !self.run_init_containers().await {
            return;
        }
        self.stage = Stage::Running;
        self.run_app_containers().await;
        self.decide_terminal().await;
    }

    /// Runs init containers in order; true once all are done (sidecars
    /// started), so the app containers may start.
    async fn run_init_containers(&mut self) -> bool {
        if self.initialized {
            self.restart_sidecars().await;
            return true;
        }
        let policy = restart_policy(&self.pod).to_string();
        for i in 0..self.tracks.len() {
            let kind = self.tracks[i].kind;
            if kind == Kind::App {
                break;
            }
            let t = &self.tracks[i];
            match (&t.slot, kind) {
                (_, Kind::Init) if t.done => continue,
                (Slot::Running { started, .. }, Kind::Sidecar) if *started => continue,
                (Slot::Running { .. }, _) => {
                    self.stage = Stage::Initializing;
                    return false;
                }
                (Slot::Exited(x), Kind::Init) if x.exit_code == 0 => {
                    self.tracks[i].done = true;
                    continue;
                }
                (Slot::Exited(_), Kind::Init) if policy == "Never" => {
                    self.stage = Stage::Failed;
                    self.events.warning(
                        "Failed",
                        &field_path(kind, &t.name),
                        format!(
                            "init container {} failed and restartPolicy is Never",
                            t.name
                        ),
                    );
                    self.stop_remaining().await;
                    return false;
                }
                _ => {}
            }
            self.stage = Stage::Initializing;
            self.start_or_back_off(i).await;
            if kind == Kind::Init || !self.is_started(i) {
                return false;
            }
        }
        if self
            .tracks
            .iter()
            .all(|t| t.kind == Kind::App || t.done || self.is_sidecar_up(t))
        {
            self.initialized = true;
            return true;
        }
        false
    }

    /// After initialization: restart exited sidecars (restartPolicy Always
    /// whatever the pod's), leaving the app containers alone.
    async fn restart_sidecars(&mut self) {
        for i in 0..self.tracks.len() {
            if self.tracks[i].kind == Kind::Sidecar
                && !matches!(self.tracks[i].slot, Slot::Running { .. })
            {
                self.start_or_back_off(i).await;
            }
        }
    }

    fn is_started(&self, i: usize) -> bool {
        matches!(self.tracks[i].slot, Slot::Running { started: true, .. })
    }

    fn is_sidecar_up(&self, t: &Track) -> bool {
        t.kind == Kind::Sidecar && matches!(t.slot, Slot::Running { started: true, .. })
    }

    /// Start app containers that never ran, restart exited ones per policy.
    async fn run_app_containers(&mut self) {
        let policy = restart_policy(&self.pod).to_string();
        for i in 0..self.tracks.len() {
            if self.tracks[i].kind != Kind::App {
                continue;
            }
            let restart = match &self.tracks[i].slot {
                Slot::Running { .. } => false,
                Slot::Waiting { .. } => true,
                Slot::Exited(x) => match policy.as_str() {
                    "Always" => true,
                    "OnFailure" => x.exit_code != 0,
                    _ => false,
                },
            };
            if restart {
                self.start_or_back_off(i).await;
            }
        }
        if self
            .tracks
            .iter()
            .filter(|t| t.kind == Kind::App)
            .all(|t| matches!(t.slot, Slot::Running { .. }))
        {
            Timeline::mark(&mut self.timeline.started);
        }
    }

    /// With restartPolicy Never or OnFailure, the pod ends once every app
    /// container has exited for good; its sidecars and sandbox are stopped.
    async fn decide_terminal(&mut self) {
        if let Some(stage) = self.terminal_verdict() {
            self.stage = stage;
            self.stop_remaining().await;
        }
    }

    /// Succeeded or Failed if no app container runs or will run again.
    pub(super) fn terminal_verdict(&self) -> Option<Stage> {
        let policy = restart_policy(&self.pod);
        if policy == "Always" {
            return None;
        }
        let mut failed = false;
        for t in self.tracks.iter().filter(|t| t.kind == Kind::App) {
            match &t.slot {
                Slot::Exited(x) if x.exit_code == 0 => {}
                Slot::Exited(_) if policy == "Never" => failed = true,
                _ => return None,
            }
        }
        Some(if failed {
            Stage::Failed
        } else {
            Stage::Succeeded
        })
    }

    /// Stop what still runs (sidecars) and the sandbox of a finished pod;
    /// statuses stay.
    async fn stop_remaining(&mut self) {
        let grace = grace_period(&self.pod);
        self.terminate(grace).await;
    }

    /// The sandbox; made when missing. False if there is none yet.
    async fn ensure_sandbox(&mut self) -> bool {
        if let Some(sb) = &self.sandbox {
            let ready = self
                .rt
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: sb.id.clone(),
                    verbose: false,
                })
                .await
                .ok()
                .and_then(|r| r.status)
                .map(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
            if ready == Some(true) {
                return true;
            }
            // The sandbox died under the pod (a reboot, a runtime
            // restart): kubelet kills the pod's containers and makes a new
            // sandbox with the next attempt.
            self.events.normal(
                "SandboxChanged",
                "",
                "Pod sandbox changed, it will be killed and re-created.".into(),
            );
            self.kill_all_containers().await;
            let old = self.sandbox.take();
            if let Some(old) = &old {
                let _ = self
                    .rt
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: old.id.clone(),
                    })
                    .await;
            }
            return self.make_sandbox(old.map_or(0, |o| o.attempt + 1)).await;
        }
        self.make_sandbox(0).await
    }

    async fn make_sandbox(&mut self, attempt: u32) -> bool {
        self.stage = Stage::Pending;
        if let Err(e) = self.host.setup_pod(&self.pod).await {
            self.events.warning(e.reason, "", e.message);
            return false;
        }
        Timeline::mark(&mut self.timeline.volumes);
        let cgroup_parent = match self.host.cgroup_parent(&self.pod).await {
            Ok(p) => p,
            Err(e) => {
                self.events.warning(e.reason, "", e.message);
                return false;
            }
        };
        let config = config::sandbox_config(&self.ctx, &self.pod, attempt, cgroup_parent);
        let id = match self
            .rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
        {
            Ok(r) => r.pod_sandbox_id,
            Err(e) => {
                self.events.warning(
                    "FailedCreatePodSandBox",
                    "",
                    format!(
                        "Failed to create pod sandbox: {}",
                        crate::cri::error::chain(&e)
                    ),
                );
                return false;
            }
        };
        let (ip, ips) = self.sandbox_ips(&id).await;
        Timeline::mark(&mut self.timeline.sandbox);
        self.start_time.get_or_insert_with(SystemTime::now);
        self.sandbox = Some(SandboxInfo {
            id,
            ip,
            ips,
            attempt,
            config,
        });
        true
    }

    pub(super) async fn sandbox_ips(&self, id: &str) -> (String, Vec<String>) {
        let st = self
            .rt
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.status);
        let net = st.and_then(|s| s.network).unwrap_or_default();
        let mut ips = vec![net.ip.clone()];
        ips.extend(net.additional_ips.into_iter().map(|i| i.ip));
        ips.retain(|i| !i.is_empty());
        (net.ip, ips)
    }

    /// A probe result: readiness and startup change the slot; a liveness
    /// or startup failure kills the container (it restarts per policy).
    async fn on_probe(&mut self, u: ProbeUpdate) {
        let Some(i) = self
            .tracks
            .iter()
            .position(|t| t.id.as_deref() == Some(u.container_id.as_str()))
        else {
            return;
        };
        let name = self.tracks[i].name.clone();
        let fp = field_path(self.tracks[i].kind, &name);
        match (u.kind, u.healthy) {
            (ProbeKind::Readiness, ready) => {
                if let Slot::Running { ready: r, .. } = &mut self.tracks[i].slot {
                    if *r && !ready {
                        self.events.warning(
                            "Unhealthy",
                            &fp,
                            format!("Readiness probe failed: {}", u.message),
                        );
                    }
                    *r = ready;
                }
            }
            (ProbeKind::Startup, true) => {
                if let Slot::Running { started, .. } = &mut self.tracks[i].slot {
                    *started = true;
                }
                if let Some(p) = self.probes.get_mut(&u.container_id) {
                    p.startup_passed();
                }
            }
            (kind, false) => {
                let what = if kind == ProbeKind::Liveness {
                    "Liveness"
                } else {
                    "Startup"
                };
                self.events.warning(
                    "Unhealthy",
                    &fp,
                    format!("{what} probe failed: {}", u.message),
                );
                self.events.normal(
                    "Killing",
                    &fp,
                    format!(
                        "Container {name} failed {} probe, will be restarted",
                        what.to_lowercase()
                    ),
                );
                self.kill_container(i, grace_period(&self.pod)).await;
            }
            (ProbeKind::Liveness, true) => {}
        }
    }
}

/// The tracks of a spec: init containers (and sidecars) in order, then apps.
pub(super) fn tracks_of(pod: &Pod) -> Vec<Track> {
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec
        .init_containers
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let kind = if c.restart_policy.as_deref() == Some("Always") {
                Kind::Sidecar
            } else {
                Kind::Init
            };
            (c, kind)
        });
    let apps = spec.containers.into_iter().map(|c| (c, Kind::App));
    init.chain(apps)
        .map(|(c, kind)| Track {
            name: c.name.clone(),
            kind,
            id: None,
            image_ref: String::new(),
            restart_count: 0,
            slot: Slot::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            not_before: None,
            done: false,
            hash: container_hash(&c),
        })
        .collect()
}

/// A stable hash of a container's spec (FNV-1a of its JSON).
pub(super) fn container_hash(c: &Container) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:x}")
}

/// The pod's restartPolicy (defaulted: Always).
pub(super) fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The pod's terminationGracePeriodSeconds (defaulted: 30 s).
pub(super) fn grace_period(pod: &Pod) -> Duration {
    let s = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(s.max(0) as u64)
}

/// `spec.containers{name}` / `spec.initContainers{name}`, as kubelet's events name them.
pub(super) fn field_path(kind: Kind, name: &str) -> String {
    match kind {
        Kind::App => format!("spec.containers{{{name}}}"),
        _ => format!("spec.initContainers{{{name}}}"),
    }
}

/// The spec of a track's container.
pub(super) fn container_spec<'a>(pod: &'a Pod, t: &Track) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    match t.kind {
        Kind::App => spec.containers.iter().find(|c| c.name == t.name),
        _ => spec
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == t.name),
    }
}

/// The pod's UID (set by defaulting for every pod a worker gets).
pub(super) fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// The label filter for one pod's sandboxes and containers.
pub(super) fn uid_selector(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([(keys::POD_UID.to_string(), pod_uid(pod).to_string())])
}
