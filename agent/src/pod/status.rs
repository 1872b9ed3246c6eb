//! A pod's `status` as kubelet reports it: phase, conditions, container
//! statuses, IPs, QoS class.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::config::Kind;
use super::worker::{Slot, Stage, Terminated, Track, Worker, container_spec};

fn time(t: SystemTime) -> Time {
    use k8s_openapi::jiff::Timestamp;
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Time(
        Timestamp::new(d.as_secs() as i64, d.subsec_nanos() as i32)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// The pod's status now.
pub fn pod_status(w: &Worker) -> PodStatus {
    let statuses = |kind: fn(Kind) -> bool| -> Vec<ContainerStatus> {
        w.tracks
            .iter()
            .filter(|t| kind(t.kind))
            .map(|t| container_status(w, t))
            .collect()
    };
    let init = statuses(|k| k != Kind::App);
    let apps = statuses(|k| k == Kind::App);
    let initialized = w.initialized
        || w.tracks
            .iter()
            .filter(|t| t.kind != Kind::App)
            .all(|t| t.done || (t.kind == Kind::Sidecar && is_started(t)));
    let containers_ready = w.stage == Stage::Running
        && w.tracks
            .iter()
            .filter(|t| t.kind != Kind::Init)
            .all(|t| is_ready(w, t));
    let now = SystemTime::now();
    let cond = |type_: &str, ok: bool, reason: Option<&str>| PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(str::to_string) },
        last_transition_time: Some(time(now)),
        ..Default::default()
    };
    let sandbox_up = w.sandbox.is_some() && !w.stage.is_terminal() && w.stage != Stage::Terminating;
    let conditions = vec![
        cond("PodReadyToStartContainers", sandbox_up, None),
        cond(
            "Initialized",
            initialized || w.stage.is_terminal(),
            Some("ContainersNotInitialized"),
        ),
        cond(
            "Ready",
            containers_ready,
            Some(if initialized {
                "ContainersNotReady"
            } else {
                "ContainersNotInitialized"
            }),
        ),
        cond(
            "ContainersReady",
            containers_ready,
            Some("ContainersNotReady"),
        ),
        cond("PodScheduled", true, None),
    ];
    let phase = match w.stage {
        Stage::Pending | Stage::Initializing => "Pending",
        Stage::Running => {
            if apps
                .iter()
                .all(|s| s.state.as_ref().is_some_and(|s| s.waiting.is_some()))
                && w.tracks
                    .iter()
                    .filter(|t| t.kind == Kind::App)
                    .all(|t| t.id.is_none())
            {
                "Pending"
            } else {
                "Running"
            }
        }
        Stage::Succeeded => "Succeeded",
        Stage::Failed => "Failed",
        Stage::Terminating => "Running",
    };
    let (ip, ips) = w
        .sandbox
        .as_ref()
        .map(|s| (s.ip.clone(), s.ips.clone()))
        .unwrap_or_default();
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(apps),
        init_container_statuses: if init.is_empty() { None } else { Some(init) },
        host_ip: None,
        pod_ip: (!ip.is_empty()).then_some(ip),
        pod_ips: (!ips.is_empty()).then(|| ips.into_iter().map(|ip| PodIP { ip }).collect()),
        qos_class: Some(super::qos::qos_class(&w.pod).as_str().into()),
        start_time: w.start_time.map(time),
        ..Default::default()
    }
}

fn is_started(t: &Track) -> bool {
    matches!(t.slot, Slot::Running { started: true, .. })
}

/// Ready: running, started, and the readiness probe (if any) says so.
fn is_ready(w: &Worker, t: &Track) -> bool {
    let Slot::Running { started, ready, .. } = t.slot else {
        return false;
    };
    let has_readiness = container_spec(&w.pod, t).is_some_and(|c| c.readiness_probe.is_some());
    started && (ready || !has_readiness)
}

fn terminated(x: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(x.id.clone()),
        exit_code: x.exit_code,
        reason: Some(x.reason.clone()),
        message: (!x.message.is_empty()).then(|| x.message.clone()),
        started_at: Some(time(x.started)),
        finished_at: Some(time(x.finished)),
        signal: None,
    }
}

fn container_status(w: &Worker, t: &Track) -> ContainerStatus {
    let spec = container_spec(&w.pod, t);
    let state = match &t.slot {
        Slot::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
            }),
            ..Default::default()
        },
        Slot::Running { since, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*since)),
            }),
            ..Default::default()
        },
        Slot::Exited(x) => ContainerState {
            terminated: Some(terminated(x)),
            ..Default::default()
        },
    };
    let with_runtime = |id: &str| format!("{}://{id}", w.runtime_type);
    let mut state = state;
    if let Some(tm) = &mut state.terminated {
        tm.container_id = tm.container_id.as_deref().map(with_runtime);
    }
    let last_state = t.last.as_ref().map(|x| {
        let mut tm = terminated(x);
        tm.container_id = tm.container_id.as_deref().map(with_runtime);
        ContainerState {
            terminated: Some(tm),
            ..Default::default()
        }
    });
    ContainerStatus {
        name: t.name.clone(),
        image: spec.and_then(|c| c.image.clone()).unwrap_or_default(),
        image_id: t.image_ref.clone(),
        container_id: t.id.as_deref().map(with_runtime),
        state: Some(state),
        last_state,
        ready: t.kind != Kind::Init && is_ready(w, t),
        started: Some(matches!(t.slot, Slot::Running { started: true, .. })),
        restart_count: t.restart_count as i32,
        ..Default::default()
    }
}
