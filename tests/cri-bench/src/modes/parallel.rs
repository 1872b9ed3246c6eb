//! `parallel`: N pods started with concurrency C; the time until all run.

use std::time::Instant;

use super::{Outcome, PodRun, ensure_image, for_each_concurrently};
use crate::report::Metric;
use crate::stats::Timings;

pub async fn run(pods: &PodRun, count: usize, concurrency: usize) -> anyhow::Result<Outcome> {
    let mut c = pods.client.clone();
    ensure_image(&mut c, &pods.tracker, &pods.template.image).await?;

    let start = Instant::now();
    let (started, mut t) = for_each_concurrently(count, concurrency, |i| {
        let pods = pods.clone();
        async move {
            let mut t = Timings::default();
            let pod = pods.start_pod(i, &mut t).await?;
            Ok((pod, t))
        }
    })
    .await?;
    let all_started = start.elapsed();
    let running = pods.running_containers().await?.len();
    if running != count {
        anyhow::bail!(
            "ListContainers: {running} of the run's {count} containers are CONTAINER_RUNNING after all StartContainer calls returned"
        );
    }

    let start = Instant::now();
    let (_, t_remove) = for_each_concurrently(started.len(), concurrency, |i| {
        let pods = pods.clone();
        let pod = started[i].clone();
        async move {
            let mut t = Timings::default();
            pods.remove_pod(&pod, &mut t).await?;
            Ok(((), t))
        }
    })
    .await?;
    let all_removed = start.elapsed();
    t.merge(t_remove);

    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    Ok(Outcome {
        ops: t.summaries(),
        metrics: vec![
            Metric::new("wall time until all pods run", ms(all_started), "ms"),
            Metric::new(
                "pods started per second",
                count as f64 / all_started.as_secs_f64().max(1e-9),
                "pods/s",
            ),
            Metric::new(
                "wall time until all pods are removed",
                ms(all_removed),
                "ms",
            ),
        ],
        processes: Vec::new(),
    })
}
