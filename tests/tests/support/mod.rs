//! Helpers shared by the cgroup manager tests (cgroups_limits, cgroups_v2):
//! real processes placed in a `husk-test-*` subtree before they start working.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};

use husk_cgroups::{self as cgroups, CgroupManager};
use husk_tests::cgroup::TestCgroup;
use oci_spec::runtime::LinuxResources;

/// `linux.resources` from JSON.
pub fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// A shell that waits for a line on stdin, then runs `script` — so it can be
/// placed and limited before it starts working.
pub fn held(script: &str) -> Child {
    Command::new("sh")
        .args(["-c", &format!("read _go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh")
}

/// Let a [`held`] shell go on.
pub fn release(child: &mut Child) {
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "go").expect("release");
}

/// A held shell in the cgroup `leaf` of `tcg`, with the resources `json` set.
pub fn placed(
    tcg: &TestCgroup,
    leaf: &str,
    json: &str,
    script: &str,
) -> (Box<dyn CgroupManager>, Child) {
    let mgr = cgroups::open(Some(&tcg.path(leaf)), leaf).expect("open");
    let r = res(json);
    mgr.validate(&r).expect("validate");
    let child = held(script);
    mgr.apply(child.id() as i32).expect("apply");
    mgr.set(&r).expect("set");
    (mgr, child)
}
