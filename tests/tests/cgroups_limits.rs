//! Limits enforced through `husk_cgroups` on whatever layout the host
//! has: v1 on the development machines (through the v1 files), v2 in the test
//! VM. Real processes are placed in a `husk-test-*` subtree and limited.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use husk_cgroups::{self as cgroups, CgroupManager};
use husk_tests::cgroup::TestCgroup;
use husk_tests::{require_root, wait_for};
use support::{placed, release, res};

fn memory_json(limit: u64, swap_accounted: bool) -> String {
    // No swap beyond the limit, so the hog is killed instead of swapping.
    if swap_accounted {
        format!(r#"{{"memory":{{"limit":{limit},"swap":{limit}}}}}"#)
    } else {
        format!(r#"{{"memory":{{"limit":{limit}}}}}"#)
    }
}

fn swap_accounted(mgr: &dyn CgroupManager) -> bool {
    mgr.dirs().iter().any(|d| {
        let parent = d
            .parent()
            .and_then(|p| p.parent())
            .expect("test subtree parent");
        parent.join("memory.memsw.limit_in_bytes").exists()
            || parent.join("memory.swap.max").exists()
            || husk_tests::cgroup::is_v2()
    })
}

#[test]
fn memory_hog_is_oom_killed() {
    require_root!();
    let tcg = TestCgroup::new();
    let probe = cgroups::open(Some(&tcg.path("probe")), "probe").expect("open");
    let json = memory_json(32 << 20, swap_accounted(probe.as_ref()));
    // tail keeps the whole (endless) line in memory.
    let (mgr, mut child) = placed(&tcg, "hog", &json, "exec tail /dev/zero");
    release(&mut child);
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    let stats = mgr.stats().expect("stats");
    assert_eq!(stats.memory.usage.limit, 32 << 20);
    let oom_kills = stats.memory.raw.get("oom_kill").copied().unwrap_or(0);
    let failcnt = stats.memory.usage.failcnt;
    assert!(
        oom_kills >= 1 || failcnt >= 1,
        "oom_kill {oom_kills}, failcnt {failcnt}"
    );
    mgr.destroy().expect("destroy");
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    require_root!();
    let tcg = TestCgroup::new();
    // Start sleepers until a fork fails: dash then exits with "Cannot fork",
    // leaving the sleepers behind in the cgroup.
    let script = "n=0; while [ $n -lt 100 ]; do sleep 60 & n=$((n+1)); done; echo started $n";
    let (mgr, mut child) = placed(&tcg, "forks", r#"{"pids":{"limit":8}}"#, script);
    release(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peak = 0;
    while child.try_wait().expect("try_wait").is_none() {
        peak = peak.max(mgr.pids().expect("pids").len());
        assert!(Instant::now() < deadline, "the shell never hit the limit");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = mgr.stats().expect("stats");
    assert_eq!(stats.pids.limit, 8);
    let left = mgr.pids().expect("pids").len();
    assert!(peak <= 8 && left <= 8, "peak {peak}, left {left}");
    assert_eq!(
        left, 7,
        "the sleepers started before the limit are still there"
    );
    // The sleepers hold the output pipes open: kill them before reading.
    mgr.destroy().expect("destroy");
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("started 100"),
        "all 100 forks succeeded: {stdout}"
    );
    assert!(stderr.to_lowercase().contains("fork"), "stderr: {stderr}");
}

#[test]
fn busy_loop_under_quota_is_throttled() {
    require_root!();
    let tcg = TestCgroup::new();
    let (mgr, mut child) = placed(
        &tcg,
        "busy",
        r#"{"cpu":{"quota":10000,"period":100000,"shares":512}}"#,
        "while :; do :; done",
    );
    release(&mut child);
    wait_for("throttling", 30, || {
        mgr.stats().expect("stats").cpu.throttling.throttled_periods > 0
    });
    let s = mgr.stats().expect("stats");
    assert!(s.cpu.throttling.periods >= s.cpu.throttling.throttled_periods);
    mgr.destroy().expect("destroy");
    child.wait().expect("wait");
}

#[test]
fn cpuset_pins_to_the_chosen_cpu() {
    require_root!();
    let tcg = TestCgroup::new();
    let (mgr, mut child) = placed(
        &tcg,
        "pin",
        r#"{"cpu":{"cpus":"0","mems":"0"}}"#,
        "grep Cpus_allowed_list /proc/self/status",
    );
    release(&mut child);
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.split_whitespace().last(), Some("0"), "{text}");
    assert_eq!(mgr.stats().expect("stats").cpuset.cpus, vec![0]);
    mgr.destroy().expect("destroy");
}

#[test]
fn bad_resources_are_refused_before_anything_is_created() {
    require_root!();
    let tcg = TestCgroup::new();
    let mgr = cgroups::open(Some(&tcg.path("bad")), "bad").expect("open");
    for (json, field) in [
        (r#"{"memory":{"limit":-5}}"#, "linux.resources.memory.limit"),
        (r#"{"cpu":{"quota":-7}}"#, "linux.resources.cpu.quota"),
        (r#"{"cpu":{"cpus":"x-y"}}"#, "linux.resources.cpu.cpus"),
        (r#"{"pids":{"limit":-2}}"#, "linux.resources.pids.limit"),
        (
            r#"{"unified":{"nosuch.file":"1"}}"#,
            "linux.resources.unified",
        ),
        (
            r#"{"hugepageLimits":[{"pageSize":"3MB","limit":1}]}"#,
            "linux.resources.hugepageLimits[0]",
        ),
    ] {
        let err = mgr.validate(&res(json)).expect_err(json).to_string();
        assert!(err.starts_with(field), "{json}: {err}");
        let err = mgr.set(&res(json)).expect_err(json).to_string();
        assert!(err.starts_with(field), "{json}: {err}");
    }
    assert!(tcg.dirs().is_empty(), "nothing created: {:?}", tcg.dirs());
}

#[test]
fn update_changes_the_memory_limit_of_a_running_process() {
    require_root!();
    let tcg = TestCgroup::new();
    let (mgr, mut child) = placed(&tcg, "upd", r#"{"memory":{"limit":67108864}}"#, "sleep 60");
    assert_eq!(mgr.stats().expect("stats").memory.usage.limit, 64 << 20);
    mgr.set(&res(r#"{"memory":{"limit":134217728}}"#))
        .expect("raise");
    assert_eq!(mgr.stats().expect("stats").memory.usage.limit, 128 << 20);
    mgr.set(&res(r#"{"memory":{"limit":-1}}"#))
        .expect("unlimit");
    assert!(mgr.stats().expect("stats").memory.usage.limit > 1 << 40);
    release(&mut child);
    mgr.destroy().expect("destroy");
    assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
}
