//! Driving the `husklet` CLI from tests, with a store root of the test's own.

use std::path::Path;
use std::process::{Command, Output};

/// `husklet --root ROOT`, to add arguments or environment to.
pub fn husklet_command(root: &Path) -> Command {
    let mut c = Command::new(crate::bins::bin("husklet"));
    c.arg("--root").arg(root);
    c
}

/// Run `husklet --root ROOT ARGS…`.
pub fn husklet(root: &Path, args: &[&str]) -> Output {
    husklet_command(root)
        .args(args)
        .output()
        .expect("run husklet")
}

/// Run husklet, panic unless it succeeds; returns stdout.
pub fn husklet_ok(root: &Path, args: &[&str]) -> String {
    let out = husklet(root, args);
    assert!(
        out.status.success(),
        "husklet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Run husklet, panic if it succeeds; returns stderr.
pub fn husklet_fails(root: &Path, args: &[&str]) -> String {
    let out = husklet(root, args);
    assert!(
        !out.status.success(),
        "husklet {args:?} succeeded but should fail"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run husklet with `--output json` and parse what it prints.
pub fn husklet_json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--output", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&husklet_ok(root, &a)).expect("json output")
}

/// How many entries a directory has (0 when it does not exist).
pub fn entry_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}
