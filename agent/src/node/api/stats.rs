//! `/stats/summary` (the `stats/v1alpha1` Summary that metrics-server and
//! `kubectl top` read), `/metrics/resource` (the same cpu and memory in
//! Prometheus text, as metrics-server ≥ 0.6 scrapes it) and `/metrics`
//! (husklet's own gauges).
//!
//! The node's numbers come from /proc and statvfs; containers' from the
//! CRI `ListContainerStats`. `usageNanoCores` is the rate between this
//! sample and the previous one kept in [`Sampler`] (absent on the first).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use hyper::Response;
use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::{Body, NodeApi, text};

/// The previous cumulative cpu sample per key (`""`: the node; else a
/// container id): (time ns, usage core-ns).
#[derive(Default)]
pub struct Sampler {
    prev: Mutex<HashMap<String, (i64, u64)>>,
}

impl Sampler {
    /// The cpu rate since the key's last sample (nanocores), recording this one.
    fn rate(&self, key: &str, time_ns: i64, usage: u64) -> Option<u64> {
        let mut prev = self.prev.lock().unwrap_or_else(|p| p.into_inner());
        let old = prev.insert(key.to_string(), (time_ns, usage));
        let (t0, u0) = old?;
        let dt = u64::try_from(time_ns - t0).ok().filter(|d| *d > 0)?;
        let du = usage.checked_sub(u0)?;
        Some(((du as u128) * 1_000_000_000 / dt as u128) as u64)
    }

    fn forget_except(&self, keep: &std::collections::HashSet<String>) {
        let mut prev = self.prev.lock().unwrap_or_else(|p| p.into_inner());
        prev.retain(|k, _| k.is_empty() || keep.contains(k));
    }
}

/// The node's cumulative cpu (core-ns) from /proc/stat, and boot time.
fn node_cpu() -> Option<(u64, i64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|h| *h > 0)
        .unwrap_or(100) as u64;
    let mut cpu = None;
    let mut btime = 0;
    for l in stat.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal: all but idle and iowait.
                let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum();
                cpu = Some(busy * (1_000_000_000 / hz));
            }
            Some("btime") => btime = f.next().and_then(|x| x.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    Some((cpu?, btime))
}

/// /proc/meminfo in bytes.
fn meminfo() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some((k.to_string(), n * 1024))
        })
        .collect()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ns_time(ns: i64) -> String {
    rfc3339(DateTime::from_timestamp_nanos(ns))
}

