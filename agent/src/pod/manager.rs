//! The pod manager: one [`Worker`] task per pod UID, fed by the pod
//! sources, and the latest [`Report`] of each for the CLI and the node API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::NodeContext;
use super::host::PodHost;
use super::keys;
use super::report_file;
use super::worker::{Desired, Report, Worker, grace_period, pod_uid};
use crate::cri::{ImageService, RuntimeService};

struct Handle {
    desired: watch::Sender<Desired>,
    report: watch::Receiver<Report>,
    task: JoinHandle<()>,
}

/// The pods this node runs.
pub struct PodManager {
    rt: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
    host: Arc<dyn PodHost>,
    ctx: Arc<NodeContext>,
    runtime_type: String,
    workers: Mutex<HashMap<String, Handle>>,
    /// Where each pod's report is kept as a file ([`report_file`]).
    report_dir: Option<PathBuf>,
}

impl PodManager {
    /// A manager over a CRI runtime; asks it for its name (`husk`,
    /// `containerd`), which prefixes container ids in pod statuses.
    pub async fn new(
        rt: Arc<dyn RuntimeService>,
        images: Arc<dyn ImageService>,
        host: Arc<dyn PodHost>,
        ctx: NodeContext,
    ) -> Self {
        let runtime_type = rt
            .version(cri::VersionRequest::default())
            .await
            .map(|v| v.runtime_name)
            .unwrap_or_else(|_| "cri".into());
        PodManager {
            rt,
            images,
            host,
            ctx: Arc::new(ctx),
            runtime_type,
            workers: Mutex::new(HashMap::new()),
            report_dir: None,
        }
    }

