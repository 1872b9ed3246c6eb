//! What a pod worker does to containers: observe them, pull their images,
//! create and start them (with postStart), kill them (with preStop), and
//! find them again after a restart.

use std::time::{Duration, Instant, SystemTime};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Container;

use super::backoff;
use super::config::{self, Kind};
use super::events::Timeline;
use super::keys;
use super::probe::Target;
use super::probing::{ProbeSet, ProbeTarget};
use super::worker::{
    SandboxInfo, Slot, Terminated, Worker, container_spec, field_path, grace_period, pod_uid,
    uid_selector,
};
use super::{hook, termination};
use crate::cri::CriError;

fn time_of(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

impl Worker {
    /// Read each current instance's state from the runtime.
    pub(super) async fn observe(&mut self) {
        for i in 0..self.tracks.len() {
            let Some(id) = self.tracks[i].id.clone() else {
                continue;
            };
            let st = match self
                .rt
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
            {
                Ok(r) => r.status,
                Err(CriError::NotFound { .. }) => None,
                Err(e) => {
                    tracing::warn!(container = %id, "container status: {}", crate::cri::error::chain(&e));
                    continue;
                }
            };
            let t = &mut self.tracks[i];
            let Some(st) = st else {
                if !matches!(t.slot, Slot::Exited(_) | Slot::Waiting { .. }) {
                    t.slot = Slot::Exited(Terminated {
                        id: id.clone(),
                        exit_code: 137,
                        reason: "ContainerStatusUnknown".into(),
                        message: "The container could not be located".into(),
                        started: SystemTime::now(),
                        finished: SystemTime::now(),
                    });
                    self.probes.remove(&id);
                }
                continue;
            };
            t.image_ref = st.image_ref.clone();
            match cri::ContainerState::try_from(st.state) {
                Ok(cri::ContainerState::ContainerRunning)
                    if !matches!(t.slot, Slot::Running { .. }) =>
                {
                    let c = container_spec(&self.pod, t).cloned();
                    let has_startup = c.as_ref().is_some_and(|c| c.startup_probe.is_some());
                    t.slot = Slot::Running {
                        since: time_of(st.started_at),
                        started: !has_startup,
                        ready: false,
                    };
                    if let Some(c) = c {
                        self.start_probes(&id, c);
                    }
                }
                Ok(cri::ContainerState::ContainerExited) => {
                    let already = matches!(&t.slot, Slot::Exited(x) if x.id == id)
                        || t.last.as_ref().is_some_and(|x| x.id == id);
                    if !already {
                        let c = container_spec(&self.pod, t).cloned().unwrap_or_default();
                        let message = exit_message(&c, &st);
                        let t = &mut self.tracks[i];
                        t.slot = Slot::Exited(Terminated {
                            id: id.clone(),
                            exit_code: st.exit_code,
                            reason: if st.reason.is_empty() {
                                if st.exit_code == 0 {
                                    "Completed"
                                } else {
                                    "Error"
                                }
                                .into()
                            } else {
                                st.reason.clone()
                            },
                            message,
                            started: time_of(st.started_at),
                            finished: time_of(st.finished_at),
                        });
                        self.probes.remove(&id);
                    }
                }
                Ok(cri::ContainerState::ContainerCreated) => {
                    // husklet stopped between create and start: start it now.
                    if let Err(e) = self
                        .rt
                        .start_container(cri::StartContainerRequest {
                            container_id: id.clone(),
                        })
                        .await
                    {
                        tracing::warn!(container = %id, "start a created container: {}", crate::cri::error::chain(&e));
                    }
                }
                _ => {}
            }
        }
    }

    fn start_probes(&mut self, id: &str, c: Container) {
        let Some(sb) = &self.sandbox else { return };
        let target = ProbeTarget {
            rt: self.rt.clone(),
            container_id: id.to_string(),
            pod_ip: sb.ip.clone(),
            container: c,
        };
        self.probes.insert(
            id.to_string(),
            ProbeSet::start(target, self.probe_tx.clone()),
        );
    }

    pub(super) fn stop_probes(&mut self) {
        self.probes.clear();
    }

    /// (Re)start track `i` unless it must wait out its back-off.
    pub(super) async fn start_or_back_off(&mut self, i: usize) {
        let now = Instant::now();
        let t = &mut self.tracks[i];
        if t.not_before.is_some_and(|nb| now < nb) {
            return;
        }
        t.not_before = None;
        if matches!(&t.slot, Slot::Waiting { reason, .. } if reason == "SpecChanged") {
            // The old instance runs the old spec: stop it first.
            self.kill_container(i, grace_period(&self.pod)).await;
            let t = &mut self.tracks[i];
            if let Slot::Exited(x) = t.slot.clone() {
                self.set_last(i, x);
            }
            self.start_container(i).await;
            return;
        }
        let t = &self.tracks[i];
        let uid = pod_uid(&self.pod).to_string();
        let key = backoff::key(&uid, &t.name);
        let pod_name = self.pod.metadata.name.clone().unwrap_or_default();
        if let Slot::Exited(x) = t.slot.clone() {
            let finished = instant_of(x.finished);
            if let Some(wait) = self.backoff.remaining(&key, finished, now) {
                let period = self.backoff.period(&key).unwrap_or(wait);
                let t = &mut self.tracks[i];
                let fp = field_path(t.kind, &t.name);
                t.not_before = Some(now + wait);
                t.slot = Slot::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: backoff::message(period, &t.name, &pod_name, &uid),
                };
                let name = t.name.clone();
                self.set_last(i, x);
                self.events.warning(
                    "BackOff",
                    &fp,
                    format!("Back-off restarting failed container {name} in pod {pod_name}"),
                );
                return;
            }
            self.backoff.restarted(&key, finished);
            self.set_last(i, x);
        } else if matches!(&t.slot, Slot::Waiting { reason, .. } if reason == "CrashLoopBackOff") {
            // The wait is over: the next delay doubles.
            if let Some(x) = &t.last {
                self.backoff.restarted(&key, instant_of(x.finished));
            }
        }
        self.start_container(i).await;
    }

    /// Make `x` the track's `lastState`, removing the instance before it
    /// (one dead instance is kept, for `logs --previous`).
    fn set_last(&mut self, i: usize, x: Terminated) {
        let t = &mut self.tracks[i];
        if let Some(old) = t.last.replace(x) {
            if Some(&old.id) != t.last.as_ref().map(|l| &l.id) {
                let rt = self.rt.clone();
                tokio::spawn(async move {
                    let _ = rt
                        .remove_container(cri::RemoveContainerRequest {
                            container_id: old.id,
                        })
                        .await;
                });
            }
        }
    }

    /// Pull (per policy), create, start and run postStart for track `i`.
    async fn start_container(&mut self, i: usize) {
        let Some(sb) = self.sandbox.clone() else {
            return;
        };
        let Some(c) = container_spec(&self.pod, &self.tracks[i]).cloned() else {
            return;
        };
        let fp = field_path(self.tracks[i].kind, &c.name);
        if !self.ensure_image(i, &c, &fp).await {
            return;
        }
        let attempt = match self.tracks[i].id {
            Some(_) => self.tracks[i].restart_count + 1,
            None => self.tracks[i].restart_count,
        };
        let waiting = |reason: &str, message: String| Slot::Waiting {
            reason: reason.into(),
            message,
        };
        let resolved = match self.host.resolve(&self.pod, &c, attempt, &sb.ip).await {
            Ok(r) => r,
            Err(e) => {
                self.events
                    .warning("Failed", &fp, format!("Error: {}", e.message));
                self.tracks[i].slot = waiting(e.reason, e.message);
                return;
            }
        };
        let t = &self.tracks[i];
        let cfg = config::container_config(&self.pod, &c, t.kind, attempt, &t.hash, resolved);
        let id = match self
            .rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sb.id.clone(),
                config: Some(cfg),
                sandbox_config: Some(sb.config.clone()),
            })
            .await
        {
            Ok(r) => r.container_id,
            Err(e) => {
                self.events.warning(
                    "Failed",
                    &fp,
                    format!("Error: {}", crate::cri::error::chain(&e)),
                );
                self.tracks[i].slot = waiting("CreateContainerError", crate::cri::error::chain(&e));
                return;
            }
        };
        if self.tracks[i].kind == Kind::App {
            Timeline::mark(&mut self.timeline.created);
        }
        self.events
            .normal("Created", &fp, format!("Created container {}", c.name));
        {
            let t = &mut self.tracks[i];
            t.id = Some(id.clone());
            t.restart_count = attempt;
        }
        if let Err(e) = self
            .rt
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            self.events.warning(
                "Failed",
                &fp,
                format!("Error: {}", crate::cri::error::chain(&e)),
            );
            self.tracks[i].slot = waiting("RunContainerError", crate::cri::error::chain(&e));
            return;
        }
        self.events
            .normal("Started", &fp, format!("Started container {}", c.name));
        // Started, before its postStart hook (the timeline's order).
        if self.tracks[i].kind == Kind::App
            && self
                .tracks
                .iter()
                .filter(|t| t.kind == Kind::App)
                .all(|t| t.id.is_some())
        {
            Timeline::mark(&mut self.timeline.started);
        }
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let target = Target {
                pod_ip: &sb.ip,
                container_id: &id,
                container: &c,
                runtime: self.rt.as_ref(),
            };
            // postStart has no deadline of its own (kubelet's neither).
            if let Err(e) = hook::run(h, &target).await {
                self.events
                    .warning("FailedPostStartHook", &fp, e.to_string());
                self.kill_container(i, grace_period(&self.pod)).await;
                return;
            }
        }
        if self
            .tracks
            .iter()
            .filter(|t| t.kind == Kind::App)
            .all(|t| t.id.is_some())
        {
            Timeline::mark(&mut self.timeline.post_start);
        }
        self.tracks[i].slot = Slot::Running {
            since: SystemTime::now(),
            started: c.startup_probe.is_none(),
            ready: false,
        };
        self.start_probes(&id, c);
    }

    /// The image of `c`, pulled per its `imagePullPolicy`. False while it
    /// is missing (the track says why).
    async fn ensure_image(&mut self, i: usize, c: &Container, fp: &str) -> bool {
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let spec = cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = match self
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
        {
            Ok(r) => r.image.is_some(),
            Err(_) => false,
        };
        let waiting = |reason: &str, message: String| Slot::Waiting {
            reason: reason.into(),
            message,
        };
        if policy == "Never" || (present && policy == "IfNotPresent") {
            if present {
                self.mark_images_ready();
                return true;
            }
            let msg = format!("Container image {image:?} is not present with pull policy of Never");
            self.events.warning("ErrImageNeverPull", fp, msg.clone());
            self.tracks[i].slot = waiting("ErrImageNeverPull", msg);
            return false;
        }
        let now = Instant::now();
        if let Some(until) = self.image_not_before.get(&image) {
            if now < *until {
                let msg = format!("Back-off pulling image {image:?}");
                self.events.normal("BackOff", fp, msg.clone());
                self.tracks[i].slot = waiting("ImagePullBackOff", msg);
                return false;
            }
        }
        self.events
            .normal("Pulling", fp, format!("Pulling image {image:?}"));
        let started = Instant::now();
        match self
            .images
            .pull_image(cri::PullImageRequest {
                image: Some(spec),
                auth: None,
                sandbox_config: self.sandbox.as_ref().map(|s| s.config.clone()),
            })
            .await
        {
            Ok(_) => {
                self.image_backoff.forget(&image);
                self.image_not_before.remove(&image);
                self.events.normal(
                    "Pulled",
                    fp,
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                self.mark_images_ready();
                true
            }
            Err(e) => {
                // Each failure doubles the wait before the next pull
                // (ImagePullBackOff: 10 s up to 5 min).
                let failed = Instant::now();
                self.image_backoff.restarted(&image, failed);
                let wait = self
                    .image_backoff
                    .period(&image)
                    .unwrap_or(backoff::INITIAL);
                self.image_not_before.insert(image.clone(), failed + wait);
                let msg = format!(
                    "Failed to pull image {image:?}: {}",
                    crate::cri::error::chain(&e)
                );
                self.events.warning("Failed", fp, msg.clone());
                self.tracks[i].slot = waiting("ErrImagePull", msg);
                false
            }
        }
    }

    fn mark_images_ready(&mut self) {
        Timeline::mark(&mut self.timeline.images);
    }

    /// preStop (within `grace`), then stop with what is left of it.
    pub(super) async fn kill_container(&mut self, i: usize, grace: Duration) {
        let Some(id) = self.tracks[i].id.clone() else {
            return;
        };
        self.probes.remove(&id);
        let c = container_spec(&self.pod, &self.tracks[i])
            .cloned()
            .unwrap_or_default();
        let ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.clone())
            .unwrap_or_default();
        let target = ProbeTarget {
            rt: self.rt.clone(),
            container_id: id,
            pod_ip: ip,
            container: c,
        };
        let fp = field_path(self.tracks[i].kind, &self.tracks[i].name);
        if let Err(m) = stop_one(&target, grace).await {
            self.events.warning("FailedPreStopHook", &fp, m);
        }
        self.observe().await;
    }

    /// Stop every container of the pod at once (SIGKILL: no grace), as
    /// kubelet does when the sandbox is gone.
    pub(super) async fn kill_all_containers(&mut self) {
        for t in &mut self.tracks {
            if let Some(id) = &t.id {
                let _ = self
                    .rt
                    .stop_container(cri::StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    })
                    .await;
            }
        }
        self.stop_probes();
        self.observe().await;
    }

    /// Graceful termination: app containers at once (each: preStop, stop
    /// signal, SIGKILL at the deadline), then sidecars in reverse order,
    /// then the sandbox. Statuses stay.
    pub(super) async fn terminate(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.stop_probes();
        let ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.clone())
            .unwrap_or_default();
        let targets = |kind: Kind, w: &Worker| -> Vec<(String, ProbeTarget)> {
            w.tracks
                .iter()
                .filter(|t| t.kind == kind && matches!(t.slot, Slot::Running { .. }))
                .filter_map(|t| {
                    let id = t.id.clone()?;
                    let c = container_spec(&w.pod, t).cloned()?;
                    Some((
                        field_path(kind, &t.name),
                        ProbeTarget {
                            rt: w.rt.clone(),
                            container_id: id,
                            pod_ip: ip.clone(),
                            container: c,
                        },
                    ))
                })
                .collect()
        };
        let apps = targets(Kind::App, self);
        for (fp, t) in &apps {
            self.events.normal(
                "Killing",
                fp,
                format!("Stopping container {}", t.container.name),
            );
        }
        let results = futures::future::join_all(apps.iter().map(|(fp, t)| async move {
            (
                fp.clone(),
                stop_one(t, deadline.saturating_duration_since(Instant::now())).await,
            )
        }))
        .await;
        for (fp, r) in results {
            if let Err(m) = r {
                self.events.warning("FailedPreStopHook", &fp, m);
            }
        }
        let mut sidecars = targets(Kind::Sidecar, self);
        sidecars.reverse();
        for (fp, t) in sidecars {
            self.events.normal(
                "Killing",
                &fp,
                format!("Stopping container {}", t.container.name),
            );
            if let Err(m) = stop_one(&t, deadline.saturating_duration_since(Instant::now())).await {
                self.events.warning("FailedPreStopHook", &fp, m);
            }
        }
        self.observe().await;
        if let Some(sb) = &self.sandbox {
            if let Err(e) = self
                .rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await
            {
                self.events.warning(
                    "FailedKillPod",
                    "",
                    format!("stop the sandbox: {}", crate::cri::error::chain(&e)),
                );
            }
        }
    }

    /// Remove every container and sandbox of the pod, and its volumes.
    pub(super) async fn remove_all(&mut self) {
        let selector = uid_selector(&self.pod);
        if let Ok(r) = self
            .rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: selector.clone(),
                    ..Default::default()
                }),
            })
            .await
        {
            for c in r.containers {
                let _ = self
                    .rt
                    .remove_container(cri::RemoveContainerRequest { container_id: c.id })
                    .await;
            }
        }
        if let Ok(r) = self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
        {
            for s in r.items {
                let _ = self
                    .rt
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: s.id.clone(),
                    })
                    .await;
                if let Err(e) = self
                    .rt
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: s.id,
                    })
                    .await
                {
                    self.events.warning(
                        "FailedKillPod",
                        "",
                        format!("remove the sandbox: {}", crate::cri::error::chain(&e)),
                    );
                }
            }
        }
        if let Err(e) = self.host.teardown_pod(&self.pod).await {
            self.events.warning(e.reason, "", e.message);
        }
        self.sandbox = None;
    }

    /// Adopt the sandbox and containers a previous husklet (or kubelet)
    /// left for this pod, found by the pod's UID label.
    pub(super) async fn recover(&mut self) {
        let selector = uid_selector(&self.pod);
        let sandboxes = self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: selector.clone(),
                    ..Default::default()
                }),
            })
            .await
            .map(|r| r.items)
            .unwrap_or_default();
        let Some(sb) = sandboxes.iter().max_by_key(|s| s.created_at) else {
            return;
        };
        let ready = sb.state == cri::PodSandboxState::SandboxReady as i32;
        tracing::info!(pod = pod_uid(&self.pod), sandbox = %sb.id, "adopting the running sandbox");
        let attempt = sb.metadata.as_ref().map_or(0, |m| m.attempt);
        let cgroup_parent = self.host.cgroup_parent(&self.pod).await.unwrap_or_default();
        let (ip, ips) = self.sandbox_ips(&sb.id).await;
        self.sandbox = Some(SandboxInfo {
            id: sb.id.clone(),
            ip,
            ips,
            attempt,
            config: config::sandbox_config(&self.ctx, &self.pod, attempt, cgroup_parent),
        });
        self.start_time = Some(time_of(sb.created_at));
        let containers = self
            .rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sb.id.clone(),
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
            .map(|r| r.containers)
            .unwrap_or_default();
        for t in &mut self.tracks {
            let mut mine: Vec<&cri::Container> = containers
                .iter()
                .filter(|c| c.labels.get(keys::CONTAINER_NAME) == Some(&t.name))
                .collect();
            mine.sort_by_key(|c| c.metadata.as_ref().map_or(0, |m| m.attempt));
            let Some(cur) = mine.last() else { continue };
            t.id = Some(cur.id.clone());
            t.restart_count = cur.metadata.as_ref().map_or(0, |m| m.attempt);
            if let Some(h) = cur.annotations.get(keys::CONTAINER_HASH) {
                if *h != t.hash {
                    t.slot = Slot::Waiting {
                        reason: "SpecChanged".into(),
                        message: String::new(),
                    };
                }
            }
        }
        self.observe().await;
        for t in &mut self.tracks {
            if let Slot::Exited(x) = &t.slot {
                if t.kind == Kind::Init && x.exit_code == 0 {
                    t.done = true;
                }
            }
        }
        // App containers exist only once the pod was initialized.
        self.initialized = self
            .tracks
            .iter()
            .any(|t| t.kind == Kind::App && t.id.is_some());
        // A pod that had finished (its sandbox stopped) stays finished.
        if !ready {
            if let Some(stage) = self.terminal_verdict() {
                self.stage = stage;
            }
        }
    }
}

