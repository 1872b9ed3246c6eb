//! The real `husk` binary on cgroup v2 (in the test VM, `scripts/vm-test`):
//! limits from config.json are enforced, `pause`/`resume`, `update`,
//! `events --stats` and `delete` act on the container's cgroup. On a v1/hybrid
//! host each test says it is skipped and returns (tests/tests/cgroups_limits.rs
//! covers v1 through the library).

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use husk_tests::oci::Ctr;
use husk_tests::{read_counter, require_cgroup_v2, wait_for};
use serde_json::{Value, json};

#[test]
fn memory_hog_is_oom_killed_with_exit_137() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "oom",
        "exec tail /dev/zero",
        json!({"memory": {"limit": 33554432, "swap": 33554432}}),
    );
    let out = c.run_foreground();
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The container's cgroup is gone after a foreground run; memory.events of
    // the parent counts its children's OOM kills.
    let parent = c.cgroup().parent().expect("the test subtree").to_path_buf();
    let events = fs::read_to_string(parent.join("memory.events")).expect("memory.events");
    let kills: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.parse().ok())
        .expect("oom_kill line");
    assert!(kills >= 1, "{events}");
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "pids",
        "while :; do sleep 60 & done",
        json!({"pids": {"limit": 12}}),
    );
    c.run_detached();
    wait_for("fork failures", 60, || c.keyed("pids.events", "max") >= 1);
    let current: u64 = c.file("pids.current").parse().expect("pids.current");
    assert!(current <= 12, "pids.current {current}");
    assert_eq!(c.file("pids.max"), "12");
}

#[test]
fn busy_loop_under_cpu_max_is_throttled() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "cpu",
        "while :; do :; done",
        json!({"cpu": {"quota": 10000, "period": 100000}}),
    );
    c.run_detached();
    assert_eq!(c.file("cpu.max"), "10000 100000");
    wait_for("throttling", 60, || c.keyed("cpu.stat", "nr_throttled") > 0);
}

#[test]
fn cpuset_pins_the_container_to_the_chosen_cpu() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "cpuset",
        "grep Cpus_allowed_list /proc/self/status",
        json!({"cpu": {"cpus": "1", "mems": "0"}}),
    );
    let out = c.run_foreground();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.split_whitespace().last(), Some("1"), "{stdout}");
}

#[test]
fn denied_device_cannot_be_opened_while_dev_null_works() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "dev",
        "echo hi > /dev/null && echo null-ok; \
         mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem; echo mem-status=$?",
        json!({}),
    );
    let out = c.run_foreground();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("null-ok"), "{stdout} {stderr}");
    assert!(!stdout.contains("mem-status=0"), "{stdout} {stderr}");
    assert!(stdout.contains("mem-status="), "{stdout} {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
}

#[test]
fn pause_freezes_and_resume_thaws() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "pause",
        "i=0; while :; do i=$((i+1)); echo $i > /shared/n; done",
        json!({}),
    );
    c.run_detached();
    let n = c.shared().join("n");
    wait_for("the counter", 60, || read_counter(&n) > 10);
    c.ok(&["pause", &c.id]);
    assert_eq!(c.status(), "paused");
    assert_eq!(c.keyed("cgroup.events", "frozen"), 1);
    let a = read_counter(&n);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read_counter(&n), a, "the counter moved while paused");
    c.ok(&["resume", &c.id]);
    assert_eq!(c.status(), "running");
    wait_for("the counter to move again", 60, || read_counter(&n) > a);
}

#[test]
fn update_changes_limits_of_a_running_container() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "update",
        "sleep 600",
        json!({"memory": {"limit": 67108864}}),
    );
    c.run_detached();
    assert_eq!(c.file("memory.max"), "67108864");
    c.ok(&["update", "--memory", "128m", "--pids-limit", "42", &c.id]);
    assert_eq!(c.file("memory.max"), "134217728");
    assert_eq!(c.file("pids.max"), "42");
    let mut child = c
        .husk(&["update", "--resources", "-", &c.id])
        .stdin(Stdio::piped())
        .spawn()
        .expect("husk update -r -");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(br#"{"cpu":{"quota":20000,"period":100000},"memory":{"limit":100663296}}"#)
            .expect("write");
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(c.file("cpu.max"), "20000 100000");
    assert_eq!(c.file("memory.max"), "100663296");
    // Bad input: refused with the field named, nothing changed.
    let out = c
        .husk(&["update", "--memory", "-5", &c.id])
        .output()
        .expect("husk update");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memory"), "{stderr}");
    assert_eq!(c.file("memory.max"), "100663296");
}

#[test]
fn events_stats_agree_with_the_cgroup_files() {
    require_cgroup_v2!();
    let c = Ctr::new(
        "events",
        "sleep 600 & sleep 600 & wait",
        json!({"memory": {"limit": 134217728}, "pids": {"limit": 30}}),
    );
    c.run_detached();
    wait_for("three processes", 60, || c.file("pids.current") == "3");
    let v: Value = serde_json::from_str(&c.ok(&["events", "--stats", &c.id])).expect("events json");
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], c.id.as_str());
    let d = &v["data"];
    assert_eq!(d["pids"]["current"], 3);
    assert_eq!(d["pids"]["limit"], 30);
    assert_eq!(d["memory"]["usage"]["limit"], 134217728u64);
    let usage = d["memory"]["usage"]["usage"].as_u64().expect("usage");
    let current: u64 = c.file("memory.current").parse().expect("memory.current");
    assert!(usage.abs_diff(current) < 1 << 20, "{usage} vs {current}");
    assert!(d["cpu"]["usage"]["total"].as_u64().expect("cpu total") > 0);
}

#[test]
fn delete_leaves_no_cgroup_behind() {
    require_cgroup_v2!();
    let c = Ctr::new("del", "sleep 600", json!({"pids": {"limit": 10}}));
    c.run_detached();
    assert!(c.cgroup().is_dir());
    c.ok(&["kill", &c.id, "KILL"]);
    wait_for("the container to stop", 60, || c.status() == "stopped");
    c.ok(&["delete", &c.id]);
    assert!(!c.cgroup().exists(), "{} left behind", c.cgroup().display());
}

/// An exec'd process is in the container's cgroup: created there (clone3's
/// CLONE_INTO_CGROUP) when it can be, moved in when the cgroup refuses a new
/// process (pids.max reached: a move is not limited, as with runc).
#[test]
fn an_exec_runs_in_the_container_cgroup() {
    require_cgroup_v2!();
    let c = Ctr::new("exec", "sleep 300", json!({"pids": {"limit": 2}}));
    c.run_detached();
    let want = format!(
        "0::/{}",
        c.cgroup()
            .strip_prefix("/sys/fs/cgroup")
            .expect("under the mount")
            .display()
    );
    let pid_of = |n: &str| -> i32 {
        let file = c.shared().join(format!("{n}.pid"));
        c.ok(&[
            "exec",
            "--detach",
            "--pid-file",
            &file.to_string_lossy(),
            &c.id,
            "sleep",
            "300",
        ]);
        fs::read_to_string(&file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    };
    // The second fills pids.max (init + 1); the third is over it.
    for n in ["second", "third"] {
        let pid = pid_of(n);
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/pid/cgroup");
        assert_eq!(cg.trim(), want, "the {n} process's cgroup");
    }
    assert_eq!(c.file("pids.current"), "3");
}
