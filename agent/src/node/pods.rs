//! The pods the scheduler (or a user, with `spec.nodeName`) bound to this
//! node: watched with `spec.nodeName=<node>` ([`reflect`]), admitted as
//! kubelet admits them ([`admission`]), run by the pod manager, their
//! status written back ([`status`]), and deleted gracefully: a
//! deletionTimestamp terminates the pod with deletionGracePeriodSeconds,
//! and once it is down the node deletes the object for good (grace 0, UID
//! precondition), as kubelet's status manager does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::sync::mpsc;

use super::admission::{self, NodeFit};
use super::error::status_code;
use super::objects::ApiObjects;
use super::reflect::{Change, reflect};
use super::register::NodeRef;
use super::status::{self, StatusError};
use super::{NodeConfig, info};
use crate::pod::manager::PodManager;
use crate::pod::{defaults, validate};

/// The annotation that marks a mirror pod (the API copy of a static pod).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Admitted and handed to the pod manager.
    Running,
    /// Refused by admission (or invalid): never run, phase Failed.
    Rejected,
    /// Being terminated after its deletion was requested.
    Terminating,
}

struct Entry {
    /// The latest copy from the apiserver.
    pod: Pod,
    state: State,
}

/// The apiserver's pods for this node and what the node does with them.
pub struct PodSync {
    client: kube::Client,
    cfg: Arc<NodeConfig>,
    node: NodeRef,
    mgr: Arc<PodManager>,
    objects: ApiObjects,
    entries: Mutex<HashMap<String, Entry>>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn id_of(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The pod as the pod layer runs it: defaulted and validated like a static
/// pod (the apiserver validated it already; the pod layer's own checks
/// refuse what it cannot run).
pub fn prepare(pod: &Pod) -> Result<Pod, String> {
    let mut p = pod.clone();
    defaults::apply(&mut p);
    validate::pod(&p).map_err(|e| e.to_string())?;
    Ok(p)
}

impl PodSync {
    /// The pod loop's state; start it with [`PodSync::run`].
    pub fn new(
        client: kube::Client,
        cfg: Arc<NodeConfig>,
        node: NodeRef,
        mgr: Arc<PodManager>,
        objects: ApiObjects,
    ) -> Arc<PodSync> {
        Arc::new(PodSync {
            client,
            cfg,
            node,
            mgr,
            objects,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The UIDs of the API pods this node runs now.
    pub fn running(&self) -> Vec<String> {
        self.entries()
            .iter()
            .filter(|(_, e)| e.state != State::Rejected)
            .map(|(u, _)| u.clone())
            .collect()
    }

    fn fit(&self) -> NodeFit {
        // Pods are admitted against allocatable, as kubelet does.
        let capacity = info::capacity(self.cfg.max_pods, &self.cfg.root);
        let allocatable = info::allocatable(
            &capacity,
            &self.cfg.system_reserved,
            &self.cfg.kube_reserved,
            &self.cfg.eviction,
        );
        let q = |k: &str, milli: bool| {
            allocatable
                .get(k)
                .and_then(|q| crate::pod::quantity::Quantity::parse(&q.0).ok())
                .map_or(0, |q| if milli { q.milli_value() } else { q.value() })
        };
        NodeFit {
            milli_cpu: q("cpu", true),
            memory: q("memory", false),
            ephemeral_storage: q("ephemeral-storage", false),
            pods: i64::from(self.cfg.max_pods),
            labels: super::register::labels(&self.cfg),
            name: self.cfg.name.clone(),
            taints: self.cfg.taints.clone(),
        }
    }

    /// Watch the node's pods and act on every change, for as long as
    /// husklet runs.
    pub async fn run(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let (tx, mut rx) = mpsc::channel(64);
        let selector = format!("spec.nodeName={}", self.cfg.name);
        tokio::spawn(reflect(api, selector, "pods of this node".into(), tx));
        while let Some(change) = rx.recv().await {
            match change {
                Change::Listed(pods) => {
                    let listed: HashSet<String> = pods.iter().map(uid_of).collect();
                    for p in pods {
                        self.on_pod(p);
                    }
                    let known: Vec<String> = self.entries().keys().cloned().collect();
                    for uid in known.into_iter().filter(|u| !listed.contains(u)) {
                        self.on_gone(&uid);
                    }
                }
                Change::Applied(p) => self.on_pod(p),
                Change::Deleted(p) => self.on_gone(&uid_of(&p)),
            }
        }
    }

    fn on_pod(self: &Arc<Self>, pod: Pod) {
        let uid = uid_of(&pod);
        if uid.is_empty() || pod.annotations().contains_key(MIRROR_ANNOTATION) {
            return;
        }
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let mut entries = self.entries();
        if let Some(e) = entries.get_mut(&uid) {
            e.pod = pod.clone();
            match e.state {
                State::Running if deleting => {
                    e.state = State::Terminating;
                    let grace = pod
                        .metadata
                        .deletion_grace_period_seconds
                        .map(|s| Duration::from_secs(s.max(0) as u64));
                    tracing::info!(pod = %id_of(&pod), ?grace, "deletion requested: terminating the pod");
                    self.mgr.remove(&uid, grace);
                }
                State::Running => match prepare(&pod) {
                    Ok(p) => self.mgr.apply(p),
                    Err(e) => tracing::warn!(pod = %id_of(&pod), "changed spec refused: {e}"),
                },
                State::Rejected if deleting => {
                    entries.remove(&uid);
                    tokio::spawn(self.clone().delete(pod));
                }
                State::Rejected | State::Terminating => {}
            }
            return;
        }
        if deleting {
            // Nothing of it runs here: the object can go.
            tokio::spawn(self.clone().delete(pod));
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // A finished pod never runs again.
            return;
        }
        let running: Vec<&Pod> = entries
            .values()
            .filter(|e| e.state != State::Rejected)
            .map(|e| &e.pod)
            .collect();
        let verdict = admission::admit(&pod, &running, &self.fit()).and_then(|()| {
            prepare(&pod).map_err(|message| admission::Rejection {
                reason: "UnexpectedAdmissionError".into(),
                message,
            })
        });
        match verdict {
            Ok(prepared) => {
                entries.insert(
                    uid.clone(),
                    Entry {
                        pod: pod.clone(),
                        state: State::Running,
                    },
                );
                tracing::info!(pod = %id_of(&pod), "pod admitted");
                tokio::spawn(self.clone().start(uid, prepared));
            }
            Err(r) => {
                tracing::info!(pod = %id_of(&pod), reason = %r.reason, "pod rejected: {}", r.message);
                entries.insert(
                    uid.clone(),
                    Entry {
                        pod: pod.clone(),
                        state: State::Rejected,
                    },
                );
                let status = PodStatus {
                    phase: Some("Failed".into()),
                    reason: Some(r.reason),
                    message: Some(format!("Pod was rejected: {}", r.message)),
                    ..Default::default()
                };
                tokio::spawn(self.clone().write_once(uid, status));
            }
        }
    }

    /// The pod left the apiserver (deleted with grace 0 by someone, or
    /// missing from a relist): stop it.
    fn on_gone(self: &Arc<Self>, uid: &str) {
        let Some(e) = self.entries().remove(uid) else {
            return;
        };
        tracing::info!(pod = %id_of(&e.pod), "pod removed from the apiserver: terminating it");
        if e.state == State::Running {
            self.mgr.remove(uid, None);
        }
    }

    fn cached(&self, uid: &str) -> Option<Pod> {
        self.entries().get(uid).map(|e| e.pod.clone())
    }

    fn pods_api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }

    async fn write_once(self: Arc<Self>, uid: String, status: PodStatus) {
        let Some(pod) = self.cached(&uid) else { return };
        let api = self.pods_api(&pod);
        if let Err(e) = status::write(&api, pod, &uid, &status).await {
            tracing::warn!("{}", crate::cri::error::chain(&e));
        }
    }

    /// Fetch the pod's objects, hand it to the pod manager, then write its
    /// status on every change until its worker is done; a pod whose
    /// deletion was requested is then deleted for good.
    async fn start(self: Arc<Self>, uid: String, pod: Pod) {
        self.objects.track(&uid, &pod).await;
        self.mgr.apply(pod.clone());
        let api = self.pods_api(&pod);
        let Some(mut rx) = self.mgr.watch(&uid) else {
            return;
        };
        let mut written: Option<PodStatus> = None;
        let mut events = super::events::EventSink::new(self.client.clone(), &self.cfg.name, &pod);
        loop {
            let (mut st, gone, log) = {
                let r = rx.borrow_and_update();
                (r.status.clone(), r.gone, r.events.clone())
            };
            events.sync(&log).await;
            st.host_ip = Some(self.cfg.node_ip.to_string());
            if written.as_ref() != Some(&st) {
                let Some(cached) = self.cached(&uid) else {
                    break;
                };
                let base = cached.resource_version();
                match status::write(&api, cached, &uid, &st).await {
                    Ok((fresh, _)) => {
                        written = Some(st);
                        // The written copy is the newest unless the watch
                        // brought another since: the next write starts from it.
                        if let Some(e) = self.entries().get_mut(&uid) {
                            if e.pod.resource_version() == base {
                                e.pod = fresh;
                            }
                        }
                    }
                    Err(StatusError::Gone(_)) => break,
                    Err(e) => {
                        tracing::warn!("{}", crate::cri::error::chain(&e));
                        if !gone {
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                r = rx.changed() => if r.is_err() { break },
                            }
                            continue;
                        }
                    }
                }
            }
            if gone || rx.changed().await.is_err() {
                break;
            }
        }
        self.mgr.wait_gone(&uid).await;
        self.objects.untrack(&uid);
        let entry = self.entries().remove(&uid);
        match entry {
            Some(e) if e.state == State::Terminating => self.clone().delete(e.pod).await,
            Some(e) => {
                // Still wanted (husklet is shutting down): keep tracking it.
                self.entries().insert(uid, e);
            }
            None => {}
        }
    }

    /// Delete the pod object for good: grace 0, only this UID.
    async fn delete(self: Arc<Self>, pod: Pod) {
        let api = self.pods_api(&pod);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let mut backoff = Duration::from_millis(200);
        for _ in 0..8 {
            match api.delete(&pod.name_any(), &dp).await {
                Ok(_) => {
                    tracing::info!(pod = %id_of(&pod), "pod deleted");
                    return;
                }
                // Gone already, or another pod of that name (precondition).
                Err(e) if matches!(status_code(&e), Some(404 | 409)) => return,
                Err(e) => {
                    tracing::warn!(pod = %id_of(&pod), "delete: {}", crate::cri::error::chain(&e));
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }

    /// The node this sync runs for.
    pub fn node(&self) -> &NodeRef {
        &self.node
    }
}
