//! A pod node for tests: `husklet serve` with a static pod directory, in a
//! network and mount namespace of the test's own, its kubepods hierarchy
//! under a `husk-test-*` cgroup subtree; pods are observed through
//! `husklet pods -o json` as a user would.
//!
//! The pod layer runs on husklet's own CRI service ([`PodNode::start`]) or,
//! through `--container-runtime-endpoint`, on containerd with runc and the
//! reference CNI plugins ([`PodNode::start_containerd`]): the same tests pass
//! on both, so the pod layer relies on CRI semantics, not on husk's.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup::TestCgroup;
use crate::containerd::Containerd;

/// The node name tests run husklet under.
pub const NODE: &str = "test-node";

/// husklet serving static pods.
pub struct PodNode {
    /// The runtime when it is containerd (dropped before the dirs go).
    pub containerd: Option<Containerd>,
    pub dir: tempfile::TempDir,
    pub cgroup: TestCgroup,
    husklet: Option<Child>,
    /// Joined to a control plane: its netns and husklet's extra flags.
    joined: Option<(PathBuf, Vec<String>)>,
}

impl PodNode {
    /// Namespaces, pod network, busybox image; husklet started on its own CRI.
    pub fn start() -> PodNode {
        crate::private_mount_ns();
        crate::netns::private_loopback();
        crate::become_subreaper();
        PodNode::setup(None, None)
    }

    /// A node joined to `cp` (`--kubeconfig` with the node's client
    /// certificate, `--node-ip` [`crate::control_plane::NODE_IP`]), husklet
    /// in the control plane's network namespace so the apiserver reaches
    /// its kubelet port; `extra` are more `serve` flags. The node is named
    /// after the control plane's node credentials.
    pub fn join(cp: &crate::control_plane::ControlPlane, extra: &[&str]) -> PodNode {
        assert_eq!(cp.node(), NODE, "the node's credentials name {NODE}");
        crate::private_mount_ns();
        crate::become_subreaper();
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            cp.node_kubeconfig().display().to_string(),
            "--node-ip".into(),
            crate::control_plane::NODE_IP.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        PodNode::setup(None, Some((cp.netns_path(), args)))
    }

    /// [`PodNode::join`] with the pods on containerd `c` (busybox imported);
    /// `cp` must run in `c`'s network namespace
    /// ([`crate::control_plane::ControlPlane::start_in_netns`]), where
    /// husklet runs too, as kubelet and containerd share a host's.
    pub fn join_containerd(
        cp: &crate::control_plane::ControlPlane,
        c: Containerd,
        extra: &[&str],
    ) -> PodNode {
        assert_eq!(cp.node(), NODE, "the node's credentials name {NODE}");
        assert_eq!(
            cp.netns_path(),
            c.netns_path(),
            "the control plane runs in containerd's netns"
        );
        crate::private_mount_ns();
        crate::become_subreaper();
        let layout = crate::bins::test_image("busybox");
        c.import(&layout.with_extension("docker.tar"));
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            cp.node_kubeconfig().display().to_string(),
            "--node-ip".into(),
            crate::control_plane::NODE_IP.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        PodNode::setup(Some(c), Some((cp.netns_path(), args)))
    }

    /// The pid of the running husklet.
    pub fn husklet_pid(&self) -> Option<u32> {
        self.husklet.as_ref().map(Child::id)
    }

    /// [`PodNode::start`] with more `husklet serve` flags (`extra`).
    pub fn start_with(extra: &[&str]) -> PodNode {
        crate::private_mount_ns();
        crate::netns::private_loopback();
        crate::become_subreaper();
        // husklet stays in the test thread's own (private) namespace.
        let here = PathBuf::from("/proc/thread-self/ns/net");
        PodNode::setup(
            None,
            Some((here, extra.iter().map(|s| s.to_string()).collect())),
        )
    }

