//! The kubelet HTTPS API of `husklet serve` (--port), without a control
//! plane: client certificates against --client-ca-file, anonymous callers
//! refused, and what an authorized caller reads (/healthz, /pods,
//! /containerLogs, /stats/summary, /metrics), on a node running static pods.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use husk_tests::pods::{PodNode, container};
use husk_tests::require_root;

mod pki {
    include!("node_api_support/pki.rs");
}

const T: Duration = Duration::from_secs(60);
const PORT: &str = "10250";

/// A curl call's outcome: exit status, HTTP code ("000" when none), body.
struct Reply {
    ok: bool,
    code: String,
    body: String,
}

/// `curl https://127.0.0.1:PORT<path>` trusting the node's serving
/// certificate, with a client certificate when given.
fn get(serving: &Path, client: Option<&(PathBuf, PathBuf)>, path: &str) -> Reply {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "30",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(serving);
    if let Some((crt, key)) = client {
        c.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = c
        .arg(format!("https://127.0.0.1:{PORT}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Reply {
        ok: out.status.success(),
        code: code.to_string(),
        body: body.to_string(),
    }
}

fn get_ok(serving: &Path, client: &(PathBuf, PathBuf), path: &str) -> String {
    let r = get(serving, Some(client), path);
    assert_eq!(r.code, "200", "GET {path}: {}", r.body);
    r.body
}

const LOGS_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: talk, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo one; echo two; echo three >&2; exec sleep 3600"]
  - name: ticker
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 2; for i in 1 2 3; do echo tick-$i; sleep 1; done"]
"#;

#[test]
fn client_certificates_authenticate_and_pods_logs_and_stats_are_served() {
    require_root!();
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let ca = pki::Ca::new(pki_dir.path(), "client-ca");
    let other = pki::Ca::new(pki_dir.path(), "other-ca");
    let alice = ca.client("alice", "/O=team/CN=alice");
    let mallory = other.client("mallory", "/O=system:masters/CN=mallory");
    let ca_file = ca.cert();
    let node = PodNode::start_with(&[
        "--address",
        "127.0.0.1",
        "--port",
        PORT,
        "--client-ca-file",
        ca_file.to_str().expect("utf-8"),
    ]);
    // The self-signed serving certificate, kept in the state dir.
    let serving = node.state().join("pki/kubelet.crt");
    let t0 = Instant::now();
    while get(&serving, Some(&alice), "/healthz").code != "200" {
        assert!(
            t0.elapsed() < T,
            "kubelet API never answered\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get_ok(&serving, &alice, "/healthz"), "ok");

    // No certificate, no token: 401 (anonymous access is off).
    let anon = get(&serving, None, "/pods");
    assert_eq!(
        (anon.code.as_str(), anon.body.as_str()),
        ("401", "Unauthorized")
    );
    // A certificate from a CA the node does not trust: no TLS session at all.
    let bad = get(&serving, Some(&mallory), "/pods");
    assert!(
        !bad.ok && bad.code == "000",
        "a foreign client certificate was accepted: {} {}",
        bad.code,
        bad.body
    );

    node.add("talk.yaml", LOGS_POD);
    let p = node.wait_pod("talk", T, "running", |p| {
        container(p, "main")["state"]["running"].is_object()
            && container(p, "ticker")["state"]["running"].is_object()
    });
    let full = node.full("talk");
    assert!(p["pod"]["metadata"]["name"] == full.as_str());

    // /pods: the node's pods with their status.
    let list: serde_json::Value =
        serde_json::from_str(&get_ok(&serving, &alice, "/pods")).expect("PodList JSON");
    assert_eq!(list["kind"], "PodList");
    let item = list["items"]
        .as_array()
        .and_then(|i| i.iter().find(|p| p["metadata"]["name"] == full.as_str()))
        .unwrap_or_else(|| panic!("{full} not in /pods: {list}"));
    assert_eq!(item["metadata"]["namespace"], "default");
    assert_eq!(item["status"]["phase"], "Running");

    // Follow the ticker from the start: the response ends when it exits.
    let follow = std::thread::spawn({
        let (serving, alice, full) = (serving.clone(), alice.clone(), full.clone());
        move || {
            get(
                &serving,
                Some(&alice),
                &format!("/containerLogs/default/{full}/ticker?follow=true"),
            )
        }
    });

    let logs = |q: &str| {
        get_ok(
            &serving,
            &alice,
            &format!("/containerLogs/default/{full}/main{q}"),
        )
    };
    let t0 = Instant::now();
    while logs("") != "one\ntwo\nthree\n" {
        assert!(t0.elapsed() < T, "main's log: {:?}", logs(""));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(logs("?tailLines=2"), "two\nthree\n");
    assert_eq!(logs("?limitBytes=5"), "one\nt");
    let stamped = logs("?timestamps=true");
    let first = stamped.lines().next().unwrap_or_default();
    let (ts, rest) = first.split_once(' ').unwrap_or_default();
    assert_eq!(rest, "one", "{stamped}");
    assert!(
        ts.len() > 20 && ts.as_bytes()[4] == b'-' && ts.contains('T'),
        "RFC 3339 timestamp: {stamped}"
    );
    let missing = get(
        &serving,
        Some(&alice),
        &format!("/containerLogs/default/{full}/nope"),
    );
    assert_eq!(missing.code, "404", "{}", missing.body);
    let prev = get(
        &serving,
        Some(&alice),
        &format!("/containerLogs/default/{full}/main?previous=true"),
    );
    assert_eq!(prev.code, "400", "no previous container: {}", prev.body);

    let followed = follow.join().expect("follow thread");
    assert_eq!(followed.code, "200", "{}", followed.body);
    assert_eq!(followed.body, "tick-1\ntick-2\ntick-3\n");

    // Stats: the node and the pod's running container.
    let summary: serde_json::Value =
        serde_json::from_str(&get_ok(&serving, &alice, "/stats/summary")).expect("summary JSON");
    assert_eq!(summary["node"]["nodeName"], husk_tests::pods::NODE);
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let pod = summary["pods"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["podRef"]["name"] == full.as_str()))
        .unwrap_or_else(|| panic!("{full} not in the summary: {summary}"));
    let main = pod["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "main"))
        .unwrap_or_else(|| panic!("main not in the summary: {pod}"));
    assert!(
        main["memory"]["workingSetBytes"].as_u64().is_some(),
        "container memory: {main}"
    );
    let metrics = get_ok(&serving, &alice, "/metrics");
    assert!(metrics.contains("\nkubelet_running_pods 1\n"), "{metrics}");
    let resource = get_ok(&serving, &alice, "/metrics/resource");
    assert!(
        resource.contains(&format!("container_memory_working_set_bytes{{container=\"main\",namespace=\"default\",pod=\"{full}\"}}")),
        "{resource}"
    );
    let nf = get(&serving, Some(&alice), "/nothing-here");
    assert_eq!(nf.code, "404");
}

#[test]
fn webhook_modes_without_an_apiserver_are_refused_at_startup() {
    require_root!();
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in [
        &["--authorization-mode", "Webhook"][..],
        &["--authentication-token-webhook"][..],
    ] {
        let out = husk_tests::husklet::husklet_command(&dir.path().join("root"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix://{}", dir.path().join("h.sock").display()))
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(["--port", "10250"])
            .args(mode)
            .output()
            .expect("run husklet");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "husklet started with {mode:?}");
        assert!(
            err.contains("needs an apiserver client (--kubeconfig)"),
            "{mode:?}: {err}"
        );
    }
}