fn uval(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// What one sample of the node and its containers holds.
struct Sample {
    now: DateTime<Utc>,
    node_cpu: Option<(u64, Option<u64>)>,
    boot: i64,
    mem: HashMap<String, u64>,
    containers: HashMap<String, cri::ContainerStats>,
}

impl Sample {
    fn node_memory(&self) -> (u64, u64, u64) {
        let m = |k: &str| self.mem.get(k).copied().unwrap_or(0);
        let usage = m("MemTotal").saturating_sub(m("MemFree"));
        let working_set = usage.saturating_sub(m("Inactive(file)"));
        (m("MemAvailable"), usage, working_set)
    }
}

async fn sample(api: &NodeApi) -> Sample {
    let now = Utc::now();
    let time_ns = now.timestamp_nanos_opt().unwrap_or(0);
    let (node_cpu, boot) = match node_cpu() {
        Some((usage, boot)) => (Some((usage, api.stats.rate("", time_ns, usage))), boot),
        None => (None, 0),
    };
    let mut containers = HashMap::new();
    if let Some(rt) = &api.deps.runtime {
        match rt
            .list_container_stats(cri::ListContainerStatsRequest::default())
            .await
        {
            Ok(r) => {
                for s in r.stats {
                    if let Some(a) = &s.attributes {
                        containers.insert(a.id.clone(), s);
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %crate::cri::error::chain(&e), "kubelet API: container stats")
            }
        }
    }
    let keep = containers.keys().cloned().collect();
    api.stats.forget_except(&keep);
    Sample {
        now,
        node_cpu,
        boot,
        mem: meminfo(),
        containers,
    }
}

/// A container's cpu and memory in the Summary's shape.
fn container_usage(api: &NodeApi, id: &str, s: &cri::ContainerStats) -> (Value, Value) {
    let cpu = s.cpu.as_ref().map_or(Value::Null, |c| {
        let usage = uval(&c.usage_core_nano_seconds);
        let rate = uval(&c.usage_nano_cores)
            .or_else(|| usage.and_then(|u| api.stats.rate(id, c.timestamp, u)));
        json!({"time": ns_time(c.timestamp), "usageNanoCores": rate, "usageCoreNanoSeconds": usage})
    });
    let memory = s.memory.as_ref().map_or(Value::Null, |m| {
        json!({
            "time": ns_time(m.timestamp),
            "availableBytes": uval(&m.available_bytes),
            "usageBytes": uval(&m.usage_bytes),
            "workingSetBytes": uval(&m.working_set_bytes),
            "rssBytes": uval(&m.rss_bytes),
            "pageFaults": uval(&m.page_faults),
            "majorPageFaults": uval(&m.major_page_faults),
        })
    });
    (cpu, memory)
}

/// Each running container of each pod: (namespace, pod, uid, name, CRI id, start).
fn running_containers(
    api: &NodeApi,
) -> Vec<(String, String, String, String, String, Option<String>)> {
    let mut out = Vec::new();
    for r in api.reports() {
        let m = &r.pod.metadata;
        for c in r.status.container_statuses.iter().flatten() {
            let started = c.state.as_ref().and_then(|s| s.running.as_ref());
            let (Some(id), Some(run)) = (c.container_id.as_deref(), started) else {
                continue;
            };
            let id = id.split_once("://").map_or(id, |(_, i)| i).to_string();
            out.push((
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
                m.uid.clone().unwrap_or_default(),
                c.name.clone(),
                id,
                run.started_at.as_ref().map(|t| t.0.to_string()),
            ));
        }
    }
    out
}

/// `/stats/summary`.
pub async fn summary(api: &NodeApi) -> Response<Body> {
    let s = sample(api).await;
    let time = rfc3339(s.now);
    let (available, usage, working_set) = s.node_memory();
    let fs = nix::sys::statvfs::statvfs(&api.deps.fs_root).ok().map(|v| {
        let f = v.fragment_size();
        let (total, free, avail) = (
            v.blocks() * f,
            v.blocks_free() * f,
            v.blocks_available() * f,
        );
        json!({
            "time": time, "availableBytes": avail, "capacityBytes": total,
            "usedBytes": total - free, "inodesFree": v.files_free(),
            "inodes": v.files(), "inodesUsed": v.files().saturating_sub(v.files_free()),
        })
    });
    let node = json!({
        "nodeName": api.node,
        "startTime": DateTime::from_timestamp(s.boot, 0).map(rfc3339),
        "cpu": s.node_cpu.map(|(u, rate)| json!({"time": time, "usageNanoCores": rate, "usageCoreNanoSeconds": u})),
        "memory": {"time": time, "availableBytes": available, "usageBytes": usage, "workingSetBytes": working_set},
        "fs": fs,
        "runtime": {"imageFs": fs},
    });
    let mut pods: Vec<Value> = Vec::new();
    for r in api.reports() {
        let m = &r.pod.metadata;
        let mut containers = Vec::new();
        let (mut cpu_ns, mut cpu_rate, mut mem_ws, mut mem_usage) = (0u64, 0u64, 0u64, 0u64);
        for (_, _, _, name, id, start) in running_containers(api)
            .into_iter()
            .filter(|c| Some(&c.2) == m.uid.as_ref())
        {
            let Some(st) = s.containers.get(&id) else {
                continue;
            };
            let (cpu, memory) = container_usage(api, &id, st);
            cpu_ns += cpu["usageCoreNanoSeconds"].as_u64().unwrap_or(0);
            cpu_rate += cpu["usageNanoCores"].as_u64().unwrap_or(0);
            mem_ws += memory["workingSetBytes"].as_u64().unwrap_or(0);
            mem_usage += memory["usageBytes"].as_u64().unwrap_or(0);
            let rootfs = st.writable_layer.as_ref().map(|w| {
                json!({"time": ns_time(w.timestamp), "usedBytes": uval(&w.used_bytes), "inodesUsed": uval(&w.inodes_used)})
            });
            containers.push(json!({"name": name, "startTime": start, "cpu": cpu, "memory": memory, "rootfs": rootfs}));
        }
        pods.push(json!({
            "podRef": {"name": m.name, "namespace": m.namespace, "uid": m.uid},
            "startTime": r.status.start_time.as_ref().map(|t| t.0.to_string()),
            "containers": containers,
            "cpu": {"time": time, "usageNanoCores": cpu_rate, "usageCoreNanoSeconds": cpu_ns},
            "memory": {"time": time, "usageBytes": mem_usage, "workingSetBytes": mem_ws},
        }));
    }
    super::json(&json!({"node": node, "pods": pods}))
}

/// Prometheus label values are escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prom_response(body: String) -> Response<Body> {
    let mut r = text(http::StatusCode::OK, "");
    *r.body_mut() = super::full(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `/metrics/resource`: cpu and memory as kubelet's resource metrics.
pub async fn resource_metrics(api: &NodeApi) -> Response<Body> {
    let s = sample(api).await;
    let ms = s.now.timestamp_millis();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64, i64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v, t) in rows {
            out.push_str(&format!("{name}{labels} {v} {t}\n"));
        }
    };
    let (_, _, ws) = s.node_memory();
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        s.node_cpu
            .map(|(u, _)| ("".to_string(), u as f64 / 1e9, ms))
            .into_iter()
            .collect(),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the node in bytes",
        vec![(String::new(), ws as f64, ms)],
    );
    let mut ccpu = Vec::new();
    let mut cmem = Vec::new();
    let mut cstart = Vec::new();
    let mut pod_cpu: HashMap<(String, String), (f64, f64)> = HashMap::new();
    for (ns, pod, _, name, id, start) in running_containers(api) {
        let Some(st) = s.containers.get(&id) else {
            continue;
        };
        let labels = format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            label(&name),
            label(&ns),
            label(&pod)
        );
        let entry = pod_cpu.entry((ns, pod)).or_default();
        if let Some(c) = &st.cpu {
            if let Some(u) = uval(&c.usage_core_nano_seconds) {
                ccpu.push((labels.clone(), u as f64 / 1e9, c.timestamp / 1_000_000));
                entry.0 += u as f64 / 1e9;
            }
        }
        if let Some(m) = &st.memory {
            if let Some(w) = uval(&m.working_set_bytes) {
                cmem.push((labels.clone(), w as f64, m.timestamp / 1_000_000));
                entry.1 += w as f64;
            }
        }
        if let Some(t) = start.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()) {
            cstart.push((labels, t.timestamp() as f64, ms));
        }
    }
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        ccpu,
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the container in bytes",
        cmem,
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "[STABLE] Start time of the container since unix epoch in seconds",
        cstart,
    );
    let mut pods: Vec<_> = pod_cpu.into_iter().collect();
    pods.sort_by(|a, b| a.0.cmp(&b.0));
    let pl = |ns: &str, p: &str| format!("{{namespace=\"{}\",pod=\"{}\"}}", label(ns), label(p));
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        pods.iter()
            .map(|((ns, p), (c, _))| (pl(ns, p), *c, ms))
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "[STABLE] Current working set of the pod in bytes",
        pods.iter()
            .map(|((ns, p), (_, m))| (pl(ns, p), *m, ms))
            .collect(),
    );
    out.push_str("# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE scrape_error gauge\nscrape_error 0\n");
    prom_response(out)
}

