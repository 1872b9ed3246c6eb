//! The real `husk` binary on cgroup v2 (in the test VM, `scripts/vm-test`):
//! limits from config.json are enforced, `pause`/`resume`, `update`,
//! `events --stats` and `delete` act on the container's cgroup. On a v1/hybrid
//! host each test says it is skipped and returns (tests/tests/cgroups_limits.rs
//! covers v1 through the library).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use husk_tests::cgroup::TestCgroup;
use husk_tests::{bins, require_root, rootfs};
use serde_json::{Value, json};

macro_rules! require_v2 {
    () => {
        require_root!();
        if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            eprintln!("skipped: needs a cgroup v2 host (run scripts/vm-test)");
            return;
        }
    };
}

/// A container's bundle, state root and cgroup; deleted (forcibly) on drop.
struct Ctr {
    id: String,
    root: tempfile::TempDir,
    bundle: tempfile::TempDir,
    shared: tempfile::TempDir,
    tcg: TestCgroup,
}

impl Ctr {
    /// A busybox container running `script`, with `resources` as linux.resources.
    /// The host dir `shared()` is bind-mounted at /shared.
    fn new(name: &str, script: &str, resources: Value) -> Ctr {
        husk_tests::become_subreaper();
        let c = Ctr {
            id: format!("{name}-{}", husk_tests::unique_suffix()),
            root: tempfile::tempdir().expect("root"),
            bundle: tempfile::tempdir().expect("bundle"),
            shared: tempfile::tempdir().expect("shared"),
            tcg: TestCgroup::new(),
        };

        let mut devices = vec![json!({"allow": false, "access": "rwm"})];
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
            devices.push(json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}));
        }
        devices.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
        let mut res = resources;
        if res.get("devices").is_none() {
            res["devices"] = Value::Array(devices);
        }
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "env": ["PATH=/bin:/sbin:/usr/bin"],
                "cwd": "/"
            },
            "root": {"path": shared_rootfs(), "readonly": true},
            "hostname": "cg",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
                {"destination": "/shared", "type": "bind", "source": c.shared.path(), "options": ["rbind", "rw"]}
            ],
            "linux": {
                "cgroupsPath": c.tcg.path("ctr"),
                "resources": res,
                "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]
            }
        });
        fs::write(c.bundle.path().join("config.json"), config.to_string()).expect("config.json");
        c
    }

    fn husk(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bins::bin("husk"));
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self
            .husk(args)
            .stdin(Stdio::null())
            .output()
            .expect("run husk");
        assert!(
            out.status.success(),
            "husk {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `husk run` in the foreground: the container's exit status and output.
    fn run_foreground(&self) -> Output {
        let b = self.bundle.path().to_str().expect("utf-8").to_string();
        self.husk(&["run", "--bundle", &b, &self.id])
            .stdin(Stdio::null())
            .output()
            .expect("husk run")
    }

    fn run_detached(&self) {
        let b = self.bundle.path().to_str().expect("utf-8").to_string();
        // The container inherits husk's stdio: a pipe would stay open for as
        // long as the container runs, so errors go through a file.
        let err_path = self.bundle.path().join("run.stderr");
        let err = fs::File::create(&err_path).expect("stderr file");
        let status = self
            .husk(&["run", "--detach", "--bundle", &b, &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .expect("husk run -d");
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        assert!(status.success(), "run -d: {stderr}");
    }

    fn status(&self) -> String {
        let v: Value = serde_json::from_str(&self.ok(&["state", &self.id])).expect("state json");
        v["status"].as_str().expect("status").to_string()
    }

    fn cgroup(&self) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(self.tcg.name())
            .join("ctr")
    }

    fn file(&self, name: &str) -> String {
        fs::read_to_string(self.cgroup().join(name))
            .unwrap_or_else(|e| panic!("read {name}: {e}"))
            .trim()
            .to_string()
    }

    fn keyed(&self, name: &str, key: &str) -> u64 {
        self.file(name)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} has no {key}"))
    }

    fn shared(&self) -> &Path {
        self.shared.path()
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = self
            .husk(&["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One read-only busybox rootfs for every container of this suite: making one
/// costs tens of seconds under TCG. Built once under the build dir, atomically.
fn shared_rootfs() -> PathBuf {
    let dir = bins::build_dir().join("cgroups-v2-rootfs");
    if !dir.join("bin/busybox").exists() {
        fs::create_dir_all(bins::build_dir()).expect("build dir");
        let tmp = tempfile::tempdir_in(bins::build_dir()).expect("tmp rootfs");
        rootfs::busybox_rootfs(tmp.path());
        // Another test process may have won the race: theirs is as good.
        let made = tmp.keep();
        if fs::rename(&made, &dir).is_err() {
            let _ = fs::remove_dir_all(&made);
        }
    }
    dir
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_counter(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn memory_hog_is_oom_killed_with_exit_137() {
    require_v2!();
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
    let parent = Path::new("/sys/fs/cgroup").join(c.tcg.name());
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
    require_v2!();
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
    require_v2!();
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
    require_v2!();
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
    require_v2!();
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
    require_v2!();
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
    require_v2!();
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
    require_v2!();
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
    require_v2!();
    let c = Ctr::new("del", "sleep 600", json!({"pids": {"limit": 10}}));
    c.run_detached();
    assert!(c.cgroup().is_dir());
    c.ok(&["kill", &c.id, "KILL"]);
    wait_for("the container to stop", 60, || c.status() == "stopped");
    c.ok(&["delete", &c.id]);
    assert!(!c.cgroup().exists(), "{} left behind", c.cgroup().display());
}
