//! husk-shim's CRI log: the exact line format (F and P, stdout and stderr,
//! a line over the 16 KiB limit, output without a trailing newline) and
//! ReopenContainerLog after a rotator renamed the file.

mod shim_support;

use husk_tests::require_root;
use shim_support::{Fixture, stream};

#[test]
fn log_lines_are_in_the_cri_format() {
    require_root!();
    let before = husk_shim::time::now();
    let c = Fixture::new(
        &[
            "sh",
            "-c",
            "echo out1; echo err1 >&2; echo; head -c 40000 /dev/zero | tr '\\0' a; echo; \
             echo 'with  spaces'; printf 'no newline'; printf 'err tail' >&2",
        ],
        |_| {},
    );
    c.run(false);
    let rec = c.wait_exit();
    assert_eq!(rec.exit_code, 0, "{rec:?}");
    let after = husk_shim::time::now();
    let lines = c.log();

    let a = |n: usize| "a".repeat(n);
    let want_out: Vec<(String, String)> = [
        ("F", "out1".to_string()),
        ("F", String::new()),
        ("P", a(16384)),
        ("P", a(16384)),
        ("F", a(40000 - 2 * 16384)),
        ("F", "with  spaces".into()),
        ("P", "no newline".into()),
    ]
    .into_iter()
    .map(|(t, s)| (t.to_string(), s))
    .collect();
    assert_eq!(stream(&lines, "stdout"), want_out);
    let want_err = vec![
        ("F".to_string(), "err1".to_string()),
        ("P".into(), "err tail".into()),
    ];
    assert_eq!(stream(&lines, "stderr"), want_err);
    // UTC timestamps taken while the container ran, in order per stream
    // (one format, so they compare as strings).
    for name in ["stdout", "stderr"] {
        let times: Vec<&str> = lines
            .iter()
            .filter(|l| l.stream == name)
            .map(|l| l.time.as_str())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{name} times out of order: {times:?}"
        );
        assert!(
            times
                .iter()
                .all(|t| *t >= before.as_str() && *t <= after.as_str()),
            "{times:?}"
        );
    }
    assert!(
        rec.finished_at >= before && rec.finished_at <= after,
        "{rec:?}"
    );
}

#[test]
fn reopen_log_after_a_rename_writes_a_fresh_file() {
    require_root!();
    let c = Fixture::new(
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 100000 ]; do echo line$i; i=$((i+1)); sleep 0.02; done",
        ],
        |_| {},
    );
    c.run(false);
    let numbers = |path: &std::path::Path| -> Vec<u64> {
        shim_support::parse_log(path)
            .iter()
            .map(|l| {
                l.text
                    .trim_start_matches("line")
                    .parse()
                    .expect("line number")
            })
            .collect()
    };
    husk_tests::wait_for("lines in the log", 10, || numbers(&c.log_path()).len() >= 5);
    let rotated = c.path("ctr.log.1");
    std::fs::rename(c.log_path(), &rotated).expect("rotate the log");
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.ctl().reopen_log().expect("reopen the log");
    husk_tests::wait_for("lines in the new log", 10, || {
        numbers(&c.log_path()).len() >= 5
    });
    c.rt.ok(&["kill", &c.id, "KILL"]);
    c.wait_exit();

    // Every line once, in order, across the two files: nothing lost while
    // the rotator renamed, nothing written twice.
    let old = numbers(&rotated);
    let new = numbers(&c.log_path());
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    assert!(!old.is_empty() && !new.is_empty());
    assert_eq!(
        all,
        (0..all.len() as u64).collect::<Vec<_>>(),
        "old {old:?} new {new:?}"
    );
}
