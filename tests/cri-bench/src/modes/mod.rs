//! The benchmark modes, and the pod steps they share.

pub mod density;
pub mod images;
pub mod lifecycle;
pub mod list;
pub mod parallel;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use k8s_cri::v1 as cri;

use crate::cleanup::Tracker;
use crate::client::{ClientError, CriClient};
use crate::procfs::ProcMem;
use crate::report::Metric;
use crate::spec::PodTemplate;
use crate::stats::{OpSummary, Timings};
use crate::timed;

/// What a mode hands to the report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: Vec<OpSummary>,
    pub metrics: Vec<Metric>,
    pub processes: Vec<ProcMem>,
}

/// What every pod-creating mode needs.
#[derive(Clone)]
pub struct PodRun {
    pub client: CriClient,
    pub tracker: Tracker,
    pub template: PodTemplate,
    /// StopContainer's timeout in seconds (0: kill at once, as critest does).
    pub stop_timeout: i64,
}

/// One started pod.
#[derive(Debug, Clone)]
pub struct Pod {
    pub sandbox_id: String,
    pub container_id: String,
}

/// Pulls the image if the runtime does not have it (untimed; cleanup removes it).
pub async fn ensure_image(
    client: &mut CriClient,
    tracker: &Tracker,
    image: &str,
) -> anyhow::Result<()> {
    if client.image_status(image).await?.is_none() {
        tracing::info!("pulling {image}");
        client.pull_image(image).await?;
        tracker.image_pulled(image);
    }
    Ok(())
}

impl PodRun {
    /// RunPodSandbox, CreateContainer, StartContainer, each timed and tracked.
    pub async fn start_pod(&self, index: usize, t: &mut Timings) -> Result<Pod, ClientError> {
        let mut c = self.client.clone();
        let sandbox_config = self.template.sandbox(index);
        let start = Instant::now();
        let sandbox_id = timed!(
            t,
            "RunPodSandbox",
            c.run_pod_sandbox(sandbox_config.clone())
        )?;
        self.tracker.sandbox_created(&sandbox_id);
        let container_id = timed!(
            t,
            "CreateContainer",
            c.create_container(&sandbox_id, self.template.container(), sandbox_config)
        )?;
        self.tracker.container_created(&container_id);
        timed!(t, "StartContainer", c.start_container(&container_id))?;
        t.record("pod start (3 calls)", start.elapsed());
        Ok(Pod {
            sandbox_id,
            container_id,
        })
    }

    /// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox, each timed.
    pub async fn remove_pod(&self, pod: &Pod, t: &mut Timings) -> Result<(), ClientError> {
        let mut c = self.client.clone();
        let start = Instant::now();
        timed!(
            t,
            "StopContainer",
            c.stop_container(&pod.container_id, self.stop_timeout)
        )?;
        timed!(t, "RemoveContainer", c.remove_container(&pod.container_id))?;
        self.tracker.container_removed(&pod.container_id);
        timed!(t, "StopPodSandbox", c.stop_pod_sandbox(&pod.sandbox_id))?;
        timed!(t, "RemovePodSandbox", c.remove_pod_sandbox(&pod.sandbox_id))?;
        self.tracker.sandbox_removed(&pod.sandbox_id);
        t.record("pod removal (4 calls)", start.elapsed());
        Ok(())
    }

    /// The run's containers in state RUNNING, by the run label.
    pub async fn running_containers(&self) -> Result<Vec<cri::Container>, ClientError> {
        let mut c = self.client.clone();
        c.list_containers(Some(cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            label_selector: HashMap::from([(
                crate::spec::RUN_LABEL.to_string(),
                self.template.run_id.clone(),
            )]),
            ..Default::default()
        }))
        .await
    }
}

/// Runs `job(i)` for i in 0..n with at most `concurrency` at once; stops at
/// the first error (the remaining jobs are cancelled; cleanup removes what they made).
pub async fn for_each_concurrently<T, F, Fut>(
    n: usize,
    concurrency: usize,
    job: F,
) -> anyhow::Result<(Vec<T>, Timings)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<(T, Timings)>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let permits = permits.clone();
        let fut = job(i);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut timings = Timings::default();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.context("a benchmark task panicked")?;
        match r {
            Ok((v, t)) => {
                results[i] = Some(v);
                timings.merge(t);
            }
            Err(e) => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(e);
            }
        }
    }
    Ok((results.into_iter().flatten().collect(), timings))
}
