//! A throwaway containerd with its CRI plugin (runc, the reference CNI
//! plugins), started by `scripts/bench/containerd-cri run`: its own netns,
//! mount namespace, cgroup subtree, root/state dirs and socket, all removed
//! when dropped. Used to run husklet's pod layer on a runtime other than husk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running containerd CRI server.
pub struct Containerd {
    script: Child,
    dir: tempfile::TempDir,
    /// `unix://…/containerd.sock`.
    pub endpoint: String,
    /// The cgroup parent (cgroupfs) under the script's own subtree.
    pub cgroup_parent: String,
    /// The network namespace containerd and its CNI plugins run in.
    pub netns: String,
}

/// Why containerd cannot run here, if it cannot (a missing program).
pub fn unavailable() -> Option<String> {
    for p in ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc"] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} is missing (apt-get install containerd runc containernetworking-plugins)"
            ));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("/usr/lib/cni/bridge is missing (containernetworking-plugins)".into());
    }
    None
}

impl Containerd {
    /// Start containerd and wait for its socket (the script builds the test
    /// and pause images first when they are missing).
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-ctrd-")
            .tempdir()
            .expect("tempdir");
        // The script's command publishes its environment, then waits until
        // the test is done (or gone); the script tears everything down after.
        let wait = format!(
            "env > {d}/env.tmp && mv {d}/env.tmp {d}/env && \
             while [ ! -e {d}/done ] && kill -0 {pid} 2>/dev/null; do sleep 0.1; done",
            d = dir.path().display(),
            pid = std::process::id()
        );
        let script = Command::new(crate::bins::repo_root().join("scripts/bench/containerd-cri"))
            .args(["run", "--", "sh", "-c", &wait])
            .stdin(Stdio::null())
            .spawn()
            .expect("start scripts/bench/containerd-cri");
        let mut c = Containerd {
            script,
            dir,
            endpoint: String::new(),
            cgroup_parent: String::new(),
            netns: String::new(),
        };
        let env_file = c.dir.path().join("env");
        let t0 = Instant::now();
        while !env_file.exists() {
            if let Ok(Some(status)) = c.script.try_wait() {
                panic!("containerd-cri exited before containerd was up: {status}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "containerd-cri did not come up in 300 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let env = std::fs::read_to_string(&env_file).expect("read env");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("containerd-cri did not set {k}"))
                .to_string()
        };
        c.endpoint = get("CRI_ENDPOINT");
        c.cgroup_parent = get("CGROUP_PARENT");
        c.netns = get("CRI_NETNS");
        c
    }

    /// containerd's socket path.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.endpoint.trim_start_matches("unix://"))
    }

    /// The network namespace's path, for `setns`/`nsenter --net`.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// Import a docker-archive into the CRI plugin's namespace (`k8s.io`), as
    /// an image already present on the node; its tags come from the archive.
    pub fn import(&self, archive: &Path) {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr images import {}: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.path().join("done"), b"");
        let status = self.script.wait();
        if !std::thread::panicking() {
            let status = status.expect("wait for containerd-cri");
            assert!(status.success(), "containerd-cri teardown failed: {status}");
        }
    }
}