    /// A node whose husklet runs in the network namespace `netns` (a
    /// control plane's) with more `serve` flags (`extra`), not joined:
    /// the test registers the Node object itself.
    pub fn start_in(netns: &std::path::Path, extra: &[&str]) -> PodNode {
        crate::private_mount_ns();
        crate::become_subreaper();
        let args = extra.iter().map(|s| s.to_string()).collect();
        PodNode::setup(None, Some((netns.to_path_buf(), args)))
    }

    /// The same node with its pods on containerd (its own netns, where
    /// husklet runs too, so probes reach the pod IPs); `Err` says why
    /// containerd cannot run here.
    pub fn start_containerd() -> Result<PodNode, String> {
        if let Some(why) = crate::containerd::unavailable() {
            return Err(why);
        }
        crate::private_mount_ns();
        crate::become_subreaper();
        let c = Containerd::start();
        let layout = crate::bins::test_image("busybox");
        let archive = layout.with_extension("docker.tar");
        assert!(
            archive.exists(),
            "{} missing: scripts/build-test-images makes it",
            archive.display()
        );
        c.import(&archive);
        Ok(PodNode::setup(Some(c), None))
    }

    fn setup(containerd: Option<Containerd>, joined: Option<(PathBuf, Vec<String>)>) -> PodNode {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-pods-")
            .tempdir()
            .expect("tempdir");
        let mut node = PodNode {
            containerd,
            dir,
            cgroup: TestCgroup::new(),
            husklet: None,
            joined,
        };
        for d in [
            node.manifests(),
            node.conf_dir(),
            node.logs(),
            node.config_dir(),
        ] {
            std::fs::create_dir_all(d).expect("node dirs");
        }
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"podnet","plugins":[
              {{"type":"husk-bridge","bridge":"cni-p0","isGateway":true,"ipMasq":false,
                "ipam":{{"type":"host-local","subnet":"{}","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}},
              {{"type":"husk-portmap","capabilities":{{"portMappings":true}}}}]}}"#,
            crate::cri::SUBNET,
            node.dir.path().join("ipam").display()
        );
        std::fs::write(node.conf_dir().join("10-podnet.conflist"), conf).expect("conflist");
        if node.containerd.is_none() {
            node.import_busybox();
        }
        node.spawn();
        node
    }

    fn import_busybox(&self) {
        self.import_image("busybox");
    }

    /// Make test image `name` (scripts/build-test-images) present in the
    /// runtime as `<name>:latest`.
    pub fn import_image(&self, name: &str) {
        let layout = crate::bins::test_image(name);
        if let Some(c) = &self.containerd {
            let archive = layout.with_extension("docker.tar");
            assert!(
                archive.exists(),
                "{} missing: scripts/build-test-images makes it",
                archive.display()
            );
            c.import(&archive);
            return;
        }
        let tag = format!("{name}:latest");
        let out = crate::husklet::husklet(
            &self.root(),
            &[
                "--min-free",
                "0",
                "images",
                "import",
                layout.to_str().expect("utf-8"),
                "--name",
                &tag,
            ],
        );
        assert!(
            out.status.success(),
            "import {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }
    /// ConfigMaps and Secrets (`--config-dir`).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("h.sock")
    }
    /// The CRI runtime name the pods run on, which prefixes container IDs
    /// (`<name>://<id>`).
    pub fn runtime_name(&self) -> &'static str {
        if self.containerd.is_some() {
            "containerd"
        } else {
            "husk"
        }
    }
    /// The CRI endpoint the pods run on (husklet's own, or containerd's).
    pub fn cri_endpoint(&self) -> String {
        match &self.containerd {
            Some(c) => c.endpoint.clone(),
            None => format!("unix://{}", self.socket().display()),
        }
    }

    /// Start `husklet serve` with the static pod dir.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("husklet.log"))
            .expect("husklet log");
        let mut cmd = crate::husklet::husklet_command(&self.root());
        cmd.args(["--min-free", "0", "serve", "--listen"])
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--state")
            .arg(self.state())
            .arg("--cni-conf-dir")
            .arg(self.conf_dir())
            .arg("--cni-bin-dir")
            .arg(crate::bins::bin_dir())
            .arg("--pod-manifest-path")
            .arg(self.manifests())
            .arg("--config-dir")
            .arg(self.config_dir())
            .arg("--pod-log-dir")
            .arg(self.logs())
            .arg("--hostname-override")
            .arg(NODE)
            .env("HUSK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        match &self.containerd {
            Some(c) => {
                cmd.arg("--cgroup-root")
                    .arg(&c.cgroup_parent)
                    .arg("--container-runtime-endpoint")
                    .arg(&c.endpoint);
                enter_netns(&mut cmd, &c.netns_path());
            }
            None => {
                cmd.arg("--cgroup-root").arg(self.cgroup_root());
            }
        }
        if let Some((netns, args)) = &self.joined {
            cmd.args(args);
            enter_netns(&mut cmd, netns);
        }
        let child = cmd.spawn().expect("start husklet serve");
        self.husklet = Some(child);
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "husklet did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// husklet's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("husklet.log")).unwrap_or_default()
    }