    /// Keep each pod's report in `<dir>/<uid>.json` (see [`report_file`]).
    pub fn with_report_dir(mut self, dir: PathBuf) -> Self {
        self.report_dir = Some(dir);
        self
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `pod` (validated and defaulted, with a UID), or hand a changed
    /// spec to its running worker.
    pub fn apply(&self, pod: Pod) {
        let uid = pod_uid(&pod).to_string();
        let pod = Arc::new(pod);
        let mut workers = self.workers();
        if let Some(h) = workers.get(&uid) {
            if !h.task.is_finished() {
                h.desired.send_replace(Desired::Run(pod));
                return;
            }
        }
        let (ptx, prx) = mpsc::channel(64);
        let worker = Worker::new(
            self.rt.clone(),
            self.images.clone(),
            self.host.clone(),
            self.ctx.clone(),
            pod.clone(),
            self.runtime_type.clone(),
            ptx,
        );
        let (desired, drx) = watch::channel(Desired::Run(pod.clone()));
        let first = initial_report(pod);
        let (rtx, report) = watch::channel(first);
        if let Some(dir) = self.report_dir.clone() {
            tokio::spawn(persist(dir, uid.clone(), report.clone()));
        }
        let task = tokio::spawn(worker.run(drx, prx, rtx));
        workers.insert(
            uid,
            Handle {
                desired,
                report,
                task,
            },
        );
    }

    /// Terminate the pod with `grace` (its own period if `None`), then
    /// forget it. Returns at once; [`PodManager::wait_gone`] waits.
    pub fn remove(&self, uid: &str, grace: Option<Duration>) {
        let workers = self.workers();
        if let Some(h) = workers.get(uid) {
            let grace = grace.unwrap_or_else(|| grace_period(&h.report.borrow().pod));
            h.desired.send_replace(Desired::Remove { grace });
        }
    }

    /// Wait until the pod's worker has finished (removed, or never known).
    pub async fn wait_gone(&self, uid: &str) {
        let task = {
            let mut workers = self.workers();
            match workers.get_mut(uid) {
                Some(h) => {
                    let mut rx = h.report.clone();
                    Some(async move {
                        let _ = rx.wait_for(|r| r.gone).await;
                    })
                }
                None => None,
            }
        };
        if let Some(t) = task {
            t.await;
        }
        self.workers().remove(uid);
    }

    /// The CRI runtime the pods run on.
    pub fn runtime(&self) -> Arc<dyn RuntimeService> {
        self.rt.clone()
    }

    /// The UIDs of the pods being run.
    pub fn uids(&self) -> Vec<String> {
        self.workers().keys().cloned().collect()
    }

    /// The latest report of every pod.
    pub fn reports(&self) -> Vec<Report> {
        self.workers()
            .values()
            .map(|h| h.report.borrow().clone())
            .collect()
    }

    /// A watch of one pod's reports.
    pub fn watch(&self, uid: &str) -> Option<watch::Receiver<Report>> {
        self.workers().get(uid).map(|h| h.report.clone())
    }

    /// Terminate and remove what the pod layer made for pods no source
    /// lists any more: husklet was down (or killed mid-way) when their
    /// manifest went. As kubelet's housekeeping, with each container's
    /// recorded grace period.
    pub async fn cleanup_orphans(&self) {
        let known: std::collections::HashSet<String> = self.uids().into_iter().collect();
        let Ok(sandboxes) = self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: HashMap::from([(
                        keys::MANAGED_BY.to_string(),
                        keys::MANAGED_BY_PODS.to_string(),
                    )]),
                    ..Default::default()
                }),
            })
            .await
        else {
            return;
        };
        for sb in sandboxes.items {
            let Some(uid) = sb.labels.get(keys::POD_UID).cloned() else {
                continue;
            };
            if known.contains(&uid) {
                continue;
            }
            tracing::info!(pod_uid = %uid, sandbox = %sb.id, "removing an orphaned pod");
            let containers = self
                .rt
                .list_containers(cri::ListContainersRequest {
                    filter: Some(cri::ContainerFilter {
                        pod_sandbox_id: sb.id.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .map(|r| r.containers)
                .unwrap_or_default();
            futures::future::join_all(containers.iter().map(|c| {
                let grace = c
                    .annotations
                    .get(keys::TERMINATION_GRACE)
                    .and_then(|g| g.parse::<i64>().ok())
                    .unwrap_or(30);
                self.rt.stop_container(cri::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: grace,
                })
            }))
            .await;
            for c in containers {
                let _ = self
                    .rt
                    .remove_container(cri::RemoveContainerRequest { container_id: c.id })
                    .await;
            }
            let _ = self
                .rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            if let Err(e) = self
                .rt
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await
            {
                tracing::warn!(sandbox = %sb.id, "remove an orphaned sandbox: {}", crate::cri::error::chain(&e));
                continue;
            }
            let mut pod = Pod::default();
            pod.metadata.uid = Some(uid.clone());
            if let Err(e) = self.host.teardown_pod(&pod).await {
                tracing::warn!(pod_uid = %uid, "remove an orphaned pod's files: {e}");
            }
            if let Some(dir) = &self.report_dir {
                report_file::remove(dir, &uid);
            }
        }
    }

    /// Terminate every pod with its grace period and wait for all of them
    /// (the node is shutting down).
    pub async fn shutdown(&self) {
        let uids = self.uids();
        for uid in &uids {
            self.remove(uid, None);
        }
        futures::future::join_all(uids.iter().map(|u| self.wait_gone(u))).await;
    }
}

/// Write the pod's report file on every change; remove it once the pod is gone.
async fn persist(dir: PathBuf, uid: String, mut rx: watch::Receiver<Report>) {
    loop {
        let (file, gone) = {
            let r = rx.borrow_and_update();
            (report_file::PodFile::from_report(&r), r.gone)
        };
        if gone {
            report_file::remove(&dir, &uid);
            return;
        }
        let (d, u) = (dir.clone(), uid.clone());
        let written = tokio::task::spawn_blocking(move || report_file::write(&d, &u, &file)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(pod = %uid, "write the pod's report file: {e}");
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn initial_report(pod: Arc<Pod>) -> Report {
    Report {
        pod,
        stage: super::worker::Stage::Pending,
        status: Default::default(),
        events: Default::default(),
        timeline: Default::default(),
        sandbox_id: None,
        log_directory: String::new(),
        gone: false,
    }
}
