//! kubectl through the real kube-apiserver to husklet's kubelet API:
//! `kubectl logs` (and `-f`), `kubectl exec` (exit codes, stdin),
//! `kubectl port-forward`; the apiserver authenticates with its kubelet
//! client certificate, and token users are reviewed (TokenReview) and
//! authorized (SubjectAccessReview) by the apiserver.
//!
//! The pods are static pods of the node, with their mirror pods created
//! in the apiserver by the test (name `<pod>-<node>`, the config hash as
//! mirror annotation), and the Node object registered by the test with the
//! node's InternalIP and kubelet port: all the apiserver needs to proxy.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use husk_tests::control_plane::{self, ControlPlane, StaticToken};
use husk_tests::pods::{NODE, PodNode, container};
use husk_tests::require_control_plane;

const T: Duration = Duration::from_secs(60);

const POD: &str = r#"
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
    command: [sh, -c, "sleep 3; for i in 1 2 3; do echo tick-$i; sleep 1; done"]
  - name: web
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "mkdir -p /www && echo hello-through-port-forward > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: chatter
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "i=0; while true; do i=$((i+1)); echo chat-$i; sleep 0.3; done"]
"#;

fn token(token: &str, user: &str) -> StaticToken {
    StaticToken {
        token: token.into(),
        user: user.into(),
        uid: format!("{user}-uid"),
        groups: vec![],
    }
}

