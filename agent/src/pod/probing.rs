//! Probe tasks: one per probe of a running container instance, each a loop
//! of [`probe::run`] paced and judged by a [`Tracker`], reporting changes to
//! the pod worker.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use super::probe::tracker::Kind as ProbeKind;
use super::probe::tracker::{Action, Tracker};
use super::probe::{self, Target};
use crate::cri::RuntimeService;

/// A change of a probe's verdict for one container instance.
#[derive(Clone, Debug)]
pub struct ProbeUpdate {
    pub container_id: String,
    pub kind: ProbeKind,
    /// Ready / started / alive.
    pub healthy: bool,
    /// For a failure: the event's message.
    pub message: String,
}

/// What a container's probes run against.
#[derive(Clone)]
pub struct ProbeTarget {
    pub rt: Arc<dyn RuntimeService>,
    pub container_id: String,
    pub pod_ip: String,
    pub container: Container,
}

/// The probe tasks of one container instance; dropping it stops them.
pub struct ProbeSet {
    tasks: Vec<JoinHandle<()>>,
    started: watch::Sender<bool>,
}

impl ProbeSet {
    /// Start the probes of `target`'s container (its clock starts now).
    pub fn start(target: ProbeTarget, tx: mpsc::Sender<ProbeUpdate>) -> ProbeSet {
        let c = target.container.clone();
        let (started, started_rx) = watch::channel(c.startup_probe.is_none());
        let since = Instant::now();
        let mut tasks = vec![];
        for (kind, probe) in [
            (ProbeKind::Startup, c.startup_probe),
            (ProbeKind::Liveness, c.liveness_probe),
            (ProbeKind::Readiness, c.readiness_probe),
        ] {
            let Some(probe) = probe else { continue };
            let (t, tx, rx) = (target.clone(), tx.clone(), started_rx.clone());
            tasks.push(tokio::spawn(run(kind, probe, t, tx, rx, since)));
        }
        ProbeSet { tasks, started }
    }

    /// The startup probe passed: liveness and readiness begin.
    pub fn startup_passed(&mut self) {
        self.started.send_replace(true);
    }
}

impl Drop for ProbeSet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn run(
    kind: ProbeKind,
    spec: Probe,
    t: ProbeTarget,
    tx: mpsc::Sender<ProbeUpdate>,
    started: watch::Receiver<bool>,
    since: Instant,
) {
    let mut tracker = Tracker::new(kind, &spec);
    let mut tick = tokio::time::interval(tracker.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !tracker.due(since.elapsed(), *started.borrow()) {
            continue;
        }
        let target = Target {
            pod_ip: &t.pod_ip,
            container_id: &t.container_id,
            container: &t.container,
            runtime: t.rt.as_ref(),
        };
        let outcome = probe::run(&spec, &target).await;
        if let probe::Outcome::Unknown(why) = &outcome {
            // Discarded (kubelet's "Probe errored"): say why in the log.
            tracing::warn!(container = %t.container_id, probe = ?kind, "probe errored: {why}");
        }
        let (healthy, message, last) = match tracker.record(&outcome) {
            Action::None => continue,
            Action::Changed(v) => {
                let msg = match &outcome {
                    probe::Outcome::Failure(m) => m.clone(),
                    _ => String::new(),
                };
                (v, msg, kind == ProbeKind::Startup && v)
            }
            Action::Restart(msg) => (false, msg, true),
        };
        let update = ProbeUpdate {
            container_id: t.container_id.clone(),
            kind,
            healthy,
            message,
        };
        if tx.send(update).await.is_err() || last {
            return;
        }
    }
}