/// husklet's resident set size and open descriptors, from /proc/self.
fn process_stats() -> (u64, usize) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    (rss, fds)
}

/// `/metrics`: a few gauges about husklet and its pods.
pub async fn metrics(api: &NodeApi) -> Response<Body> {
    let reports = api.reports();
    let mut states: HashMap<&'static str, usize> = HashMap::new();
    for r in &reports {
        for c in r.status.container_statuses.iter().flatten() {
            let s = match c.state.as_ref() {
                Some(s) if s.running.is_some() => "running",
                Some(s) if s.terminated.is_some() => "exited",
                _ => "created",
            };
            *states.entry(s).or_default() += 1;
        }
    }
    let running_pods = reports
        .iter()
        .filter(|r| r.status.phase.as_deref() == Some("Running"))
        .count();
    let (rss, fds) = process_stats();
    let mut out = format!(
        "# HELP kubelet_running_pods Number of pods that have a running pod sandbox\n\
         # TYPE kubelet_running_pods gauge\nkubelet_running_pods {running_pods}\n\
         # HELP kubelet_running_containers Number of containers currently running\n\
         # TYPE kubelet_running_containers gauge\n"
    );
    for state in ["created", "exited", "running"] {
        out.push_str(&format!(
            "kubelet_running_containers{{container_state=\"{state}\"}} {}\n",
            states.get(state).copied().unwrap_or(0)
        ));
    }
    out.push_str(&format!(
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n\
         # HELP process_open_fds Number of open file descriptors.\n\
         # TYPE process_open_fds gauge\nprocess_open_fds {fds}\n\
         # HELP kubernetes_build_info A metric with a constant '1' value labeled by version.\n\
         # TYPE kubernetes_build_info gauge\nkubernetes_build_info{{git_version=\"husklet-{}\",node=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        label(&api.node)
    ));
    prom_response(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_usage_per_second_since_the_last_sample() {
        let s = Sampler::default();
        assert_eq!(s.rate("c", 1_000_000_000, 500), None, "no previous sample");
        // 0.5 s of cpu in 1 s: half a core.
        assert_eq!(s.rate("c", 2_000_000_000, 500_000_500), Some(500_000_000));
        // A counter that went back (a new container under the id) gives none.
        assert_eq!(s.rate("c", 3_000_000_000, 10), None);
    }

    #[test]
    fn node_numbers_come_from_proc() {
        let (cpu, boot) = node_cpu().expect("/proc/stat");
        assert!(cpu > 0 && boot > 0);
        assert!(meminfo().get("MemTotal").is_some_and(|m| *m > 0));
    }
}
