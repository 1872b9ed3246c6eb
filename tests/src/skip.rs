//! Visible skips.
//!
//! nextest counts a test that returns early as passed, so a test that cannot
//! run here says so through [`skip!`](crate::skip): the reason is printed and
//! appended to the file named by `$HUSK_SKIP_LOG` (one line per skip:
//! `binary::test<TAB>kind<TAB>reason`). `scripts/test` sums that file up after
//! each run and fails when a test skipped for a kind of reason that this
//! host should not have (`scripts/lib/skip-report`).
//!
//! Kinds: `root`, `cgroup-v1`, `cgroup-v2`, `husk-only` (a husk-specific check
//! while another runtime is under test), `tool` (a peer program is missing),
//! `k8s-tools` (the Kubernetes client binaries are not unpacked: allowed
//! only when they are absent).

use std::io::Write as _;

/// Record that the running test skips, and why; the caller then returns.
pub fn record(kind: &str, reason: &str) {
    let test = test_name();
    eprintln!("skipped ({kind}): {reason}");
    let Some(path) = std::env::var_os("HUSK_SKIP_LOG") else {
        return;
    };
    let line = format!("{test}\t{kind}\t{}\n", reason.replace(['\t', '\n'], " "));
    // One short O_APPEND write per line: lines from parallel tests never interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        // A skip that cannot be recorded must not pass silently.
        panic!("record skip in {}: {e}", path.to_string_lossy());
    }
}

/// `binary::test` of the running test: libtest names the test's thread after
/// the test, and the binary is the executable without cargo's hash suffix.
fn test_name() -> String {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_else(|| "?".into());
    format!("{binary}::{test}")
}

/// Skip the running test: record `kind` and `reason` (see the module doc) and return.
#[macro_export]
macro_rules! skip {
    ($kind:expr, $($reason:tt)+) => {{
        $crate::skip::record($kind, &format!($($reason)+));
        return;
    }};
}
