//! cgroup v2 only behaviour of `husk_cgroups`: the eBPF device
//! filter, unified keys, cgroup.freeze, cgroup.kill, stats against the files.
//! Runs in the test VM (`scripts/vm-test`); on a v1/hybrid host each test
//! says it is skipped and returns.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use husk_cgroups::{self as cgroups, CgroupError, CgroupManager};
use husk_tests::cgroup::{self as test_cgroup, TestCgroup};
use husk_tests::{read_counter, require_cgroup_v2, wait_for};
use support::{placed, release, res};

/// A file of the manager's (single, v2) cgroup, trimmed.
fn file(mgr: &dyn CgroupManager, name: &str) -> String {
    test_cgroup::read(&mgr.dirs()[0].join(name))
}

const DENY_ALL_BUT_NULL: &str = r#"{"devices":[
    {"allow":false,"access":"rwm"},
    {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#;

#[test]
fn device_filter_denies_what_the_rules_deny() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let script = format!(
        "head -c 0 /dev/null && echo null-ok; \
         mknod {d}/mem c 1 1 || echo mknod-denied; \
         head -c 1 /dev/zero >/dev/null || echo zero-denied"
    );
    let (mgr, mut child) = placed(&tcg, "dev", DENY_ALL_BUT_NULL, &script);
    release(&mut child);
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("null-ok"), "{stdout} {stderr}");
    assert!(stdout.contains("mknod-denied"), "{stdout} {stderr}");
    assert!(stdout.contains("zero-denied"), "{stdout} {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert!(!dir.path().join("mem").exists());
    mgr.destroy().expect("destroy");
}

#[test]
fn device_filter_updates_replace_the_program_instead_of_piling_up() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let (mgr, mut child) = placed(&tcg, "devupd", DENY_ALL_BUT_NULL, "sleep 60");
    let dir = mgr.dirs()[0].clone();
    assert_eq!(cgroups::v2::bpf::attached(&dir).expect("query").len(), 1);
    // More updates than the kernel's 64-program limit per cgroup: runc's
    // leak failed here with E2BIG.
    for i in 0..70 {
        let allow_zero = i % 2 == 0;
        let json = format!(
            r#"{{"devices":[{{"allow":false,"access":"rwm"}},
                {{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}},
                {{"allow":{allow_zero},"type":"c","major":1,"minor":5,"access":"r"}}]}}"#
        );
        mgr.set(&res(&json))
            .unwrap_or_else(|e| panic!("update {i}: {e}"));
        assert_eq!(
            cgroups::v2::bpf::attached(&dir).expect("query").len(),
            1,
            "after update {i}"
        );
    }
    release(&mut child);
    mgr.destroy().expect("destroy");
    child.wait().expect("wait");
}

#[test]
fn unified_keys_are_written_and_unknown_ones_refused() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let mgr = cgroups::open(Some(&tcg.path("uni")), "uni").expect("open");
    for bad in ["memory.nosuch", "cpu.max.nope", "nosuchcontroller.max"] {
        let json = format!(r#"{{"unified":{{"{bad}":"1"}}}}"#);
        let err = mgr.validate(&res(&json)).expect_err(bad);
        assert!(
            err.to_string()
                .starts_with(&format!("linux.resources.unified.{bad}: ")),
            "{err}"
        );
    }
    assert!(
        tcg.dirs().is_empty(),
        "refused input created {:?}",
        tcg.dirs()
    );

    let (mgr, mut child) = placed(
        &tcg,
        "uni",
        r#"{"unified":{"memory.oom.group":"1","memory.high":"50000000","pids.max":"33"}}"#,
        "sleep 60",
    );
    assert_eq!(file(mgr.as_ref(), "memory.oom.group"), "1");
    assert_eq!(file(mgr.as_ref(), "memory.high"), "49999872"); // page-aligned by the kernel
    assert_eq!(file(mgr.as_ref(), "pids.max"), "33");
    release(&mut child);
    mgr.destroy().expect("destroy");
    child.wait().expect("wait");
}

