//! A busybox container run by the real `husk` binary, for the cgroup suites
//! (tests/tests/cgroups_*husk.rs): bundle, state root, a `husk-test-*`
//! cgroup subtree and a host dir shared at /shared; deleted on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cgroup::TestCgroup;
use crate::{bins, rootfs};

/// A container's bundle, state root and cgroup; deleted (forcibly) on drop.
pub struct Ctr {
    pub id: String,
    root: tempfile::TempDir,
    bundle: tempfile::TempDir,
    shared: tempfile::TempDir,
    pub tcg: TestCgroup,
}

impl Ctr {
    /// A busybox container running `script`, with `resources` as linux.resources.
    /// The host dir `shared()` is bind-mounted at /shared.
    pub fn new(name: &str, script: &str, resources: Value) -> Ctr {
        crate::become_subreaper();
        let c = Ctr {
            id: format!("{name}-{}", crate::unique_suffix()),
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

    pub fn husk(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bins::bin("husk"));
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd
    }

    pub fn ok(&self, args: &[&str]) -> String {
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
    pub fn run_foreground(&self) -> Output {
        let b = self.bundle.path().to_str().expect("utf-8").to_string();
        self.husk(&["run", "--bundle", &b, &self.id])
            .stdin(Stdio::null())
            .output()
            .expect("husk run")
    }

    pub fn run_detached(&self) {
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

    pub fn status(&self) -> String {
        let v: Value = serde_json::from_str(&self.ok(&["state", &self.id])).expect("state json");
        v["status"].as_str().expect("status").to_string()
    }

    /// The container's cgroup (cgroup v2).
    pub fn cgroup(&self) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(self.tcg.name())
            .join("ctr")
    }

    /// The container's cgroup in one v1 hierarchy (`memory`, `pids`, `cpu`).
    pub fn cgroup_v1(&self, hierarchy: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(self.tcg.name())
            .join("ctr")
    }

    pub fn file(&self, name: &str) -> String {
        fs::read_to_string(self.cgroup().join(name))
            .unwrap_or_else(|e| panic!("read {name}: {e}"))
            .trim()
            .to_string()
    }

    pub fn keyed(&self, name: &str, key: &str) -> u64 {
        self.file(name)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} has no {key}"))
    }

    pub fn shared(&self) -> &Path {
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
pub fn shared_rootfs() -> PathBuf {
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

/// Poll `f` every 50 ms until it holds; panic after `secs`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A number written to a file by a container, 0 while unreadable.
pub fn read_counter(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
