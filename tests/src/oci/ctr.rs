//! The container-with-cgroup fixture of the cgroup suites
//! (tests/tests/cgroups_*husk.rs, also run in the cgroup v2 VM): one busybox
//! container run by the real `husk`, with `linux.resources` and a host dir
//! shared at /shared.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use super::{Bundle, Runtime, default_config};

/// A husk container in `<test cgroup>/ctr`; dropping it deletes the container
/// (through its [`Runtime`]), then its bundle and shared dir.
pub struct Ctr {
    /// The container id, unique per test.
    pub id: String,
    rt: Runtime,
    bundle: Bundle,
    shared: tempfile::TempDir,
}

impl Ctr {
    /// A container running `sh -c script` with `resources` as
    /// `linux.resources` (and a device allow-list when it names none); the
    /// host dir [`Ctr::shared`] is bind-mounted at /shared. Nothing runs yet.
    pub fn new(name: &str, script: &str, resources: Value) -> Ctr {
        let rt = Runtime::husk();
        let shared = tempfile::tempdir().expect("shared dir");
        let mut config = default_config(&rt.cgroup().path("ctr"), &["/bin/sh", "-c", script]);
        // One read-only rootfs for every container: making one per test costs
        // tens of seconds under TCG. /tmp gives the scripts a writable place.
        config["root"] = json!({"path": crate::rootfs::shared_busybox_rootfs(), "readonly": true});
        let mounts = config["mounts"].as_array_mut().expect("mounts array");
        mounts.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
        mounts.push(json!({"destination": "/shared", "type": "bind", "source": shared.path(), "options": ["rbind", "rw"]}));
        // The host's network and cgroup namespaces: these suites check
        // limits, not isolation, and the container's cgroup files are read
        // from the host.
        let namespaces = config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces array");
        namespaces.retain(|n| n["type"] != "network" && n["type"] != "cgroup");
        let mut resources = resources;
        if resources.get("devices").is_none() {
            resources["devices"] = default_devices();
        }
        config["linux"]["resources"] = resources;
        Ctr {
            id: format!("{name}-{}", crate::unique_suffix()),
            rt,
            bundle: Bundle::from_config(config),
            shared,
        }
    }

    /// A `husk --root <root> <args...>` command for this container's runtime.
    pub fn husk(&self, args: &[&str]) -> Command {
        self.rt.cmd(args)
    }

    /// Run husk with `args`, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.rt.ok(args)
    }

    /// `husk run` in the foreground: the container's exit status and output.
    pub fn run_foreground(&self) -> Output {
        self.rt
            .out(&["run", "--bundle", self.bundle.path_str(), &self.id])
    }

    /// `husk run --detach`, expecting success.
    pub fn run_detached(&self) {
        self.rt.ok(&[
            "run",
            "--detach",
            "--bundle",
            self.bundle.path_str(),
            &self.id,
        ]);
    }

    /// The container's status from `husk state`.
    pub fn status(&self) -> String {
        let state = self.rt.state(&self.id);
        state["status"].as_str().expect("status").to_string()
    }

    /// The container's cgroup (cgroup v2).
    pub fn cgroup(&self) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(self.rt.cgroup().name())
            .join("ctr")
    }

    /// The container's cgroup in one v1 hierarchy (`memory`, `pids`, `cpu`).
    pub fn cgroup_v1(&self, hierarchy: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(self.rt.cgroup().name())
            .join("ctr")
    }

    /// The path of a file of the container's cgroup: on a v1 host
    /// `<controller>.<file>` is in that controller's hierarchy.
    pub fn file_path(&self, name: &str) -> PathBuf {
        if crate::cgroup::is_v2() {
            return self.cgroup().join(name);
        }
        let controller = name.split('.').next().unwrap_or(name);
        self.cgroup_v1(controller).join(name)
    }

    /// A file of the container's cgroup ([`Ctr::file_path`]), trimmed.
    pub fn file(&self, name: &str) -> String {
        crate::cgroup::read(&self.file_path(name))
    }

    /// The value of `key` in a flat-keyed file of the container's cgroup.
    pub fn keyed(&self, name: &str, key: &str) -> u64 {
        crate::cgroup::keyed(&self.file_path(name), key)
    }

    /// The host side of /shared.
    pub fn shared(&self) -> &Path {
        self.shared.path()
    }
}

/// Deny every device but the ones a shell needs: null, zero, full, random,
/// urandom, tty, ptmx and the pty slaves.
fn default_devices() -> Value {
    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)] {
        devices.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    devices.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    Value::Array(devices)
}
