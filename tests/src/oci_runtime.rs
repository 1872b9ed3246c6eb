//! Driving an OCI runtime binary (husk, or a peer picked by
//! `HUSK_TEST_RUNTIME=/usr/sbin/runc`, see [`crate::oci::runtime_bin`]) on
//! busybox bundles.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// A bundle directory with a busybox rootfs and a `config.json` to edit.
pub struct Bundle {
    dir: tempfile::TempDir,
    /// The config that [`Bundle::write`] saves; edit it freely.
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle running `args`, in its own pid, mount, ipc, uts and
    /// network namespaces, in the cgroup `cgroups_path`.
    pub fn busybox(args: &[&str], cgroups_path: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-bundle-")
            .tempdir()
            .expect("bundle tempdir");
        crate::rootfs::busybox_rootfs(&dir.path().join("rootfs"));
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
                    "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
                    "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]
                },
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "husk-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "cgroupsPath": cgroups_path,
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                               {"type": "uts"}, {"type": "mount"}],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        let b = Bundle { dir, config };
        b.write();
        b
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory inside the bundle.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Save [`Bundle::config`] as `config.json`.
    pub fn write(&self) {
        let text = serde_json::to_vec_pretty(&self.config).expect("config serialises");
        std::fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

/// A runtime with a `--root` of its own; deletes (`--force`) every container
/// left in it when dropped.
pub struct Runtime {
    bin: PathBuf,
    root: tempfile::TempDir,
}

impl Runtime {
    /// The runtime under test ([`crate::oci::runtime_bin`]) with a fresh state root.
    pub fn new() -> Self {
        crate::become_subreaper();
        Runtime {
            bin: crate::oci::runtime_bin(),
            root: tempfile::Builder::new()
                .prefix("husk-test-root-")
                .tempdir()
                .expect("root tempdir"),
        }
    }

    /// The runtime binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The state root passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command `<runtime> --root <root> <args...>`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Run `<runtime> --root <root> <args...>` and return its output.
    ///
    /// Output goes through files, not pipes: after `create` or `run -d` the
    /// container holds the runtime's stdio, and a pipe would never reach EOF.
    pub fn exec(&self, args: &[&str]) -> Output {
        let out = tempfile::tempfile().expect("stdout tempfile");
        let err = tempfile::tempfile().expect("stderr tempfile");
        let status = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup stdout"))
            .stderr(err.try_clone().expect("dup stderr"))
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()));
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    /// Like [`Runtime::exec`], panicking unless it succeeds.
    pub fn exec_ok(&self, args: &[&str]) -> Output {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {}{}",
            self.bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    /// The ids of the containers this runtime's root knows of.
    pub fn container_ids(&self) -> Vec<String> {
        let out = self.exec(&["list", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.container_ids() {
            let _ = self.exec(&["delete", "--force", &id]);
        }
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0)).expect("seek output file");
    f.read_to_end(&mut v).expect("read output file");
    v
}
