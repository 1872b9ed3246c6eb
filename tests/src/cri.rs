//! A CRI node for tests: `husklet serve` in a network and mount namespace of
//! the test's own (entered by the test thread, so cgroups stay visible),
//! with husk-bridge as the pod network, a store holding the busybox test
//! image, and the real `crictl` pointed at its socket.
//!
//! Pods get `cgroup_parent` inside a `husk-test-*` subtree. On drop every pod
//! is removed through husklet, then husklet is stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup::TestCgroup;

/// The pod subnet of the test network.
pub const SUBNET: &str = "10.88.0.0/24";

/// Where the Kubernetes client binaries are: `$HUSK_K8S_BIN`, default `<build>/k8s`
/// (scripts/lib/common.sh's setup unpacks them there).
pub fn k8s_bin_dir() -> PathBuf {
    std::env::var_os("HUSK_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::bins::build_dir().join("k8s"))
}

/// The crictl binary, if present.
pub fn crictl_path() -> Option<PathBuf> {
    let p = k8s_bin_dir().join("crictl");
    p.exists().then_some(p)
}

/// A husklet CRI server and its scratch space.
pub struct CriNode {
    /// Store root, state, CNI config and IPAM data, pod logs.
    pub dir: tempfile::TempDir,
    /// The cgroup subtree pods are placed in.
    pub cgroup: TestCgroup,
    husklet: Option<Child>,
}

impl CriNode {
    /// Enter a private mount and network namespace (this test thread), set
    /// up the pod network config and the busybox image, start husklet.
    pub fn start() -> CriNode {
        crate::private_mount_ns();
        crate::netns::private_loopback();
        crate::become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("husk-test-cri-")
            .tempdir()
            .expect("tempdir");
        let node = CriNode {
            dir,
            cgroup: TestCgroup::new(),
            husklet: None,
        };
        std::fs::create_dir_all(node.conf_dir()).expect("net.d");
        std::fs::create_dir_all(node.logs()).expect("logs");
        node.write_conflist();
        let layout = crate::bins::test_image("busybox");
        let out = crate::husklet::husklet(
            &node.root(),
            &[
                // The test store is tiny: no free-space reserve on a busy disk.
                "--min-free",
                "0",
                "images",
                "import",
                layout.to_str().expect("utf-8"),
                "--name",
                "busybox:latest",
            ],
        );
        assert!(
            out.status.success(),
            "import busybox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut node = node;
        node.spawn();
        node
    }

    /// The image store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// husklet's --state.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The CNI conf dir.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// The pods' log directory.
    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("h.sock")
    }

    /// `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Write the husk-bridge conflist (no masquerade: nothing leaves the netns).
    pub fn write_conflist(&self) {
        let conf = format!(
            r#"{{"cniVersion":"1.0.0","name":"podnet","plugins":[
              {{"type":"husk-bridge","bridge":"cni-t0","isGateway":true,"ipMasq":false,
                "ipam":{{"type":"host-local","subnet":"{SUBNET}","routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}}}}]}}"#,
            self.dir.path().join("ipam").display()
        );
        std::fs::write(self.conf_dir().join("10-podnet.conflist"), conf).expect("conflist");
    }

    /// Start `husklet serve` and wait for its socket to answer.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("husklet.log"))
            .expect("husklet log");
        let bin_dir = crate::bins::bin_dir();
        let child = crate::husklet::husklet_command(&self.root())
            .args(["--min-free", "0", "serve", "--listen"])
            .arg(self.endpoint())
            .arg("--state")
            .arg(self.state())
            .arg("--cni-conf-dir")
            .arg(self.conf_dir())
            .arg("--cni-bin-dir")
            .arg(&bin_dir)
            .env("HUSK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start husklet serve");
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

    /// husklet's pid, while it runs.
    pub fn husklet_pid(&self) -> Option<u32> {
        self.husklet.as_ref().map(Child::id)
    }

    /// SIGKILL husklet (its containers and shims live on).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.husklet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Run crictl against this node.
    pub fn crictl(&self, args: &[&str]) -> Output {
        let crictl = crictl_path().expect("crictl (check crictl_path() first)");
        Command::new(crictl)
            .arg("--runtime-endpoint")
            .arg(self.endpoint())
            .arg("--image-endpoint")
            .arg(self.endpoint())
            .arg("--timeout")
            .arg("60s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run crictl")
    }

    /// Run crictl, panic unless it succeeds; returns stdout.
    pub fn crictl_ok(&self, args: &[&str]) -> String {
        let out = self.crictl(args);
        assert!(
            out.status.success(),
            "crictl {args:?} failed: {}{}\nhusklet log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// crictl with `-o json`, parsed.
    pub fn crictl_json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.crictl_ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("crictl {args:?}: {e}: {text}"))
    }

    /// The cgroup parent for pod `name`: `/<husk-test-…>/<name>`.
    pub fn cgroup_parent(&self, name: &str) -> String {
        self.cgroup.path(name)
    }

    /// A pod sandbox config file for `name`.
    pub fn pod_config(&self, name: &str) -> PathBuf {
        let cfg = serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "attempt": 0},
            "hostname": name,
            "log_directory": self.logs().join(name),
            "dns_config": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"], "options": ["ndots:5"]},
            "labels": {"app": name},
            "linux": {"cgroup_parent": self.cgroup_parent(name)},
        });
        let p = self.dir.path().join(format!("pod-{name}.json"));
        std::fs::write(&p, cfg.to_string()).expect("pod config");
        p
    }

    /// A container config file running `sh -c script` in busybox.
    pub fn container_config(&self, name: &str, script: &str) -> PathBuf {
        let cfg = serde_json::json!({
            "metadata": {"name": name},
            "image": {"image": "busybox:latest"},
            "command": ["sh", "-c", script],
            "log_path": format!("{name}.log"),
            "labels": {"ctr": name},
        });
        let p = self.dir.path().join(format!("ctr-{name}.json"));
        std::fs::write(&p, cfg.to_string()).expect("container config");
        p
    }

    /// runp + create + start; returns (pod id, container id).
    pub fn run_pod(&self, pod: &str, ctr: &str, script: &str) -> (String, String) {
        let pc = self.pod_config(pod);
        let p = self
            .crictl_ok(&["runp", pc.to_str().expect("utf-8")])
            .trim()
            .to_string();
        let c = self.create(&p, &pc, ctr, script);
        self.crictl_ok(&["start", &c]);
        (p, c)
    }

    /// create a container in pod `p` (config file `pc`); returns its id.
    pub fn create(&self, p: &str, pc: &Path, ctr: &str, script: &str) -> String {
        let cc = self.container_config(ctr, script);
        self.crictl_ok(&[
            "create",
            p,
            cc.to_str().expect("utf-8"),
            pc.to_str().expect("utf-8"),
        ])
        .trim()
        .to_string()
    }

    /// The state of container `id` as `crictl inspect` says (`CONTAINER_RUNNING`, ...).
    pub fn container_state(&self, id: &str) -> String {
        self.crictl_json(&["inspect", "-o", "json", id])["status"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Entries of `<state>/<sub>` (0 when missing).
    pub fn state_entries(&self, sub: &str) -> usize {
        crate::husklet::entry_count(&self.state().join(sub))
    }
}

impl Drop for CriNode {
    fn drop(&mut self) {
        if self.husklet.is_some() && crictl_path().is_some() {
            let _ = self.crictl(&["rmp", "--all", "--force"]);
        }
        if let Some(mut c) = self.husklet.take() {
            // SIGTERM first: a clean shutdown removes the socket.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
