//! `density`: N long-running pods, then the memory of the runtime's daemon
//! (idle and loaded) and of every per-pod process it spawned (its shims).
//!
//! The daemon is the process serving the socket (SO_PEERCRED). Each pod's
//! sandbox and container pids come from the verbose status info; their parent
//! processes are the shims (or the daemon itself, for a runtime without shims).
//! "at start" is read before anything else; "idle" once the image is present
//! (a pull grows the daemon), right before the first pod.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;

use super::{Outcome, PodRun, ensure_image, for_each_concurrently};
use crate::client::ClientError;
use crate::procfs::{self, ProcMem};
use crate::report::Metric;
use crate::stats::{OpSummary, Timings};

/// Density options.
pub struct DensityOptions {
    pub count: usize,
    pub concurrency: usize,
    /// Wait after the last pod started, before reading memory.
    pub settle: Duration,
    /// The daemon's pid when SO_PEERCRED would not find it.
    pub daemon_pid: Option<i32>,
}

pub async fn run(pods: &PodRun, o: &DensityOptions) -> anyhow::Result<Outcome> {
    let mut c = pods.client.clone();
    let daemon_pid = match o.daemon_pid {
        Some(p) => p,
        None => crate::client::server_pid(c.endpoint())
            .await
            .context("find the CRI daemon's pid (give --daemon-pid)")?,
    };
    let at_start = procfs::mem(daemon_pid).context("the CRI daemon")?;
    ensure_image(&mut c, &pods.tracker, &pods.template.image).await?;
    let idle = procfs::mem(daemon_pid).context("the CRI daemon")?;

    let (started, mut t) = for_each_concurrently(o.count, o.concurrency, |i| {
        let pods = pods.clone();
        async move {
            let mut t = Timings::default();
            let pod = pods.start_pod(i, &mut t).await?;
            Ok((pod, t))
        }
    })
    .await?;
    tokio::time::sleep(o.settle).await;

    // Every pod's processes, and their parents.
    let mut pod_pids = Vec::new();
    for pod in &started {
        let sb = c.pod_sandbox_status(&pod.sandbox_id, true).await?;
        let ctr = c.container_status(&pod.container_id, true).await?;
        let ctr_pid = pid_from_info(&ctr.info).ok_or_else(|| ClientError::BadResponse {
            rpc: "ContainerStatus",
            object: format!("container {}", pod.container_id),
            reason: "the verbose info has no pid".into(),
        })?;
        pod_pids.push(ctr_pid);
        // A runtime without a sandbox process (pinned namespaces) reports none.
        pod_pids.extend(pid_from_info(&sb.info));
    }
    let mut shims = BTreeSet::new();
    for &pid in &pod_pids {
        let parent = procfs::ppid(pid).with_context(|| format!("parent of pod process {pid}"))?;
        if parent != daemon_pid && parent > 1 {
            shims.insert(parent);
        }
    }
    let loaded = procfs::mem(daemon_pid).context("the CRI daemon")?;
    let mut shim_mem = Vec::new();
    for &pid in &shims {
        shim_mem.push(procfs::mem(pid).with_context(|| format!("shim {pid}"))?);
    }

    // Remove the pods here, timed like any other run, then read the daemon again.
    let (_, t_remove) = for_each_concurrently(started.len(), o.concurrency, |i| {
        let pods = pods.clone();
        let pod = started[i].clone();
        async move {
            let mut t = Timings::default();
            pods.remove_pod(&pod, &mut t).await?;
            Ok(((), t))
        }
    })
    .await?;
    t.merge(t_remove);
    let after = procfs::mem(daemon_pid).context("the CRI daemon")?;

    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut metrics = vec![
        Metric::new("daemon RSS at start", mib(at_start.rss_kib), "MiB"),
        Metric::new("daemon RSS idle", mib(idle.rss_kib), "MiB"),
        Metric::new(
            &format!("daemon RSS with {} pods", o.count),
            mib(loaded.rss_kib),
            "MiB",
        ),
        Metric::new("daemon RSS after removal", mib(after.rss_kib), "MiB"),
        Metric::new(
            "daemon RSS growth per pod",
            (loaded.rss_kib as f64 - idle.rss_kib as f64) / o.count.max(1) as f64,
            "KiB",
        ),
        Metric::new("per-pod processes (shims)", shims.len() as f64, "count"),
    ];
    if let Some(pss) = loaded.pss_kib {
        metrics.push(Metric::new(
            &format!("daemon PSS with {} pods", o.count),
            mib(pss),
            "MiB",
        ));
    }
    let rss: Vec<f64> = shim_mem.iter().map(|m| mib(m.rss_kib)).collect();
    if let Some(s) = OpSummary::from_ms("shim", &rss) {
        metrics.push(Metric::new("shim RSS median", s.median_ms, "MiB"));
        metrics.push(Metric::new("shim RSS max", s.max_ms, "MiB"));
        metrics.push(Metric::new("shim RSS total", rss.iter().sum(), "MiB"));
    }
    let pss: Vec<f64> = shim_mem.iter().filter_map(|m| m.pss_kib).map(mib).collect();
    if let Some(s) = OpSummary::from_ms("shim", &pss) {
        metrics.push(Metric::new("shim PSS median", s.median_ms, "MiB"));
        metrics.push(Metric::new("shim PSS total", pss.iter().sum(), "MiB"));
    }
    // What the node pays for the runtime with the pods running: the daemon
    // and every per-pod process it spawned (the pods' own processes aside).
    metrics.push(Metric::new(
        &format!("daemon + shims RSS with {} pods", o.count),
        mib(loaded.rss_kib) + rss.iter().sum::<f64>(),
        "MiB",
    ));
    metrics.push(Metric::new(
        "memory per pod (daemon growth + shims)",
        mib(loaded.rss_kib.saturating_sub(idle.rss_kib)) / o.count.max(1) as f64
            + rss.iter().sum::<f64>() / o.count.max(1) as f64,
        "MiB",
    ));

    let mut processes: Vec<ProcMem> = vec![loaded];
    processes.extend(shim_mem);
    Ok(Outcome {
        ops: t.summaries(),
        metrics,
        processes,
    })
}

/// The `pid` in a verbose status info map: containerd puts a JSON document
/// under "info" with a top-level "pid"; a runtime may also give "pid" directly.
pub fn pid_from_info(info: &HashMap<String, String>) -> Option<i32> {
    if let Some(p) = info.get("pid").and_then(|v| v.trim().parse().ok()) {
        return Some(p);
    }
    info.values()
        .filter_map(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .find_map(|doc| doc.get("pid")?.as_i64())
        .and_then(|p| i32::try_from(p).ok())
        .filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_from_containerd_style_info() {
        let info = HashMap::from([(
            "info".to_string(),
            r#"{"sandboxID":"abc","pid":4242,"runtimeSpec":{}}"#.to_string(),
        )]);
        assert_eq!(pid_from_info(&info), Some(4242));
    }

    #[test]
    fn pid_direct_key_and_missing() {
        let info = HashMap::from([("pid".to_string(), "77".to_string())]);
        assert_eq!(pid_from_info(&info), Some(77));
        let none = HashMap::from([("info".to_string(), r#"{"pid":0}"#.to_string())]);
        assert_eq!(pid_from_info(&none), None);
        assert_eq!(pid_from_info(&HashMap::new()), None);
    }
}
