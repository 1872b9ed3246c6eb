//! The apiserver pod benchmark run by `scripts/bench/node-100`: husklet
//! joined to the test control plane (etcd + kube-apiserver, see
//! [`husk_tests::control_plane`]); N pods created through the apiserver
//! with `spec.nodeName` set, timed until `kubectl get pods` shows all of
//! them Ready, then deleted and timed until kubectl lists none; husklet's
//! peak and steady RSS and the runtime's (shims, and containerd's daemon
//! when it is the runtime).
//!
//! ```text
//! node-bench [--runtime husk|containerd] [--pods N]
//! ```
//!
//! husklet and its helpers come from `$HUSK_BIN_DIR` (the script points it
//! at target/release). Progress goes to stderr; the results are printed
//! as `key=value` lines on stdout.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use husk_tests::control_plane::{Config, ControlPlane};
use husk_tests::pods::{NODE, PodNode};
use serde_json::Value;

/// How long the pods may take to come up, and to go.
const TIMEOUT: Duration = Duration::from_secs(600);
/// How often kubectl is asked.
const POLL: Duration = Duration::from_millis(500);

struct Args {
    containerd: bool,
    pods: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        containerd: false,
        pods: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runtime" => match it.next().as_deref() {
                Some("husk") => a.containerd = false,
                Some("containerd") => a.containerd = true,
                other => bail!("--runtime husk|containerd, not {other:?}"),
            },
            "--pods" => {
                let n = it.next().context("--pods N")?;
                a.pods = n.parse().with_context(|| format!("--pods {n:?}"))?;
            }
            other => bail!("unknown argument {other:?} (--runtime husk|containerd, --pods N)"),
        }
    }
    Ok(a)
}

fn log(msg: &str) {
    eprintln!("node-bench: {msg}");
}

/// `/proc/<pid>/status` field `key` (kB).
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The pids whose command (comm) is one of `names`, in the network
/// namespace at `netns` (the machine is shared: other runtimes run elsewhere).
fn pids_named(names: &[&str], netns: &Path) -> Vec<u32> {
    let Ok(want) = std::fs::metadata(netns).map(|m| m.ino()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ino = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
        if names.contains(&comm.trim()) && ino.ok() == Some(want) {
            out.push(pid);
        }
    }
    out
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// The pods as `kubectl get pods` reports them (name -> Ready), if it answered.
fn pods_ready(cp: &ControlPlane) -> Option<HashMap<String, bool>> {
    let out = cp.kubectl(&["get", "pods", "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .map(|p| {
                let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                let name = p["metadata"]["name"].as_str().unwrap_or_default();
                (name.to_string(), ready)
            })
            .collect(),
    )
}