/// The Node object as the apiserver needs it to reach the kubelet API.
fn register_node(cp: &ControlPlane) {
    cp.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{NODE}"}}}}"#
    ));
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{}"}},{{"type":"Hostname","address":"{NODE}"}}],
            "daemonEndpoints":{{"kubeletEndpoint":{{"Port":10250}}}}}}}}"#,
        control_plane::NODE_IP
    );
    cp.kubectl_ok(&[
        "patch",
        "node",
        NODE,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

/// The static pod's mirror pod, as kubelet creates it.
fn create_mirror(cp: &ControlPlane, node: &PodNode, name: &str) {
    let p = node.pod(name).expect("static pod reported");
    let mut pod = p["pod"].clone();
    let hash = pod["metadata"]["annotations"]["kubernetes.io/config.hash"].clone();
    assert!(hash.is_string(), "config hash: {pod}");
    let meta = pod["metadata"].as_object_mut().expect("metadata");
    for k in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
        meta.remove(k);
    }
    pod["metadata"]["annotations"]["kubernetes.io/config.mirror"] = hash;
    pod["spec"]["nodeName"] = NODE.into();
    pod.as_object_mut().expect("pod").remove("status");
    cp.apply(&pod.to_string());
    // Its status as the node reports it (kubectl port-forward wants Running).
    let status = serde_json::json!({"status": p["status"]}).to_string();
    let full = node.full(name);
    cp.kubectl_ok(&[
        "patch",
        "pod",
        &full,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

/// curl in the control plane's namespace: (HTTP code, body).
fn curl(cp: &ControlPlane, args: &[&str]) -> (String, String) {
    let out = cp
        .command("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

fn kubelet(path: &str) -> String {
    format!("https://{}:10250{path}", control_plane::NODE_IP)
}

#[test]
fn kubectl_logs_exec_and_port_forward_reach_the_kubelet_api() {
    require_control_plane!();
    let cp = ControlPlane::start_with(control_plane::Config {
        tokens: vec![token("bob-token", "bob"), token("carol-token", "carol")],
        ..Default::default()
    });
    let (kubeconfig, ca) = (cp.node_kubeconfig(), cp.ca_cert());
    let node = PodNode::start_in(
        &cp.netns_path(),
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8"),
            "--address",
            control_plane::NODE_IP,
            "--port",
            "10250",
            "--client-ca-file",
            ca.to_str().expect("utf-8"),
            "--authentication-token-webhook",
            "--authorization-mode",
            "Webhook",
        ],
    );
    register_node(&cp);
    node.add("talk.yaml", POD);
    node.wait_pod("talk", T, "running", |p| {
        ["main", "ticker", "web", "chatter"]
            .iter()
            .all(|c| container(p, c)["state"]["running"].is_object())
    });
    create_mirror(&cp, &node, "talk");
    let pod = node.full("talk");

    // kubectl logs, through the apiserver.
    let t0 = Instant::now();
    loop {
        let out = cp.kubectl(&["logs", &pod, "-c", "main"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text == "one\ntwo\nthree\n" {
            break;
        }
        assert!(
            t0.elapsed() < T,
            "kubectl logs: {text:?} {}\nhusklet:\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        cp.kubectl_ok(&["logs", &pod, "-c", "main", "--tail=1"]),
        "three\n"
    );
    // -f follows until the container exits.
    let out = cp.kubectl(&["logs", "-f", &pod, "-c", "ticker"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick-1\ntick-2\ntick-3\n"
    );

    // kubectl exec: the exit code comes back; stdin goes in.
    let out = cp.kubectl(&[
        "exec",
        &pod,
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo out; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    let out = cp.kubectl_as(
        &cp.admin_kubeconfig(),
        &["exec", "-i", &pod, "-c", "main", "--", "tr", "a-z", "A-Z"],
        Some("hello stdin\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\n");

    // kubectl port-forward, fetched with curl.
    let mut pf = cp
        .command(husk_tests::cri::k8s_bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.admin_kubeconfig())
        .args(["port-forward", &format!("pod/{pod}"), "18080:8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut lines = BufReader::new(pf.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let fetched = curl(&cp, &["http://127.0.0.1:18080/index.html"]);
    let _ = pf.kill();
    let mut err = String::new();
    if let Some(mut e) = pf.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let _ = pf.wait();
    assert!(
        first.contains("Forwarding from"),
        "port-forward said {first:?} {err}"
    );
    assert_eq!(
        fetched,
        ("200".to_string(), "hello-through-port-forward\n".into())
    );

    // kubectl attach: the running container's output as it comes.
    let mut at = cp
        .command(husk_tests::cri::k8s_bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.admin_kubeconfig())
        .args(["attach", &pod, "-c", "chatter"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl attach");
    let mut lines = BufReader::new(at.stdout.take().expect("stdout")).lines();
    let got: Vec<String> = lines.by_ref().take(2).map_while(Result::ok).collect();
    let _ = at.kill();
    let _ = at.wait();
    assert_eq!(got.len(), 2, "kubectl attach printed {got:?}");
    let n = |l: &str| l.strip_prefix("chat-").and_then(|n| n.parse::<u32>().ok());
    match (n(&got[0]), n(&got[1])) {
        (Some(a), Some(b)) => assert_eq!(b, a + 1, "{got:?}"),
        _ => panic!("kubectl attach printed {got:?}"),
    }

    // Tokens: reviewed by the apiserver; access per RBAC on nodes/proxy.
    cp.apply(
        r#"{"apiVersion":"v1","kind":"List","items":[
          {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"node-proxy"},
           "rules":[{"apiGroups":[""],"resources":["nodes/proxy"],"verbs":["get"]}]},
          {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"carol-node-proxy"},
           "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"node-proxy"},
           "subjects":[{"kind":"User","name":"carol","apiGroup":"rbac.authorization.k8s.io"}]}]}"#,
    );
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let (code, body) = curl(
        &cp,
        &["-k", "-H", &bearer("carol-token"), &kubelet("/pods")],
    );
    assert_eq!(code, "200", "{body}");
    assert!(body.contains(&pod), "{body}");
    let (code, body) = curl(&cp, &["-k", "-H", &bearer("bob-token"), &kubelet("/pods")]);
    assert_eq!(
        (code.as_str(), body.as_str()),
        (
            "403",
            "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)"
        )
    );
    // carol may proxy but not read stats.
    let (code, _) = curl(
        &cp,
        &[
            "-k",
            "-H",
            &bearer("carol-token"),
            &kubelet("/stats/summary"),
        ],
    );
    assert_eq!(code, "403");
    let (code, body) = curl(
        &cp,
        &["-k", "-H", &bearer("nobody-token"), &kubelet("/pods")],
    );
    assert_eq!((code.as_str(), body.as_str()), ("401", "Unauthorized"));
    let (code, _) = curl(&cp, &["-k", &kubelet("/healthz")]);
    assert_eq!(code, "401", "anonymous");
    cp.kubectl_ok(&["delete", "pod", &pod, "--grace-period=0", "--force"]);
}
