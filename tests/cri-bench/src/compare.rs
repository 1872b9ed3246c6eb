//! `cri-bench compare A.json B.json`: B's figures as ratios of A's.

use std::fmt::Write as _;

use crate::report::Report;

/// One compared row: A's value, B's value, B / A.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub unit: String,
    pub a: f64,
    pub b: f64,
    /// None when A is zero.
    pub ratio: Option<f64>,
}

fn row(name: String, unit: &str, a: f64, b: f64) -> Row {
    Row {
        name,
        unit: unit.into(),
        a,
        b,
        ratio: (a != 0.0).then(|| b / a),
    }
}

/// Rows for every operation (median and p90) and metric present in both reports.
pub fn compare(a: &Report, b: &Report) -> Vec<Row> {
    let mut rows = Vec::new();
    for oa in &a.ops {
        if let Some(ob) = b.ops.iter().find(|o| o.op == oa.op) {
            rows.push(row(
                format!("{} median", oa.op),
                "ms",
                oa.median_ms,
                ob.median_ms,
            ));
            rows.push(row(format!("{} p90", oa.op), "ms", oa.p90_ms, ob.p90_ms));
        }
    }
    for ma in &a.metrics {
        if let Some(mb) = b
            .metrics
            .iter()
            .find(|m| m.name == ma.name && m.unit == ma.unit)
        {
            rows.push(row(ma.name.clone(), &ma.unit, ma.value, mb.value));
        }
    }
    rows
}

/// The comparison as a table; notes rows present in only one report.
pub fn table(a: &Report, b: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "A: {} {} ({})", a.runtime, a.mode, a.started_at);
    let _ = writeln!(s, "B: {} {} ({})", b.runtime, b.mode, b.started_at);
    if a.mode != b.mode {
        let _ = writeln!(s, "note: the reports are of different modes");
    }
    let _ = writeln!(s, "{:<40} {:>12} {:>12} {:>8}", "", "A", "B", "B/A");
    for r in compare(a, b) {
        let ratio = r.ratio.map(|x| format!("{x:.2}")).unwrap_or("-".into());
        let _ = writeln!(
            s,
            "{:<40} {:>12.2} {:>12.2} {:>8}  {}",
            r.name, r.a, r.b, ratio, r.unit
        );
    }
    let only = |x: &Report, y: &Report| -> Vec<String> {
        x.ops
            .iter()
            .filter(|o| !y.ops.iter().any(|p| p.op == o.op))
            .map(|o| o.op.clone())
            .chain(
                x.metrics
                    .iter()
                    .filter(|m| !y.metrics.iter().any(|n| n.name == m.name))
                    .map(|m| m.name.clone()),
            )
            .collect()
    };
    for (label, names) in [("A", only(a, b)), ("B", only(b, a))] {
        if !names.is_empty() {
            let _ = writeln!(s, "only in {label}: {}", names.join(", "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Metric;
    use crate::stats::OpSummary;

    fn report(runtime: &str, run_ms: &[f64], rss: f64, extra: Option<&str>) -> Report {
        let mut ops = vec![OpSummary::from_ms("RunPodSandbox", run_ms).unwrap()];
        if let Some(e) = extra {
            ops.push(OpSummary::from_ms(e, &[1.0]).unwrap());
        }
        Report {
            mode: "density".into(),
            endpoint: "unix:///x".into(),
            runtime: runtime.into(),
            run_id: "r".into(),
            started_at: "t".into(),
            host: "h".into(),
            count: run_ms.len(),
            concurrency: None,
            ops,
            metrics: vec![Metric::new("daemon RSS idle", rss, "MiB")],
            processes: vec![],
        }
    }

    #[test]
    fn ratios_are_b_over_a() {
        let a = report("containerd", &[100.0, 100.0, 200.0], 40.0, None);
        let b = report("husklet", &[50.0, 50.0, 60.0], 10.0, None);
        let rows = compare(&a, &b);
        let med = rows
            .iter()
            .find(|r| r.name == "RunPodSandbox median")
            .unwrap();
        assert_eq!((med.a, med.b, med.ratio), (100.0, 50.0, Some(0.5)));
        let rss = rows.iter().find(|r| r.name == "daemon RSS idle").unwrap();
        assert_eq!(rss.ratio, Some(0.25));
        assert_eq!(rss.unit, "MiB");
    }

    #[test]
    fn zero_baseline_has_no_ratio_and_unmatched_rows_are_listed() {
        let a = report("a", &[0.0], 0.0, Some("OnlyA"));
        let b = report("b", &[5.0], 1.0, Some("OnlyB"));
        assert!(compare(&a, &b).iter().all(|r| r.ratio.is_none()));
        let t = table(&a, &b);
        assert!(t.contains("only in A: OnlyA"), "{t}");
        assert!(t.contains("only in B: OnlyB"), "{t}");
    }
}
