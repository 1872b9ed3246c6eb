//! GetContainerEvents: container lifecycle events (created, started,
//! stopped, deleted) broadcast to every subscribed client, each with the
//! pod sandbox's status and its containers' statuses, as containerd sends
//! them.
//!
//! Created, started and deleted are sent by the RPCs that do them. A
//! container's exit is noticed whatever causes it, by a task per running
//! container that holds a connection to its shim's control socket: the
//! shim records the exit and then closes every connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};

use super::container::Live;
use super::record;
use super::runtime::Cri;

/// The stream GetContainerEvents answers with.
pub type EventStream =
    Pin<Box<dyn futures::Stream<Item = Result<cri::ContainerEventResponse, tonic::Status>> + Send>>;

/// Events buffered per slow client before it misses some (and is told so
/// in the log).
const BACKLOG: usize = 1024;

/// An event as sent: complete, or an exit whose statuses are filled in
/// when it is delivered (the watcher that saw it holds no [`Cri`]).
#[derive(Clone, Debug)]
pub(crate) enum Event {
    Ready(Box<cri::ContainerEventResponse>),
    Stopped {
        id: String,
        sandbox_id: String,
        at: i64,
    },
}

/// The broadcast side, owned by [`Cri`].
pub(crate) struct Events {
    tx: broadcast::Sender<Event>,
    closed: watch::Sender<bool>,
    /// The exit watcher of each started container, so that DELETED never
    /// overtakes its STOPPED.
    watchers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl Events {
    pub fn new() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
            closed: watch::channel(false).0,
            watchers: Mutex::default(),
        }
    }

    /// Is any client subscribed? (kubelet 1.26 does not subscribe: an
    /// event nobody receives is not built.)
    fn subscribed(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    fn send(&self, e: Event) {
        // No subscriber is fine: events are not kept.
        let _ = self.tx.send(e);
    }

    /// End every stream (husklet is shutting down: an open stream would
    /// hold the server's graceful shutdown forever).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Watch the shim in `shim_dir` and send STOPPED once the container
    /// `id` has exited. Needs a tokio runtime (husklet's serve has one).
    pub fn watch_exit(&self, id: &str, sandbox_id: &str, shim_dir: PathBuf) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(container = %id, "no async runtime: its exit will not be sent as an event");
            return;
        };
        let (tx, key) = (self.tx.clone(), id.to_string());
        let (id, sandbox_id) = (id.to_string(), sandbox_id.to_string());
        let task = rt.spawn(async move {
            let sock = shim_dir.join(husk_shim::layout::CTL_SOCK);
            loop {
                match tokio::net::UnixStream::connect(&sock).await {
                    // Connected: the shim closes it once the exit is recorded.
                    Ok(mut s) => {
                        let mut buf = [0u8; 256];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                        break;
                    }
                    // Refused or gone because the shim has exited.
                    Err(_) if shim_gone(&shim_dir) => break,
                    // A busy listener (full backlog): try again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            tracing::debug!(container = %id, "container exited");
            let _ = tx.send(Event::Stopped {
                id,
                sandbox_id,
                at: record::now_ns(),
            });
        });
        if let Some(old) = self.lock_watchers().insert(key, task) {
            old.abort();
        }
    }

    /// Wait (a few seconds at most) for `id`'s exit watcher to have sent
    /// STOPPED; the container has exited already.
    pub async fn settle(&self, id: &str) {
        let Some(mut task) = self.lock_watchers().remove(id) else {
            return;
        };
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            tracing::warn!(container = %id, "exit watcher still waiting; stopped it");
            task.abort();
        }
    }

    fn lock_watchers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::JoinHandle<()>>> {
        // Every mutation is a single insert or remove: a poisoned map is consistent.
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the shim in `dir` has recorded an exit or is no longer running.
fn shim_gone(dir: &std::path::Path) -> bool {
    if matches!(husk_shim::client::read_exit(dir), Ok(Some(_))) {
        return true;
    }
    std::fs::read_to_string(dir.join(husk_shim::layout::SHIM_PID))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_none_or(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_err())
}

impl Cri {
    /// Send `kind` for container `id` of `sandbox_id`, with the statuses as
    /// they are now.
    pub(crate) fn emit(&self, id: &str, sandbox_id: &str, kind: cri::ContainerEventType) {
        if !self.events.subscribed() {
            return;
        }
        let ev = self.event(id, sandbox_id, kind, record::now_ns());
        self.events.send(Event::Ready(Box::new(ev)));
    }

    fn event(
        &self,
        id: &str,
        sandbox_id: &str,
        kind: cri::ContainerEventType,
        at: i64,
    ) -> cri::ContainerEventResponse {
        let pod = self
            .sandbox_status(sandbox_id, false)
            .ok()
            .and_then(|r| r.status);
        let members: Vec<String> = self
            .state()
            .containers
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .map(|c| c.id.clone())
            .collect();
        let mut statuses: Vec<cri::ContainerStatus> = members
            .iter()
            .filter_map(|c| self.status_of(c, false).ok().and_then(|r| r.status))
            .collect();
        statuses.sort_by(|a, b| a.id.cmp(&b.id));
        cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: at,
            pod_sandbox_status: pod,
            containers_statuses: statuses,
        }
    }

    fn complete(&self, e: Event) -> cri::ContainerEventResponse {
        match e {
            Event::Ready(ev) => *ev,
            Event::Stopped { id, sandbox_id, at } => self.event(
                &id,
                &sandbox_id,
                cri::ContainerEventType::ContainerStoppedEvent,
                at,
            ),
        }
    }

    /// Watch every container that was running when husklet started.
    pub(crate) fn watch_running(&self) {
        let running: Vec<(String, String, PathBuf)> = self
            .state()
            .containers
            .values()
            .filter(|c| matches!(c.live(), Live::Running))
            .map(|c| (c.id.clone(), c.sandbox_id.clone(), c.shim_dir.clone()))
            .collect();
        for (id, sandbox, dir) in running {
            self.events.watch_exit(&id, &sandbox, dir);
        }
    }

    /// End every event stream.
    pub fn close_events(&self) {
        self.events.close();
    }
}

/// A client's stream: every event from now on, until husklet shuts down.
pub fn stream(cri: Arc<Cri>) -> EventStream {
    let rx = cri.events.tx.subscribe();
    let closed = cri.events.closed.subscribe();
    Box::pin(futures::stream::unfold(
        (cri, rx, closed),
        |(cri, mut rx, mut closed)| async move {
            loop {
                if *closed.borrow() {
                    return None;
                }
                let got = tokio::select! {
                    r = rx.recv() => r,
                    c = closed.changed() => {
                        if c.is_err() {
                            return None;
                        }
                        continue;
                    }
                };
                match got {
                    Ok(e) => {
                        let ev = cri.complete(e);
                        return Some((Ok(ev), (cri, rx, closed)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a GetContainerEvents client fell behind")
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    ))
}
