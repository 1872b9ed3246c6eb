//! A throwaway Kubernetes control plane for tests: Debian's etcd and the real
//! kube-apiserver (v1.26, from `$HUSK_K8S_BIN`), on loopback inside a network
//! namespace of the test's own, with an openssl PKI made for the test.
//!
//! The apiserver runs as a production one does for nodes: client-certificate
//! authentication (optionally static tokens and bootstrap tokens), the Node
//! authorizer and RBAC, NodeRestriction admission. There is no
//! controller-manager: the harness creates what it would (the `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap of a namespace, see
//! [`ControlPlane::namespace`]) and approves and signs CSRs on request
//! ([`ControlPlane::sign_csr`], [`ControlPlane::sign_pending`]); bootstrap
//! tokens and kubeadm's TLS bootstrap RBAC come from
//! [`ControlPlane::bootstrap_token`].
//!
//! A node agent under test runs in the same namespace ([`ControlPlane::enter`])
//! so that the apiserver reaches its kubelet API at the node's InternalIP
//! ([`NODE_IP`], an address on the namespace's loopback: the apiserver
//! refuses to proxy to 127.0.0.0/8). Everything is stopped and removed on drop.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::TestNetns;

mod bootstrap;
mod pki;
pub use bootstrap::BOOTSTRAP_GROUP;
use pki::encode_base64;

/// The apiserver's URL inside the namespace.
pub const SERVER: &str = "https://127.0.0.1:6443";
/// The address the node under test reports as its InternalIP (`--node-ip`).
pub const NODE_IP: &str = "10.251.0.1";
/// The service CIDR the apiserver allocates ClusterIPs from.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// The audience/issuer of service-account tokens.
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const ETCD: &str = "/usr/bin/etcd";

/// A static bearer token for `--token-auth-file`.
#[derive(Clone, Debug)]
pub struct StaticToken {
    pub token: String,
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// How to start the control plane.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node whose client certificate (`system:node:<node>`) is made.
    pub node: String,
    /// Static tokens (`--token-auth-file`), none by default.
    pub tokens: Vec<StaticToken>,
    /// `--enable-bootstrap-token-auth`.
    pub bootstrap_token_auth: bool,
    /// `--kubelet-certificate-authority` the cluster CA: the apiserver
    /// verifies kubelets' serving certificates (cluster-issued ones).
    pub verify_kubelets: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: crate::pods::NODE.to_string(),
            tokens: Vec::new(),
            bootstrap_token_auth: false,
            verify_kubelets: false,
        }
    }
}

/// A client's credentials in a kubeconfig.
pub enum Credentials<'a> {
    /// A client certificate and its key (PEM files).
    Cert { cert: &'a Path, key: &'a Path },
    /// A bearer token.
    Token(&'a str),
}

/// Why the control plane cannot run here, as a skip kind and reason.
pub fn unavailable() -> Option<(&'static str, String)> {
    let bin = crate::cri::k8s_bin_dir();
    for p in ["kube-apiserver", "kubectl"] {
        if !bin.join(p).exists() {
            return Some((
                "k8s-tools",
                format!(
                    "{} missing (../shared/tools/unpack build/k8s, or set HUSK_K8S_BIN)",
                    bin.join(p).display()
                ),
            ));
        }
    }
    if !Path::new(ETCD).exists() {
        return Some((
            "tool",
            format!("{ETCD} missing (apt-get install etcd-server)"),
        ));
    }
    if which("openssl").is_none() {
        return Some(("tool", "openssl missing (apt-get install openssl)".into()));
    }
    None
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.exists())
    })
}

/// Skip (visibly) a test that needs the control plane when etcd,
/// kube-apiserver, kubectl or openssl are missing; needs root as well.
#[macro_export]
macro_rules! require_control_plane {
    () => {
        $crate::require_root!();
        if let Some((kind, why)) = $crate::control_plane::unavailable() {
            $crate::skip!(kind, "{why}");
        }
    };
}

/// A running etcd + kube-apiserver.
pub struct ControlPlane {
    /// PKI, kubeconfigs, etcd data, logs.
    pub dir: tempfile::TempDir,
    config: Config,
    /// The namespace when the control plane made it (deleted on drop).
    own_netns: Option<TestNetns>,
    netns_path: PathBuf,
    netns_name: String,
    etcd: Option<Child>,
    apiserver: Option<Child>,
}

