//! The real `husk` binary on a cgroup v1/hybrid host (the development
//! machines): memory, pids and cpu limits from config.json are enforced
//! through the v1 controllers. On a pure v2 host each test says it is skipped
//! (tests/tests/cgroups_v2_husk.rs covers v2 in the VM).

use husk_tests::oci::Ctr;
use husk_tests::{require_cgroup_v1, wait_for};
use serde_json::json;

#[test]
fn memory_hog_is_oom_killed_with_exit_137() {
    require_cgroup_v1!();
    let c = Ctr::new(
        "oom1",
        "exec tail /dev/zero",
        json!({"memory": {"limit": 33554432}}),
    );
    let out = c.run_foreground();
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn memory_limit_lands_in_v1_and_oom_is_counted() {
    require_cgroup_v1!();
    let c = Ctr::new(
        "oom1d",
        "sleep 1; exec tail /dev/zero",
        json!({"memory": {"limit": 33554432}}),
    );
    c.run_detached();
    assert_eq!(c.file("memory.limit_in_bytes"), "33554432");
    wait_for("the container to be OOM-killed", 60, || {
        c.status() == "stopped"
    });
    assert!(c.keyed("memory.oom_control", "oom_kill") >= 1);
    assert!(c.file("memory.failcnt").parse::<u64>().unwrap_or(0) >= 1);
}

#[test]
fn fork_bomb_stops_at_pids_max() {
    require_cgroup_v1!();
    let c = Ctr::new(
        "pids1",
        "while :; do sleep 60 & done",
        json!({"pids": {"limit": 12}}),
    );
    c.run_detached();
    assert_eq!(c.file("pids.max"), "12");
    wait_for("fork failures", 60, || c.keyed("pids.events", "max") >= 1);
    let current: u64 = c.file("pids.current").parse().expect("pids.current");
    assert!(current <= 12, "pids.current {current}");
}

#[test]
fn busy_loop_under_cfs_quota_is_throttled() {
    require_cgroup_v1!();
    let c = Ctr::new(
        "cpu1",
        "while :; do :; done",
        json!({"cpu": {"quota": 10000, "period": 100000}}),
    );
    c.run_detached();
    assert_eq!(c.file("cpu.cfs_quota_us"), "10000");
    assert_eq!(c.file("cpu.cfs_period_us"), "100000");
    wait_for("throttling", 60, || c.keyed("cpu.stat", "nr_throttled") > 0);
}

#[test]
fn delete_leaves_no_cgroup_behind_in_any_hierarchy() {
    require_cgroup_v1!();
    let c = Ctr::new("del1", "sleep 600", json!({"pids": {"limit": 10}}));
    c.run_detached();
    let dirs: Vec<_> = ["memory", "pids", "cpu", "freezer", "unified"]
        .iter()
        .map(|h| c.cgroup_v1(h))
        .collect();
    for d in &dirs {
        assert!(d.is_dir(), "{} missing", d.display());
    }
    c.ok(&["delete", "--force", &c.id]);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

/// Two pods of one QoS class share `kubepods/besteffort`: one may find it
/// made by the other but with its cpuset not yet filled in. A group below
/// such a half-made parent still gets the root's cpus and mems (filling the
/// parent in too) and takes processes, instead of failing with ENOSPC.
#[test]
fn a_group_under_a_half_made_cpuset_parent_takes_processes() {
    require_cgroup_v1!();
    let tcg = husk_tests::cgroup::TestCgroup::new();
    let cpuset = std::path::Path::new("/sys/fs/cgroup/cpuset");
    let parent = cpuset.join(tcg.path("half-made").trim_start_matches('/'));
    // mkdir -p without filling anything in: what the other pod had got to.
    std::fs::create_dir_all(&parent).expect("mkdir the half-made parent");
    let read = |d: &std::path::Path, f: &str| {
        std::fs::read_to_string(d.join(f))
            .unwrap_or_else(|e| panic!("read {}/{f}: {e}", d.display()))
            .trim()
            .to_string()
    };
    assert_eq!(
        read(&parent, "cpuset.cpus"),
        "",
        "a new v1 cpuset starts empty"
    );

    let path = tcg.path("half-made/c1");
    let mgr = husk_cgroups::open(Some(&path), "c1").expect("open");
    let mut child = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn sleep");
    let applied = mgr.apply(child.id() as i32);
    let _ = child.kill();
    let _ = child.wait();
    applied.expect("apply under a half-made parent");
    for f in ["cpuset.cpus", "cpuset.mems"] {
        assert_eq!(read(&parent, f), read(cpuset, f), "{f} of the parent");
        assert_eq!(
            read(&parent.join("c1"), f),
            read(cpuset, f),
            "{f} of the group"
        );
    }
    mgr.destroy().expect("destroy");
    let _ = std::fs::remove_dir(&parent);
}