/// The least time between the stop signal and SIGKILL (kubelet's
/// `minimumGracePeriodInSeconds`).
const MINIMUM_STOP_WINDOW: Duration = Duration::from_secs(2);

/// preStop (bounded by `grace`), then `StopContainer` with the rest of it
/// (at least [`MINIMUM_STOP_WINDOW`]).
/// A failed or late preStop is reported; the stop goes on regardless.
async fn stop_one(t: &ProbeTarget, grace: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut hook_result = Ok(());
    if let Some(h) = t
        .container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        let target = Target {
            pod_ip: &t.pod_ip,
            container_id: &t.container_id,
            container: &t.container,
            runtime: t.rt.as_ref(),
        };
        hook_result = match tokio::time::timeout(grace, hook::run(h, &target)).await {
            Ok(r) => r.map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "PreStopHook did not finish within the grace period ({}s)",
                grace.as_secs()
            )),
        };
    }
    // kubelet always leaves the stop signal a minimal window (its
    // minimumGracePeriodInSeconds): the documented 2 s extension when a
    // preStop hook used up the grace period.
    let left = grace
        .saturating_sub(start.elapsed())
        .max(MINIMUM_STOP_WINDOW);
    // StopContainer's timeout is whole seconds; round up so a grace of
    // 1.5 s is not cut to 1 s.
    let timeout = left.as_millis().div_ceil(1000) as i64;
    let stop =
        t.rt.stop_container(cri::StopContainerRequest {
            container_id: t.container_id.clone(),
            timeout,
        })
        .await;
    if let Err(e) = stop {
        tracing::warn!(container = %t.container_id, "stop: {}", crate::cri::error::chain(&e));
    }
    hook_result
}

