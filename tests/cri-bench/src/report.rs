//! A run's results: printed as tables, or as JSON that `compare` reads.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::procfs::ProcMem;
use crate::stats::OpSummary;

/// One number that is not a latency distribution (a wall time, a memory size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

impl Metric {
    pub fn new(name: &str, value: f64, unit: &str) -> Self {
        Metric {
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }
}

/// Everything one mode measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub mode: String,
    pub endpoint: String,
    /// `name version` from the runtime's Version answer.
    pub runtime: String,
    pub run_id: String,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub host: String,
    /// Pods (or pulls, for `images`).
    pub count: usize,
    pub concurrency: Option<usize>,
    pub ops: Vec<OpSummary>,
    pub metrics: Vec<Metric>,
    /// The daemon and the per-pod processes it spawned (`density`).
    #[serde(default)]
    pub processes: Vec<ProcMem>,
}

impl Report {
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and vectors always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a cri-bench JSON report", path.display()))
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let conc = self
            .concurrency
            .map(|c| format!(", concurrency {c}"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "cri-bench {}: {} at {} ({}), count {}{conc}, run {}, {}",
            self.mode,
            self.runtime,
            self.endpoint,
            self.host,
            self.count,
            self.run_id,
            self.started_at
        );
        if !self.ops.is_empty() {
            let _ = writeln!(
                s,
                "{:<22} {:>6} {:>10} {:>10} {:>10} {:>10}",
                "operation (ms)", "count", "median", "p90", "p99", "max"
            );
            for o in &self.ops {
                let _ = writeln!(
                    s,
                    "{:<22} {:>6} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                    o.op, o.count, o.median_ms, o.p90_ms, o.p99_ms, o.max_ms
                );
            }
        }
        if !self.metrics.is_empty() {
            let _ = writeln!(s, "{:<40} {:>12}", "metric", "value");
            for m in &self.metrics {
                let _ = writeln!(s, "{:<40} {:>12.2} {}", m.name, m.value, m.unit);
            }
        }
        if !self.processes.is_empty() {
            let _ = writeln!(
                s,
                "{:<8} {:<24} {:>10} {:>10}",
                "pid", "process", "RSS KiB", "PSS KiB"
            );
            for p in &self.processes {
                let pss = p.pss_kib.map(|v| v.to_string()).unwrap_or("-".into());
                let _ = writeln!(
                    s,
                    "{:<8} {:<24} {:>10} {:>10}",
                    p.pid, p.comm, p.rss_kib, pss
                );
            }
        }
        s
    }
}

/// Now, as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

/// Unix seconds as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `hostname, N cpus` for the report header.
pub fn host_description() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{host}, {cpus} cpus")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn json_round_trips_and_table_lists_ops() {
        let r = Report {
            mode: "lifecycle".into(),
            endpoint: "unix:///x".into(),
            runtime: "containerd 1.6".into(),
            run_id: "crib-1".into(),
            started_at: rfc3339(0),
            host: "h".into(),
            count: 2,
            concurrency: None,
            ops: vec![OpSummary::from_ms("RunPodSandbox", &[1.0, 3.0]).unwrap()],
            metrics: vec![Metric::new("wall", 5.0, "ms")],
            processes: vec![],
        };
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        let t = r.table();
        assert!(t.contains("RunPodSandbox"), "{t}");
        assert!(t.contains("2.00"), "{t}");
        assert!(t.contains("wall"), "{t}");
    }
}
