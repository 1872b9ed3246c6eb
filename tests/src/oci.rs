//! OCI runtime test fixtures: a bundle on a busybox rootfs, a runtime with a
//! state root of the test's own, and helpers to drive `husk` (or, with
//! `HUSK_TEST_RUNTIME=/usr/sbin/runc`, another runtime for conformance).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cgroup::TestCgroup;

/// The runtime under test: `$HUSK_TEST_RUNTIME` when set, else the built `husk`.
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("HUSK_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::bins::bin("husk"),
    }
}

/// Whether the runtime under test is husk itself (husk-specific checks, such
/// as error wording, only run then).
pub fn is_husk() -> bool {
    runtime_bin()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("husk"))
}

/// A runtime with its own `--root` and a cgroup subtree; both removed on drop.
pub struct Runtime {
    pub bin: PathBuf,
    pub root: tempfile::TempDir,
    pub cgroup: TestCgroup,
}

impl Runtime {
    pub fn new() -> Self {
        crate::become_subreaper();
        Runtime {
            bin: runtime_bin(),
            root: tempfile::Builder::new()
                .prefix("husk-test-root-")
                .tempdir()
                .expect("state root"),
            cgroup: TestCgroup::new(),
        }
    }

    /// A command for `<runtime> --root <root> args...`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run and capture.
    pub fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run runtime")
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "{} {args:?} failed ({:?}): {}{}",
            self.bin.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run a command that leaves a container process behind (`create`,
    /// `run -d`, `exec -d`): its stdio must not be a pipe we wait on, since the
    /// container inherits it. Expects success.
    pub fn detached(&self, args: &[&str]) {
        let err = tempfile::tempfile().expect("stderr file");
        let st = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(err.try_clone().expect("dup"))
            .status()
            .expect("run runtime");
        if !st.success() {
            use std::io::{Read, Seek};
            let mut e = err;
            let mut msg = String::new();
            let _ = e.rewind();
            let _ = e.read_to_string(&mut msg);
            panic!("{} {args:?} failed ({st:?}): {msg}", self.bin.display());
        }
    }

    /// `state` as JSON.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// The status field of `state`, or None when the container is unknown.
    pub fn status(&self, id: &str) -> Option<String> {
        let o = self.out(&["state", id]);
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["status"].as_str().map(str::to_string)
    }

    /// Wait until `status(id)` is `want` (or panic after 10 s).
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status(id);
            if s.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{id}: status {s:?}, want {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The container's state directory, if the runtime keeps one per id.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Remove whatever a failed test left behind.
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                if let Some(id) = e.file_name().to_str() {
                    let _ = self.cmd(&["delete", "--force", id]).output();
                }
            }
        }
    }
}

/// A bundle dir with a busybox rootfs and a config.json.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// A bundle whose process runs `args`, in new pid/net/ipc/uts/mount/cgroup
    /// namespaces, with cgroupsPath `<test cgroup>/<leaf>`.
    pub fn new(rt: &Runtime, leaf: &str, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-bundle-")
            .tempdir()
            .expect("bundle dir");
        crate::rootfs::busybox_rootfs(&dir.path().join("rootfs"));
        let config = default_config(&rt.cgroup.path(leaf), args);
        let b = Bundle { dir, config };
        b.write();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Change the config and write it out.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.write();
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config.json");
    }
}

/// runc's default spec, non-terminal, with the given args and cgroupsPath.
pub fn default_config(cgroups_path: &str, args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "husk-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"]
        }
    })
}

/// Pid is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let st = s.rsplit_once(')').map(|x| x.1.trim_start().chars().next());
            !matches!(st, Some(Some('Z')) | Some(Some('X')))
        }
        Err(_) => false,
    }
}

/// Wait until a pid is gone, reaping it if it is a child of ours.
pub fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // SAFETY: waitpid with WNOHANG on a pid; no memory is shared.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Mount points under `dir` in the calling thread's mount namespace (the
/// host's, unless the test thread unshared one: /proc/self would show the
/// main thread's namespace instead).
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&d))
        .map(str::to_string)
        .collect()
}
