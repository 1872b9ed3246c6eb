//! Helpers of the streaming tests (cri_stream*.rs): crictl with stdin,
//! pods from a container config, `crictl port-forward`, RSS readings and a
//! tonic CRI client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use husk_tests::cri::{CriNode, crictl_path};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Root and crictl, or a visible skip.
#[macro_export]
macro_rules! require_crictl {
    () => {
        husk_tests::require_root!();
        if husk_tests::cri::crictl_path().is_none() {
            husk_tests::skip!(
                "k8s-tools",
                "crictl not found in {} (set HUSK_K8S_BIN, or run the setup that unpacks it)",
                husk_tests::cri::k8s_bin_dir().display()
            );
        }
    };
}

/// crictl pointed at `node`.
pub fn crictl(node: &CriNode) -> Command {
    let mut c = Command::new(crictl_path().expect("crictl"));
    c.arg("--runtime-endpoint")
        .arg(node.endpoint())
        .arg("--image-endpoint")
        .arg(node.endpoint())
        .arg("--timeout")
        .arg("60s");
    c
}

/// Run crictl with `input` on its stdin; returns its output.
pub fn crictl_with_input(node: &CriNode, args: &[&str], input: &[u8]) -> Output {
    let mut child = crictl(node)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run crictl");
    let mut w = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    let out = child.wait_with_output().expect("crictl output");
    let _ = feeder.join();
    out
}

/// Run `crictl args` under `script`, which gives it a terminal (crictl
/// refuses `-t` otherwise), with `input` typed into that terminal.
pub fn crictl_in_a_tty(node: &CriNode, args: &[&str], input: &[u8]) -> Output {
    let mut line = format!(
        "{} --runtime-endpoint {ep} --image-endpoint {ep} --timeout 60s",
        crictl_path().expect("crictl").display(),
        ep = node.endpoint()
    );
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut w = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let feeder = std::thread::spawn(move || {
        // Typed slowly enough that the remote end has set up its terminal.
        std::thread::sleep(Duration::from_millis(500));
        for line in data.split_inclusive(|b| *b == b'\n') {
            let _ = w.write_all(line);
            let _ = w.flush();
            std::thread::sleep(Duration::from_millis(300));
        }
        // Hold stdin open a little: script ends the session at its EOF.
        std::thread::sleep(Duration::from_secs(3));
    });
    let out = child.wait_with_output().expect("script output");
    let _ = feeder.join();
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Write a container config (busybox) from `extra` fields merged over the
/// basics; returns its path.
pub fn container_config(node: &CriNode, name: &str, extra: serde_json::Value) -> PathBuf {
    let mut cfg = serde_json::json!({
        "metadata": {"name": name},
        "image": {"image": "busybox:latest"},
        "log_path": format!("{name}.log"),
    });
    if let (Some(base), Some(add)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in add {
            base.insert(k.clone(), v.clone());
        }
    }
    let p = node.dir.path().join(format!("ctr-{name}.json"));
    std::fs::write(&p, cfg.to_string()).expect("container config");
    p
}

/// runp, then create and start one container from `extra`; returns (pod, container).
pub fn run_pod(node: &CriNode, pod: &str, ctr: &str, extra: serde_json::Value) -> (String, String) {
    let pc = node.pod_config(pod);
    let p = node
        .crictl_ok(&["runp", pc.to_str().expect("utf-8")])
        .trim()
        .to_string();
    let cc = container_config(node, ctr, extra);
    let c = node
        .crictl_ok(&[
            "create",
            &p,
            cc.to_str().expect("utf-8"),
            pc.to_str().expect("utf-8"),
        ])
        .trim()
        .to_string();
    node.crictl_ok(&["start", &c]);
    (p, c)
}

/// A running `crictl port-forward POD :PORT` and its local port.
pub struct Forward {
    child: Child,
    pub local: u16,
}

impl Forward {
    pub fn start(node: &CriNode, pod: &str, port: u16) -> Forward {
        let mut child = crictl(node)
            .args(["port-forward", pod, &format!(":{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("crictl port-forward");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                // "Forwarding from 127.0.0.1:PORT -> TARGET"
                if let Some(p) = l
                    .strip_prefix("Forwarding from 127.0.0.1:")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(p);
                }
            }
        });
        let local = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("crictl output");
                panic!(
                    "crictl port-forward announced no port: {}\nhusklet log:\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    node.log()
                );
            }
        };
        Forward { child, local }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -s` of `path` on a local port; returns (exit code, body).
pub fn curl(port: u16, path: &str) -> (i32, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "60"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    (out.status.code().unwrap_or(-1), out.stdout)
}

/// A process's resident set in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The shim pids of the node's exec sessions running now.
pub fn exec_shim_pids(node: &CriNode) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(node.state().join("exec")) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("s/shim.pid")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Wait until no exec session of the node is left (dir removed).
pub fn no_exec_sessions_left(node: &CriNode) {
    let t0 = Instant::now();
    while node.state_entries("exec") != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "exec sessions left behind: {:?}",
            std::fs::read_dir(node.state().join("exec"))
                .map(|r| r.flatten().map(|e| e.path()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random bytes (xorshift), `len` at a time.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// A tonic CRI runtime client on the node's socket.
pub async fn grpc(node: &CriNode) -> RuntimeServiceClient<Channel> {
    let path = node.socket();
    let ch = Endpoint::from_static("http://cri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to husklet");
    RuntimeServiceClient::new(ch)
}

/// A runtime on the test thread (which is in the node's namespaces).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