/// When `t` (a wall-clock time in the past) was, on the monotonic clock.
fn instant_of(t: SystemTime) -> Instant {
    let ago = SystemTime::now().duration_since(t).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// The terminated state's message: the termination-log file (the host
/// file mounted at `terminationMessagePath`, found in the container's
/// mounts) or, with FallbackToLogsOnError after a failure, the log's tail.
fn exit_message(c: &Container, st: &cri::ContainerStatus) -> String {
    let path = st
        .annotations
        .get(keys::TERMINATION_MESSAGE_PATH)
        .cloned()
        .or_else(|| c.termination_message_path.clone())
        .unwrap_or_else(|| "/dev/termination-log".into());
    let file = st
        .mounts
        .iter()
        .find(|m| !path.is_empty() && m.container_path == path)
        .map(|m| std::path::PathBuf::from(&m.host_path));
    let policy = st
        .annotations
        .get(keys::TERMINATION_MESSAGE_POLICY)
        .map(String::as_str)
        .or(c.termination_message_policy.as_deref())
        .unwrap_or("File");
    let fallback = policy == "FallbackToLogsOnError" && st.exit_code != 0;
    let msg = termination::message(
        file.as_deref(),
        fallback,
        std::path::Path::new(&st.log_path),
    );
    if msg.is_empty() {
        st.message.clone()
    } else {
        msg
    }
}
