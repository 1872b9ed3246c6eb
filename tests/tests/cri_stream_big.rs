//! 1 GiB through `crictl exec -i … cat` (stdin and stdout at once) and
//! through `crictl port-forward` (busybox httpd serving a file), checked by
//! SHA-256. husklet's and the exec shim's RSS are sampled before, during
//! and after and printed (not asserted: memory is the benchmarks' business),
//! so a run shows whether they stay flat. And a client that stops reading
//! stops the process (flow control end to end), instead of husklet or the
//! shim buffering its output.

mod cri_stream_support;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cri_stream_support::{Forward, Noise, crictl, exec_shim_pids, rss_kib, run_pod};
use husk_tests::cri::CriNode;
use sha2::{Digest, Sha256};

const GIB: u64 = 1 << 30;

/// Samples husklet's and the exec shims' RSS every 200 ms until dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Sampler {
    fn start(node: &CriNode) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let husklet = node.husklet_pid().expect("husklet runs");
        let exec_dir = node.state().join("exec");
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut h, mut shim) = (0, 0);
            while !s.load(Ordering::Relaxed) {
                h = h.max(rss_kib(husklet));
                for p in shim_pids(&exec_dir) {
                    shim = shim.max(rss_kib(p));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (h, shim)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Peak RSS (KiB) of husklet and of any exec shim while it ran.
    fn peaks(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0))
    }
}

fn shim_pids(exec_dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_dir(exec_dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("s/shim.pid")).ok())
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn one_gib_through_exec_stdin_and_stdout_arrives_intact() {
    require_crictl!();
    let node = CriNode::start();
    let (_pod, ctr) = run_pod(
        &node,
        "bigexec",
        "main",
        serde_json::json!({"command": ["sh", "-c", "while true; do sleep 1; done"]}),
    );
    let husklet = node.husklet_pid().expect("husklet");
    let before = rss_kib(husklet);
    let sampler = Sampler::start(&node);
    let t0 = Instant::now();
    let mut child = crictl(&node)
        .args(["exec", "-i", &ctr, "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crictl exec");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let mut noise = Noise::new(0x5eed);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        while sent < GIB {
            noise.fill(&mut buf);
            stdin.write_all(&buf).expect("crictl stdin");
            h.update(&buf);
            sent += buf.len() as u64;
        }
        drop(stdin);
        hex(h.finalize())
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let (mut h, mut got) = (Sha256::new(), 0u64);
    let mut buf = vec![0u8; 256 * 1024];
    let mut shim_mid = 0;
    loop {
        let n = stdout.read(&mut buf).expect("crictl stdout");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
        if shim_mid == 0 && got > GIB / 2 {
            shim_mid = exec_shim_pids(&node)
                .into_iter()
                .map(rss_kib)
                .max()
                .unwrap_or(0);
        }
    }
    let sent_sum = writer.join().expect("writer");
    let out = child.wait_with_output().expect("crictl");
    let (peak, shim_peak) = sampler.peaks();
    let after = rss_kib(husklet);
    println!(
        "exec 1 GiB in {:.1} s: husklet RSS {before} KiB before, peak {peak} KiB, {after} KiB after; \
         exec shim RSS {shim_mid} KiB half-way, peak {shim_peak} KiB",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got, GIB, "bytes back");
    assert_eq!(hex(h.finalize()), sent_sum, "checksum of what came back");
}

#[test]
fn one_gib_through_port_forward_arrives_intact() {
    require_crictl!();
    let node = CriNode::start();
    let (pod, ctr) = run_pod(
        &node,
        "bigpf",
        "httpd",
        serde_json::json!({"command": ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]}),
    );
    let made = node.crictl_ok(&[
        "exec",
        &ctr,
        "sh",
        "-c",
        "dd if=/dev/urandom of=/www/big bs=1048576 count=1024 2>/dev/null && sha256sum /www/big",
    ]);
    let want = made
        .split_whitespace()
        .next()
        .expect("sha256sum")
        .to_string();
    let fwd = Forward::start(&node, &pod, 8080);
    let husklet = node.husklet_pid().expect("husklet");
    let before = rss_kib(husklet);
    let sampler = Sampler::start(&node);
    let t0 = Instant::now();
    let mut curl = std::process::Command::new("curl")
        .args([
            "-sf",
            "--retry",
            "5",
            "--retry-connrefused",
            "--max-time",
            "600",
        ])
        .arg(format!("http://127.0.0.1:{}/big", fwd.local))
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut body = curl.stdout.take().expect("stdout");
    let (mut h, mut got) = (Sha256::new(), 0u64);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = body.read(&mut buf).expect("curl stdout");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    let status = curl.wait().expect("curl");
    let (peak, _) = sampler.peaks();
    let after = rss_kib(husklet);
    println!(
        "port-forward 1 GiB in {:.1} s: husklet RSS {before} KiB before, peak {peak} KiB, {after} KiB after",
        t0.elapsed().as_secs_f64()
    );
    assert!(status.success(), "curl: {status}");
    assert_eq!(got, GIB, "bytes received");
    assert_eq!(hex(h.finalize()), want, "checksum of the file in the pod");
}

#[test]
fn a_client_that_stops_reading_holds_the_process_back() {
    require_crictl!();
    let node = CriNode::start();
    let (_pod, ctr) = run_pod(
        &node,
        "slow",
        "main",
        serde_json::json!({"command": ["sh", "-c", "while true; do sleep 1; done"]}),
    );
    // 256 MiB: far more than every buffer on the way (pipe, socket pair,
    // SPDY queue, TCP, crictl's stdout pipe) holds.
    let mut child = crictl(&node)
        .args([
            "exec",
            &ctr,
            "sh",
            "-c",
            "head -c 268435456 /dev/zero; touch /done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("crictl exec");
    let husklet = node.husklet_pid().expect("husklet");
    std::thread::sleep(Duration::from_secs(3));
    let done = |node: &CriNode| {
        node.crictl(&["exec", &ctr, "test", "-e", "/done"])
            .status
            .success()
    };
    let t1 = Instant::now();
    assert!(
        !done(&node),
        "the process ran to its end while nobody read its output"
    );
    let check = t1.elapsed();
    let shims: Vec<u64> = exec_shim_pids(&node).into_iter().map(rss_kib).collect();
    println!(
        "while the client does not read: husklet RSS {} KiB, exec shim RSS {shims:?} KiB \
         (a second exec meanwhile took {check:?})",
        rss_kib(husklet)
    );
    let mut stdout = child.stdout.take().expect("stdout");
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stdout.read(&mut buf).expect("crictl stdout");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let out = child.wait_with_output().expect("crictl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got, 256 << 20);
    assert!(done(&node), "the process finished once its output was read");
}