/// A List of `n` pods bound to the node: busybox `sleep 3600`, present
/// image, 1 s grace (busybox's sleep as pid 1 ignores SIGTERM: each
/// deletion waits out the grace, as in scripts/bench/pods-100).
fn pod_list(n: usize) -> String {
    let items: Vec<Value> = (1..=n)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p{i}"), "namespace": "default"},
                "spec": {
                    "nodeName": NODE,
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "busybox:latest",
                        "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]
                }
            })
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if !nix::unistd::Uid::effective().is_root() {
        bail!("needs root");
    }
    if let Some((_, why)) = husk_tests::control_plane::unavailable() {
        bail!("the control plane cannot run here: {why}");
    }
    // No pressure whatever this host's free memory and disk.
    let flags = ["--eviction-hard=memory.available<1Ki,nodefs.available<1Ki,pid.available<1"];
    let (cp, node) = if args.containerd {
        if let Some(why) = husk_tests::containerd::unavailable() {
            bail!("containerd cannot run here: {why}");
        }
        log("starting containerd, etcd and kube-apiserver");
        let c = husk_tests::containerd::Containerd::start();
        let cp = ControlPlane::start_in_netns(Config::default(), &c.netns.clone());
        let node = PodNode::join_containerd(&cp, c, &flags);
        (cp, node)
    } else {
        log("starting etcd and kube-apiserver");
        let cp = ControlPlane::start();
        let node = PodNode::join(&cp, &flags);
        (cp, node)
    };
    let husklet = node.husklet_pid().context("husklet is not running")?;
    let netns = cp.netns_path();
    let runtime_names: &[&str] = if args.containerd {
        &["containerd", "containerd-shim"]
    } else {
        &["husk-shim"]
    };
    let t0 = Instant::now();
    while !cp
        .kubectl_ok(&["get", "node", NODE, "--no-headers", "--ignore-not-found"])
        .contains(" Ready ")
    {
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("node {NODE} not Ready after 120 s:\n{}", node.log());
        }
        std::thread::sleep(POLL);
    }
    log(&format!("node Ready; creating {} pods", args.pods));
    let list = pod_list(args.pods);

    // Up: from the first create to all Ready in kubectl's view.
    let t0 = Instant::now();
    let out = cp.kubectl_as(&cp.admin_kubeconfig(), &["create", "-f", "-"], Some(&list));
    if !out.status.success() {
        bail!("kubectl create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let created = t0.elapsed();
    let mut peak_runtime = 0;
    loop {
        let ready = pods_ready(&cp).map_or(0, |m| m.values().filter(|r| **r).count());
        let rt: u64 = pids_named(runtime_names, &netns)
            .iter()
            .map(|p| status_kb(*p, "VmRSS:"))
            .sum();
        peak_runtime = peak_runtime.max(rt);
        if ready == args.pods {
            break;
        }
        if t0.elapsed() > TIMEOUT {
            bail!(
                "only {ready} of {} pods Ready after {TIMEOUT:?}\n{}",
                args.pods,
                node.log()
            );
        }
        std::thread::sleep(POLL);
    }
    let up = t0.elapsed();
    log(&format!("all Ready in {:.2} s", up.as_secs_f64()));
    // Let the start-up settle before reading the steady RSS.
    std::thread::sleep(Duration::from_secs(10));
    let husklet_rss = status_kb(husklet, "VmRSS:");
    let runtime_pids = pids_named(runtime_names, &netns);
    let runtime_rss: u64 = runtime_pids.iter().map(|p| status_kb(*p, "VmRSS:")).sum();

    // Down: from the delete to no pod listed.
    let t0 = Instant::now();
    cp.kubectl_ok(&["delete", "pods", "--all", "--wait=false"]);
    loop {
        match pods_ready(&cp) {
            Some(m) if m.is_empty() => break,
            _ if t0.elapsed() > TIMEOUT => bail!(
                "pods still listed {TIMEOUT:?} after the delete\n{}",
                node.log()
            ),
            _ => std::thread::sleep(POLL),
        }
    }
    let down = t0.elapsed();
    log(&format!("all gone in {:.2} s", down.as_secs_f64()));
    // kubelet's view too: nothing of them is left on the node.
    let t1 = Instant::now();
    while !node.pods().is_empty() {
        if t1.elapsed() > Duration::from_secs(60) {
            bail!("pods still on the node after kubectl lists none");
        }
        std::thread::sleep(POLL);
    }
    let husklet_peak = status_kb(husklet, "VmHWM:");

    println!("pods={}", args.pods);
    println!("create_s={:.2}", created.as_secs_f64());
    println!("up_s={:.2}", up.as_secs_f64());
    println!("down_s={:.2}", down.as_secs_f64());
    println!("husklet_peak_mib={}", mib(husklet_peak));
    println!("husklet_rss_mib={}", mib(husklet_rss));
    println!("runtime_rss_mib={}", mib(runtime_rss));
    println!("runtime_peak_mib={}", mib(peak_runtime.max(runtime_rss)));
    println!("runtime_procs={}", runtime_pids.len());
    drop(node);
    drop(cp);
    Ok(())
}
