//! Latency samples per operation and their summary (median, p90, p99, max).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The p-th percentile (0..=100) of sorted values, linearly interpolated
/// between the two nearest ranks (numpy's default); None when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = (p.clamp(0.0, 100.0) / 100.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// One operation's summary, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSummary {
    pub op: String,
    pub count: usize,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl OpSummary {
    /// Summarises samples in milliseconds; None when there are none.
    pub fn from_ms(op: &str, samples_ms: &[f64]) -> Option<Self> {
        let mut v = samples_ms.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(OpSummary {
            op: op.to_string(),
            count: n,
            min_ms: *v.first()?,
            mean_ms: v.iter().sum::<f64>() / n as f64,
            median_ms: percentile(&v, 50.0)?,
            p90_ms: percentile(&v, 90.0)?,
            p99_ms: percentile(&v, 99.0)?,
            max_ms: *v.last()?,
        })
    }
}

/// Samples of every operation of a run, in the order operations first appear.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    ops: Vec<(String, Vec<f64>)>,
}

impl Timings {
    pub fn record(&mut self, op: &str, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        match self.ops.iter_mut().find(|(name, _)| name == op) {
            Some((_, v)) => v.push(ms),
            None => self.ops.push((op.to_string(), vec![ms])),
        }
    }

    /// Adds every sample of `other` (e.g. from a parallel task).
    pub fn merge(&mut self, other: Timings) {
        for (op, samples) in other.ops {
            for ms in samples {
                self.record(&op, Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }

    pub fn summaries(&self) -> Vec<OpSummary> {
        self.ops
            .iter()
            .filter_map(|(op, v)| OpSummary::from_ms(op, v))
            .collect()
    }
}

/// Times one awaited call and records it under `op`.
#[macro_export]
macro_rules! timed {
    ($timings:expr, $op:expr, $call:expr) => {{
        let start = std::time::Instant::now();
        let r = $call.await;
        if r.is_ok() {
            $timings.record($op, start.elapsed());
        }
        r
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&hundred, 90.0).unwrap() - 90.1).abs() < 1e-9);
        assert!((percentile(&hundred, 99.0).unwrap() - 99.01).abs() < 1e-9);
    }

    #[test]
    fn percentile_of_one_and_none() {
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_counts() {
        let s = OpSummary::from_ms("X", &[30.0, 10.0, 20.0]).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.min_ms, 10.0);
        assert_eq!(s.median_ms, 20.0);
        assert_eq!(s.max_ms, 30.0);
        assert_eq!(s.mean_ms, 20.0);
        assert!((s.p90_ms - 28.0).abs() < 1e-9);
        assert!(OpSummary::from_ms("X", &[]).is_none());
    }

    #[test]
    fn timings_keep_first_appearance_order_and_merge() {
        let mut a = Timings::default();
        a.record("B", Duration::from_millis(2));
        a.record("A", Duration::from_millis(1));
        let mut b = Timings::default();
        b.record("A", Duration::from_millis(3));
        b.record("C", Duration::from_millis(4));
        a.merge(b);
        let s = a.summaries();
        let names: Vec<&str> = s.iter().map(|s| s.op.as_str()).collect();
        assert_eq!(names, ["B", "A", "C"]);
        assert_eq!(s[1].count, 2);
        assert!((s[1].median_ms - 2.0).abs() < 1e-9);
    }
}
