//! A live containerd CRI server from scripts/bench/containerd-cri, and helpers
//! to run cri-bench against it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CRI_BENCH: &str = env!("CARGO_BIN_EXE_cri-bench");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// containerd started by `containerd-cri run`, torn down on drop.
pub struct Containerd {
    script: Child,
    dir: tempfile::TempDir,
    pub endpoint: String,
    pub image: String,
    pub cgroup_parent: String,
    pub netns: String,
}

impl Containerd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The command the script runs: publish the environment, then wait for
        // the test to be done (or gone, if it was killed); the script tears
        // everything down after it.
        let wait = format!(
            "env > {d}/env.tmp && mv {d}/env.tmp {d}/env && \
             while [ ! -e {d}/done ] && kill -0 {pid} 2>/dev/null; do sleep 0.1; done",
            d = dir.path().display(),
            pid = std::process::id()
        );
        let script = Command::new(repo().join("scripts/bench/containerd-cri"))
            .args(["run", "--", "sh", "-c", &wait])
            .stdin(Stdio::null())
            .spawn()
            .expect("start scripts/bench/containerd-cri");
        let mut c = Containerd {
            script,
            dir,
            endpoint: String::new(),
            image: String::new(),
            cgroup_parent: String::new(),
            netns: String::new(),
        };
        let env_file = c.dir.path().join("env");
        let deadline = Instant::now() + Duration::from_secs(300);
        while !env_file.exists() {
            if let Ok(Some(status)) = c.script.try_wait() {
                panic!("containerd-cri exited before containerd was up: {status}");
            }
            assert!(
                Instant::now() < deadline,
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
        c.image = get("IMAGE");
        c.cgroup_parent = get("CGROUP_PARENT");
        c.netns = get("CRI_NETNS");
        c
    }

    /// A cri-bench command aimed at this containerd.
    pub fn cri_bench(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CRI_BENCH);
        cmd.args(args)
            .env("CRI_ENDPOINT", &self.endpoint)
            .env("IMAGE", &self.image)
            .env("CGROUP_PARENT", &self.cgroup_parent)
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cri_bench(args).output().expect("run cri-bench")
    }

    /// Runs a mode with --output json and parses the report; panics on failure.
    pub fn report(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "cri-bench {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "cri-bench {args:?}: stdout is not JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Sandboxes and containers cri-bench left behind (ListPodSandbox/ListContainers).
    pub fn leftovers(&self) -> (usize, usize) {
        let out = self.run(&["list", "--output", "json"]);
        assert!(
            out.status.success(),
            "cri-bench list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list JSON");
        let n = |k: &str| v[k].as_array().map(Vec::len).expect("list has arrays");
        (n("sandboxes"), n("containers"))
    }

    /// The runtime's images (repo tags), from `cri-bench list`.
    pub fn images(&self) -> Vec<String> {
        let out = self.run(&["list", "--output", "json"]);
        assert!(
            out.status.success(),
            "cri-bench list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list JSON");
        v["images"]
            .as_array()
            .expect("images array")
            .iter()
            .map(|i| i.as_str().expect("tag").to_string())
            .collect()
    }

    pub fn assert_nothing_left(&self) {
        assert_eq!(
            self.leftovers(),
            (0, 0),
            "cri-bench left sandboxes/containers behind"
        );
    }
}

impl Containerd {
    /// Tears down and checks that the script left nothing: no netns, no
    /// cgroup (a cgroup with a live process in it cannot be removed), no temp dir.
    pub fn stop_and_check_clean(self) {
        let netns = Path::new("/run/netns").join(&self.netns);
        let top = self
            .cgroup_parent
            .trim_start_matches('/')
            .split('/')
            .next()
            .expect("cgroup parent")
            .to_string();
        let socket = PathBuf::from(self.endpoint.trim_start_matches("unix://"));
        let tmp = socket.parent().expect("socket dir").to_path_buf();
        drop(self);
        assert!(!netns.exists(), "{} is left", netns.display());
        assert!(!tmp.exists(), "{} is left", tmp.display());
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .expect("cgroup mounts")
            .flatten()
        {
            let dir = h.path().join(&top);
            assert!(!dir.exists(), "{} is left", dir.display());
        }
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

/// The operation names of a report, in order.
pub fn ops(report: &serde_json::Value) -> Vec<String> {
    report["ops"]
        .as_array()
        .expect("ops array")
        .iter()
        .map(|o| o["op"].as_str().expect("op name").to_string())
        .collect()
}

/// The count of one operation.
pub fn op_count(report: &serde_json::Value, op: &str) -> u64 {
    report["ops"]
        .as_array()
        .expect("ops array")
        .iter()
        .find(|o| o["op"] == op)
        .unwrap_or_else(|| panic!("no {op} in {report}"))["count"]
        .as_u64()
        .expect("count")
}

pub fn metric(report: &serde_json::Value, name: &str) -> f64 {
    report["metrics"]
        .as_array()
        .expect("metrics array")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {report}"))["value"]
        .as_f64()
        .expect("metric value")
}