#[test]
fn limits_land_in_the_v2_files() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let (mgr, mut child) = placed(
        &tcg,
        "files",
        r#"{"memory":{"limit":67108864,"reservation":16777216,"swap":100663296},
            "cpu":{"shares":2048,"quota":20000,"period":50000,"cpus":"1","mems":"0","idle":0},
            "pids":{"limit":50},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#,
        "sleep 60",
    );
    let m = mgr.as_ref();
    assert_eq!(file(m, "memory.max"), "67108864");
    assert_eq!(file(m, "memory.low"), "16777216");
    assert_eq!(file(m, "memory.swap.max"), "33554432");
    assert_eq!(file(m, "cpu.weight"), "79");
    assert_eq!(file(m, "cpu.max"), "20000 50000");
    assert_eq!(file(m, "cpuset.cpus"), "1");
    assert_eq!(file(m, "pids.max"), "50");
    assert_eq!(file(m, "hugetlb.2MB.max"), "4194304");
    release(&mut child);
    mgr.destroy().expect("destroy");
    child.wait().expect("wait");
}

#[test]
fn freeze_stops_a_counter_and_thaw_resumes_it() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let counter = dir.path().join("n");
    let script = format!(
        "i=0; while :; do i=$((i+1)); echo $i > {}; done",
        counter.display()
    );
    let (mgr, mut child) = placed(&tcg, "frz", "{}", &script);
    release(&mut child);
    wait_for("the counter", 20, || read_counter(&counter) >= 10);
    mgr.freeze().expect("freeze");
    assert_eq!(file(mgr.as_ref(), "cgroup.freeze"), "1");
    let a = read_counter(&counter);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_counter(&counter), a, "counter moved while frozen");
    mgr.thaw().expect("thaw");
    wait_for("the counter to move again", 20, || {
        read_counter(&counter) > a
    });
    mgr.destroy().expect("destroy");
    assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
}

#[test]
fn stats_agree_with_the_cgroup_files() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let (mgr, mut child) = placed(
        &tcg,
        "st",
        r#"{"memory":{"limit":134217728},"pids":{"limit":40}}"#,
        "sleep 60 & sleep 60 & wait",
    );
    release(&mut child);
    wait_for("three processes", 20, || {
        mgr.pids().expect("pids").len() >= 3
    });
    let s = mgr.stats().expect("stats");
    let m = mgr.as_ref();
    assert_eq!(
        s.pids.current,
        file(m, "pids.current").parse::<u64>().unwrap()
    );
    assert_eq!(s.pids.current, 3);
    assert_eq!(s.pids.limit, 40);
    assert_eq!(s.memory.usage.limit, 134217728);
    let current: u64 = file(m, "memory.current").parse().unwrap();
    // The processes are idle: usage barely moves between the two reads.
    assert!(
        s.memory.usage.usage.abs_diff(current) < 1 << 20,
        "{} vs {current}",
        s.memory.usage.usage
    );
    let usage_usec: u64 = file(m, "cpu.stat")
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(s.cpu.usage.total <= usage_usec * 1000 && s.cpu.usage.total > 0);
    let json = serde_json::to_value(cgroups::Event {
        kind: "stats",
        id: "st",
        data: Some(&s),
    })
    .unwrap();
    assert_eq!(json["data"]["pids"]["current"], 3);
    mgr.destroy().expect("destroy");
    child.wait().expect("wait");
}

#[test]
fn limits_without_a_controller_are_errors_not_no_ops() {
    require_cgroup_v2!();
    let tcg = TestCgroup::new();
    let mgr = cgroups::open(Some(&tcg.path("nope")), "nope").expect("open");
    for (json, field) in [
        (
            r#"{"memory":{"swappiness":10}}"#,
            "linux.resources.memory.swappiness",
        ),
        (
            r#"{"memory":{"disableOOMKiller":true}}"#,
            "linux.resources.memory.disableOOMKiller",
        ),
        (
            r#"{"cpu":{"realtimeRuntime":1000}}"#,
            "linux.resources.cpu.realtimeRuntime",
        ),
        (r#"{"network":{"classID":1}}"#, "linux.resources.network"),
    ] {
        let err = mgr.validate(&res(json)).expect_err(json);
        assert!(
            matches!(err, CgroupError::Unsupported { .. }),
            "{json}: {err:?}"
        );
        assert!(err.to_string().starts_with(field), "{err}");
    }
    assert!(tcg.dirs().is_empty());
}
