//! The bundle/config builder: a bundle directory with a busybox rootfs and
//! the one default `config.json` every runtime test starts from.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::Runtime;

/// A bundle directory and its `config.json`, removed on drop.
pub struct Bundle {
    dir: tempfile::TempDir,
    config: Value,
}

impl Bundle {
    /// A bundle with its own busybox rootfs whose process runs `args`, with
    /// [`default_config`] and cgroupsPath `<rt's test cgroup>/<leaf>`.
    pub fn new(rt: &Runtime, leaf: &str, args: &[&str]) -> Self {
        let b = Self::from_config(default_config(&rt.cgroup().path(leaf), args));
        crate::rootfs::busybox_rootfs(&b.rootfs());
        b
    }

    /// A bundle with `config` and no rootfs of its own: the config's
    /// `root.path` names one elsewhere.
    pub fn from_config(config: Value) -> Self {
        let b = Bundle {
            dir: bundle_dir(),
            config,
        };
        b.write();
        b
    }

    /// A bundle with no rootfs whose `config.json` is the one `husk spec`
    /// writes: what a user starts from.
    pub fn husk_spec() -> Self {
        let dir = bundle_dir();
        let out = Command::new(crate::bins::bin("husk"))
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .expect("run husk spec");
        assert!(
            out.status.success(),
            "husk spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read(dir.path().join("config.json")).expect("read config.json");
        let config = serde_json::from_slice(&text).expect("config.json is JSON");
        Bundle { dir, config }
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle directory as a command-line argument.
    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 bundle path")
    }

    /// The rootfs directory inside the bundle (`root.path` of the default config).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// The config as last written.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Change the config and write it out.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        f(&mut self.config);
        self.write();
    }

    fn write(&self) {
        let text = serde_json::to_vec_pretty(&self.config).expect("config serialises");
        std::fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

fn bundle_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("husk-test-bundle-")
        .tempdir()
        .expect("bundle dir")
}

/// runc's default spec, non-terminal, running `args` in new pid, network,
/// ipc, uts, mount and cgroup namespaces in the cgroup `cgroups_path`.
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