    /// SIGKILL husklet; its pods live on.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.husklet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM husklet and wait for it (it terminates its pods first).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.husklet.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// Put a manifest in the static pod dir (written whole, then renamed).
    pub fn add(&self, file: &str, yaml: &str) {
        let tmp = self.dir.path().join(format!(".{file}"));
        std::fs::write(&tmp, yaml).expect("manifest");
        std::fs::rename(&tmp, self.manifests().join(file)).expect("manifest rename");
    }

    /// Remove a manifest.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.manifests().join(file)).expect("remove manifest");
    }

    /// `husklet <args>` against this node.
    pub fn husklet(&self, args: &[&str]) -> std::process::Output {
        let mut all: Vec<&str> = args.to_vec();
        let state = self.state();
        let state = state.to_str().expect("utf-8");
        // --state right after the subcommand (before any `--`).
        if let Some(i) = args
            .iter()
            .position(|a| matches!(*a, "pods" | "describe" | "logs" | "exec"))
        {
            all.splice(i + 1..i + 1, ["--state", state]);
        }
        crate::husklet::husklet(&self.root(), &all)
    }

    /// Every pod file `husklet pods -o json` reports.
    pub fn pods(&self) -> Vec<serde_json::Value> {
        let out = self.husklet(&["-o", "json", "pods"]);
        assert!(
            out.status.success(),
            "husklet pods: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("pods json")
    }

    /// The name kubelet gives the static pod `name` on this node.
    pub fn full(&self, name: &str) -> String {
        format!("{name}-{NODE}")
    }

    /// The pod file of static pod `name`, if reported.
    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        let full = self.full(name);
        self.pods()
            .into_iter()
            .find(|p| p["pod"]["metadata"]["name"] == full.as_str())
    }

    /// Wait until `pred` holds for pod `name` (polling every 100 ms).
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(p) = self.pod(name) {
                if pred(&p) {
                    return p;
                }
                if t0.elapsed() > timeout {
                    panic!(
                        "pod {name}: not {what} after {timeout:?}:\n{}\nhusklet log:\n{}",
                        serde_json::to_string_pretty(&p).unwrap_or_default(),
                        self.log()
                    );
                }
            } else if t0.elapsed() > timeout {
                panic!("pod {name}: never reported\nhusklet log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `husklet exec POD -c C -- CMD` through the runtime's CRI endpoint:
    /// whether it exited 0, and its stdout followed by its stderr.
    pub fn exec(&self, pod: &str, c: &str, cmd: &[&str]) -> (bool, String) {
        let endpoint = self.cri_endpoint();
        let full = self.full(pod);
        let mut args = vec![
            "exec",
            full.as_str(),
            "-c",
            c,
            "--endpoint",
            endpoint.as_str(),
            "--",
        ];
        args.extend_from_slice(cmd);
        let out = self.husklet(&args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// `husklet logs POD -c C [extra…]`: the container's log lines.
    pub fn container_logs(&self, pod: &str, c: &str, extra: &[&str]) -> String {
        let full = self.full(pod);
        let mut args = vec!["logs", full.as_str(), "-c", c];
        args.extend_from_slice(extra);
        String::from_utf8_lossy(&self.husklet(&args).stdout).into_owned()
    }

    /// `husklet describe pod POD` as printed.
    pub fn describe(&self, pod: &str) -> String {
        let out = self.husklet(&["describe", "pod", &self.full(pod)]);
        assert!(
            out.status.success(),
            "husklet describe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The row of `husklet pods` for pod `name` (the table as printed).
    pub fn table_row(&self, name: &str) -> String {
        let table = String::from_utf8_lossy(&self.husklet(&["pods"]).stdout).into_owned();
        let full = format!("{} ", self.full(name));
        table
            .lines()
            .find(|l| l.starts_with(&full))
            .unwrap_or_default()
            .to_string()
    }

    /// The `--cgroup-root` husklet runs with (pods go under
    /// `<root>/kubepods/...`).
    pub fn cgroup_root(&self) -> String {
        match &self.containerd {
            Some(c) => c.cgroup_parent.clone(),
            None => format!("/{}", self.cgroup.name()),
        }
    }

    /// Wait until pod `name` is no longer reported.
    pub fn wait_gone(&self, name: &str, timeout: Duration) {
        let t0 = Instant::now();
        while self.pod(name).is_some() {
            assert!(
                t0.elapsed() < timeout,
                "pod {name} still reported\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Run `cmd` in the network namespace at `path`.
fn enter_netns(cmd: &mut std::process::Command, path: &std::path::Path) {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let ns =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open netns {}: {e}", path.display()));
    // SAFETY: between fork and exec the closure only calls setns(2), which is
    // async-signal-safe, on a descriptor opened before the fork (moved in).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The status condition `type_` of a pod file is "True".
pub fn condition(p: &serde_json::Value, type_: &str) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// Whether pod file `p` has an event `reason` whose message contains `text`.
pub fn has_event(p: &serde_json::Value, reason: &str, text: &str) -> bool {
    p["events"].as_array().is_some_and(|es| {
        es.iter().any(|e| {
            e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(text))
        })
    })
}

/// The container status `name` of a pod file.
pub fn container<'a>(p: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let find = |k: &str| {
        p["status"][k]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
    };
    find("containerStatuses")
        .or_else(|| find("initContainerStatuses"))
        .unwrap_or(&serde_json::Value::Null)
}

/// How long [`wait_get`] waits.
pub const API_WAIT: Duration = Duration::from_secs(90);

/// Poll `kubectl get ARGS -o json` against `cp` until `pred` holds; returns
/// the object. Fails after [`API_WAIT`] with the last answer and `node`'s log.
pub fn wait_get(
    cp: &crate::control_plane::ControlPlane,
    node: &PodNode,
    args: &[&str],
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    loop {
        let out = cp.kubectl(&a);
        let v: Option<serde_json::Value> = out
            .status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten();
        if let Some(v) = &v {
            if pred(v) {
                return v.clone();
            }
        }
        assert!(
            t0.elapsed() < API_WAIT,
            "{args:?}: not {what} after {API_WAIT:?}: {}\nhusklet log:\n{}",
            v.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned()),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An API pod object is Running and Ready.
pub fn api_pod_ready(p: &serde_json::Value) -> bool {
    p["status"]["phase"] == "Running" && condition(p, "Ready")
}

impl Drop for PodNode {
    fn drop(&mut self) {
        // Remove every manifest and let husklet tear the pods down (1 s grace).
        if let Ok(rd) = std::fs::read_dir(self.manifests()) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // A joined node's API pods are the test's to delete; SIGTERM
        // terminates whatever is left.
        if self.husklet.is_some() && self.joined.is_none() {
            let t0 = Instant::now();
            while !self.pods().is_empty() && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.stop();
    }
}
