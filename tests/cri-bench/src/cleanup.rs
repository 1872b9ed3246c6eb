//! Remembers every object a run creates and removes them all at the end,
//! whether the run finished, failed or was interrupted.
//!
//! Besides the objects it was told about, cleanup sweeps the runtime for
//! sandboxes and containers carrying the run's label: an RPC interrupted in
//! flight may have created something whose id never reached us.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::client::CriClient;
use crate::spec::RUN_LABEL;

/// How long cleanup keeps retrying pods that could not be removed yet.
pub const RETRY_FOR: Duration = Duration::from_secs(30);
const RETRY_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Tracked {
    sandboxes: Vec<String>,
    containers: Vec<String>,
    /// Images this run pulled that the runtime did not have before.
    images: Vec<String>,
    /// Images the runtime had before the run and this run removed.
    restore: Vec<String>,
}

/// Shared by every task of a run (cheap to clone).
#[derive(Debug, Clone)]
pub struct Tracker {
    run_id: String,
    inner: Arc<Mutex<Tracked>>,
}

/// What cleanup removed, and what it could not.
#[derive(Debug, Default)]
pub struct CleanupOutcome {
    pub sandboxes: usize,
    pub containers: usize,
    pub images: usize,
    pub errors: Vec<String>,
}

impl Tracker {
    pub fn new(run_id: &str) -> Self {
        Tracker {
            run_id: run_id.to_string(),
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        // A task that panicked holding the lock left consistent lists behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sandbox_created(&self, id: &str) {
        self.lock().sandboxes.push(id.to_string());
    }

    pub fn sandbox_removed(&self, id: &str) {
        self.lock().sandboxes.retain(|s| s != id);
    }

    pub fn container_created(&self, id: &str) {
        self.lock().containers.push(id.to_string());
    }

    pub fn container_removed(&self, id: &str) {
        self.lock().containers.retain(|c| c != id);
    }

    pub fn image_pulled(&self, image: &str) {
        let mut t = self.lock();
        if !t.images.iter().any(|i| i == image) {
            t.images.push(image.to_string());
        }
    }

    pub fn image_removed(&self, image: &str) {
        self.lock().images.retain(|i| i != image);
    }

    /// The run removed an image that was there before it: cleanup pulls it back.
    pub fn image_to_restore(&self, image: &str, missing: bool) {
        let mut t = self.lock();
        t.restore.retain(|i| i != image);
        if missing {
            t.restore.push(image.to_string());
        }
    }

    /// Removes everything of this run: tracked containers, then sandboxes,
    /// then whatever still carries the run label, then pulled images.
    ///
    /// A call interrupted in flight can leave an object in a transitional state
    /// (containerd: "container is in starting state, can't be removed"), so
    /// pods are retried for up to [`RETRY_FOR`]; the errors of the last pass
    /// are returned.
    pub async fn cleanup(&self, client: &CriClient) -> CleanupOutcome {
        let mut c = client.clone();
        let mut total = CleanupOutcome::default();
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            let pass = self.remove_pods(&mut c).await;
            total.sandboxes += pass.sandboxes;
            total.containers += pass.containers;
            if pass.errors.is_empty() || Instant::now() >= deadline {
                total.errors = pass.errors;
                break;
            }
            tracing::info!("cleanup: {} removals failed, retrying", pass.errors.len());
            tokio::time::sleep(RETRY_EVERY).await;
        }
        let (images, restore) = {
            let t = self.lock();
            (t.images.clone(), t.restore.clone())
        };
        for image in images {
            match c.remove_image(&image).await {
                Ok(()) => total.images += 1,
                Err(e) => total.errors.push(e.to_string()),
            }
            self.image_removed(&image);
        }
        for image in restore {
            if let Err(e) = c.pull_image(&image).await {
                total
                    .errors
                    .push(format!("restore the image the run removed: {e}"));
            }
            self.image_to_restore(&image, false);
        }
        total
    }

    /// One pass over the tracked pods and the run label. Tracked ids are
    /// forgotten only once removed.
    async fn remove_pods(&self, c: &mut CriClient) -> CleanupOutcome {
        let mut out = CleanupOutcome::default();
        let mut tried = HashSet::new();
        let (containers, sandboxes) = {
            let t = self.lock();
            (t.containers.clone(), t.sandboxes.clone())
        };
        for id in containers {
            if remove_container(c, &id, &mut out).await {
                self.container_removed(&id);
            }
            tried.insert(id);
        }
        for id in sandboxes {
            if remove_sandbox(c, &id, &mut out).await {
                self.sandbox_removed(&id);
            }
            tried.insert(id);
        }
        let selector = HashMap::from([(RUN_LABEL.to_string(), self.run_id.clone())]);
        match c
            .list_containers(Some(cri::ContainerFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }))
            .await
        {
            Ok(left) => {
                for ctr in left.iter().filter(|x| !tried.contains(&x.id)) {
                    remove_container(c, &ctr.id, &mut out).await;
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        }
        match c
            .list_pod_sandbox(Some(cri::PodSandboxFilter {
                label_selector: selector,
                ..Default::default()
            }))
            .await
        {
            Ok(left) => {
                for sb in left.iter().filter(|x| !tried.contains(&x.id)) {
                    remove_sandbox(c, &sb.id, &mut out).await;
                }
            }
            Err(e) => out.errors.push(e.to_string()),
        }
        out
    }
}

/// Stops and removes a container; true when it is gone.
async fn remove_container(c: &mut CriClient, id: &str, out: &mut CleanupOutcome) -> bool {
    // Stop first: some runtimes refuse to remove a running container.
    if let Err(e) = c.stop_container(id, 0).await {
        tracing::debug!("cleanup: {e}");
    }
    match c.remove_container(id).await {
        Ok(()) => {
            out.containers += 1;
            true
        }
        Err(e) => {
            out.errors.push(e.to_string());
            false
        }
    }
}

/// Stops and removes a sandbox; true when it is gone.
async fn remove_sandbox(c: &mut CriClient, id: &str, out: &mut CleanupOutcome) -> bool {
    if let Err(e) = c.stop_pod_sandbox(id).await {
        tracing::debug!("cleanup: {e}");
    }
    match c.remove_pod_sandbox(id).await {
        Ok(()) => {
            out.sandboxes += 1;
            true
        }
        Err(e) => {
            out.errors.push(e.to_string());
            false
        }
    }
}