impl ControlPlane {
    /// Start with the default [`Config`] (node [`crate::pods::NODE`]).
    pub fn start() -> ControlPlane {
        ControlPlane::start_with(Config::default())
    }

    /// Make the PKI, start etcd and the apiserver in a fresh namespace, wait
    /// until `/readyz` answers, prepare the `default` namespace.
    pub fn start_with(config: Config) -> ControlPlane {
        let netns = TestNetns::new();
        let (path, name) = (netns.path(), netns.name().to_string());
        ControlPlane::start_in(config, Some(netns), path, name)
    }

    /// Start in an existing network namespace (`/run/netns/<name>`, e.g. a
    /// [`crate::containerd::Containerd`]'s, so that the node agent, the
    /// runtime's streaming server and the pods share one namespace as on a
    /// host); the namespace stays its owner's.
    pub fn start_in_netns(config: Config, name: &str) -> ControlPlane {
        let path = Path::new("/run/netns").join(name);
        ControlPlane::start_in(config, None, path, name.to_string())
    }

    fn start_in(
        config: Config,
        own_netns: Option<TestNetns>,
        netns_path: PathBuf,
        netns_name: String,
    ) -> ControlPlane {
        crate::become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("husk-test-cp-")
            .tempdir()
            .expect("tempdir");
        let mut cp = ControlPlane {
            dir,
            config,
            own_netns,
            netns_path,
            netns_name,
            etcd: None,
            apiserver: None,
        };
        let out = cp
            .command("ip")
            .args(["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip addr add {NODE_IP} in netns {}: {}",
            cp.netns_name,
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::create_dir_all(cp.pki()).expect("pki dir");
        cp.make_pki();
        cp.start_etcd();
        cp.start_apiserver();
        cp.namespace("default");
        cp
    }

    /// The directory of certificates and keys.
    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("pki")
    }
    /// The cluster CA certificate (also the client CA of the kubelet API).
    pub fn ca_cert(&self) -> PathBuf {
        self.pki().join("ca.crt")
    }
    /// The cluster CA's key (to sign CSRs as the controller-manager would).
    pub fn ca_key(&self) -> PathBuf {
        self.pki().join("ca.key")
    }
    /// The certificate the apiserver presents to kubelets (`--kubelet-client-certificate`).
    pub fn kubelet_client_cert(&self) -> PathBuf {
        self.pki().join("kubelet-client.crt")
    }
    /// A kubeconfig for `admin` (system:masters).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }
    /// A kubeconfig for `system:node:<node>` (group system:nodes).
    pub fn node_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("node.kubeconfig")
    }
    /// The node this control plane made credentials for.
    pub fn node(&self) -> &str {
        &self.config.node
    }
    /// The network namespace everything runs in.
    pub fn netns_path(&self) -> PathBuf {
        self.netns_path.clone()
    }
    /// The network namespace's name.
    pub fn netns_name(&self) -> &str {
        &self.netns_name
    }
    /// kube-apiserver's log so far.
    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }

    /// Make `cmd` run in the control plane's network namespace.
    pub fn enter(&self, cmd: &mut Command) {
        enter_netns(cmd, &self.netns_path());
    }

    /// A command running `program` in the control plane's network namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        self.enter(&mut c);
        c
    }
    fn spawn_logged(&self, name: &str, mut cmd: Command) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("open log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        self.enter(&mut cmd);
        die_with_parent(&mut cmd);
        cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    fn start_etcd(&mut self) {
        let mut cmd = Command::new(ETCD);
        cmd.arg("--data-dir")
            .arg(self.dir.path().join("etcd"))
            .args([
                "--name=test",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=test=http://127.0.0.1:2380",
                "--log-level=warn",
            ]);
        self.etcd = Some(self.spawn_logged("etcd", cmd));
    }

    /// Start kube-apiserver and wait until it is ready.
    pub fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "apiserver already running");
        let pki = self.pki();
        let p = |f: &str| format!("{}", pki.join(f).display());
        let mut cmd = Command::new(crate::cri::k8s_bin_dir().join("kube-apiserver"));
        cmd.args([
            "--etcd-servers=http://127.0.0.1:2379".to_string(),
            "--bind-address=127.0.0.1".into(),
            "--secure-port=6443".into(),
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            format!(
                "--cert-dir={}",
                self.dir.path().join("apiserver-certs").display()
            ),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-issuer={SA_ISSUER}"),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!("--kubelet-client-certificate={}", p("kubelet-client.crt")),
            format!("--kubelet-client-key={}", p("kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]);
        if !self.config.tokens.is_empty() {
            cmd.arg(format!("--token-auth-file={}", p("tokens.csv")));
        }
        if self.config.bootstrap_token_auth {
            cmd.arg("--enable-bootstrap-token-auth");
        }
        if self.config.verify_kubelets {
            cmd.arg(format!("--kubelet-certificate-authority={}", p("ca.crt")));
        }
        self.apiserver = Some(self.spawn_logged("apiserver", cmd));
        self.wait_ready();
    }

    /// Stop kube-apiserver (SIGTERM, then wait): open watches break.
    pub fn stop_apiserver(&mut self) {
        if let Some(c) = self.apiserver.take() {
            stop_child(c, "kube-apiserver");
        }
    }

    /// Write a key straight into etcd (through its HTTP gateway), outside
    /// the apiserver's keyspace: etcd's revision, which resourceVersions
    /// are, moves on; with the apiserver stopped, watches resumed after its
    /// restart ask for a version older than its new watch cache (410 Gone).
    pub fn etcd_put(&self, key: &str, value: &str) {
        let b64 = |s: &str| encode_base64(s.as_bytes());
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        let out = self
            .command("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "http://127.0.0.1:2379/v3/kv/put",
                "-d",
                &body,
            ])
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "etcd put {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop and start kube-apiserver again (same etcd, same PKI).
    pub fn restart_apiserver(&mut self) {
        self.stop_apiserver();
        self.start_apiserver();
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            if let Some(c) = self.apiserver.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "kube-apiserver exited ({st}):\n{}",
                        tail(&self.apiserver_log())
                    );
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "kube-apiserver not ready after 120 s: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail(&self.apiserver_log())
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Run kubectl as admin in the namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig(), args, None)
    }

    /// Run kubectl with `kubeconfig`, feeding `stdin` if given.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.command(crate::cri::k8s_bin_dir().join("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("kubectl stdin");
            pipe.write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        child.wait_with_output().expect("wait for kubectl")
    }

    /// Run kubectl as admin, panic unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ARGS -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&a)).expect("kubectl json")
    }

    /// `kubectl apply -f -` of a manifest (YAML or JSON).
    pub fn apply(&self, manifest: &str) {
        let out = self.kubectl_as(
            &self.admin_kubeconfig(),
            &["apply", "-f", "-"],
            Some(manifest),
        );
        assert!(
            out.status.success(),
            "kubectl apply: {}\n{manifest}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Make namespace `ns` usable for pods, as kube-controller-manager would:
    /// the namespace, its `default` ServiceAccount (the ServiceAccount
    /// admission plugin refuses pods without it) and the `kube-root-ca.crt`
    /// ConfigMap (the service-account token volume projects it).
    pub fn namespace(&self, ns: &str) {
        let ca = std::fs::read_to_string(self.ca_cert()).expect("read ca.crt");
        let ca_json = serde_json::to_string(&ca).expect("json string");
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[
              {{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}},
              {{"apiVersion":"v1","kind":"ServiceAccount","metadata":{{"name":"default","namespace":"{ns}"}}}},
              {{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"kube-root-ca.crt","namespace":"{ns}"}},
                "data":{{"ca.crt":{ca_json}}}}}]}}"#
        );
        self.apply(&manifest);
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// SIGTERM `child`, give it 10 s, then SIGKILL; reap it.
fn stop_child(mut child: Child, what: &str) {
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{what} ignored SIGTERM for 10 s: killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Run `cmd` in the network namespace at `path` (only the network
/// namespace: /sys/fs/cgroup stays visible, see TESTING.md).
pub fn enter_netns(cmd: &mut Command, path: &Path) {
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

/// SIGKILL `cmd`'s process when the thread that started it goes, so a test
/// killed by a timeout leaves no apiserver or etcd behind.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_apiserver();
        if let Some(c) = self.etcd.take() {
            stop_child(c, "etcd");
        }
        // Only now: the processes above ran in it.
        self.own_netns.take();
    }
}
