//! What a pod gets from the cluster through husklet joined to a real
//! kube-apiserver (v1.26): the ServiceAccount admission's
//! `kube-api-access-*` volume (a TokenRequest token bound to the pod, the
//! cluster CA, the namespace), custom projected tokens with their audience,
//! the service link environment variables, a failed TokenRequest reported
//! as FailedMount until it works; and allocatable less the reservations.

use std::time::Duration;

use husk_tests::control_plane::ControlPlane;
use husk_tests::pods::{NODE, PodNode, has_event};
use husk_tests::pods::{api_pod_ready, wait_get};
use husk_tests::require_control_plane;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `husklet exec` in pod `name`'s container `c`: its stdout (asserting success).
fn exec(node: &PodNode, name: &str, cmd: &[&str]) -> String {
    let endpoint = format!("unix://{}", node.socket().display());
    let mut args = vec!["exec", name, "-c", "c", "--endpoint", &endpoint, "--"];
    args.extend_from_slice(cmd);
    let out = node.husklet(&args);
    assert!(
        out.status.success(),
        "exec {cmd:?} in {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The environment of pod `name`'s container as `env` prints it.
fn env_of(node: &PodNode, name: &str) -> std::collections::BTreeMap<String, String> {
    exec(node, name, &["env"])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A TokenReview of `token` as admin (for `audiences`, or the apiserver's).
fn review(cp: &ControlPlane, token: &str, audiences: &[&str]) -> Value {
    let manifest = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    })
    .to_string();
    let out = cp.kubectl_as(
        &cp.admin_kubeconfig(),
        &["create", "-f", "-", "-o", "json"],
        Some(&manifest),
    );
    assert!(
        out.status.success(),
        "TokenReview: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("TokenReview json")
}

fn cluster_ip(cp: &ControlPlane, ns: &str, name: &str) -> String {
    let ip = cp.kubectl_ok(&[
        "get",
        "svc",
        "-n",
        ns,
        name,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(
        !ip.trim().is_empty(),
        "service {ns}/{name} has no cluster IP"
    );
    ip.trim().to_string()
}

/// A pod bound to the test node running `sleep`, with the defaults the
/// apiserver adds (the ServiceAccount admission's token volume).
fn pod(name: &str, extra_spec: &str, extra_container: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 1
{extra_spec}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "3600"]
{extra_container}
"#
    )
}

#[test]
fn pods_get_their_service_account_token_ca_namespace_and_service_links() {
    require_control_plane!();
    let cp = ControlPlane::start();
    cp.apply(
        r#"{"apiVersion":"v1","kind":"List","items":[
  {"apiVersion":"v1","kind":"Service","metadata":{"name":"my-svc","namespace":"default"},
   "spec":{"ports":[{"name":"http","port":80,"protocol":"TCP"},{"name":"dns","port":53,"protocol":"UDP"}]}},
  {"apiVersion":"v1","kind":"Service","metadata":{"name":"headless","namespace":"default"},
   "spec":{"clusterIP":"None","ports":[{"port":80}]}}]}"#,
    );
    let node = PodNode::join(&cp, &[]);
    let spec = r#"  volumes:
  - name: vault
    projected:
      defaultMode: 0600
      sources:
      - serviceAccountToken: {path: token, audience: vault, expirationSeconds: 600}"#;
    let mounts = "    volumeMounts:\n    - {name: vault, mountPath: /vault}";
    cp.apply(&pod("sa", spec, mounts));
    let p = wait_get(
        &cp,
        &node,
        &["pod", "sa"],
        "Running and Ready",
        api_pod_ready,
    );
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    let volumes = p["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    assert!(
        volumes.iter().any(|v| v["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-"))),
        "the ServiceAccount admission added its volume: {volumes:?}"
    );

    // The token is a JWT for system:serviceaccount:default:default bound to the pod.
    let token = exec(&node, "sa", &["cat", &format!("{SA_DIR}/token")]);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let r = review(&cp, &token, &[]);
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    let user = &r["status"]["user"];
    assert_eq!(user["username"], "system:serviceaccount:default:default");
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"][0],
        "sa"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-uid"][0],
        uid.as_str()
    );
    // The kube-api-access volume's defaultMode (0644).
    assert_eq!(
        exec(
            &node,
            "sa",
            &["stat", "-L", "-c", "%a", &format!("{SA_DIR}/token")]
        )
        .trim(),
        "644"
    );
    let ca = std::fs::read_to_string(cp.ca_cert()).expect("ca.crt");
    assert_eq!(exec(&node, "sa", &["cat", &format!("{SA_DIR}/ca.crt")]), ca);
    assert_eq!(
        exec(&node, "sa", &["cat", &format!("{SA_DIR}/namespace")]),
        "default"
    );

    // The custom source: audience vault only, its own mode.
    let vault = exec(&node, "sa", &["cat", "/vault/token"]);
    let r = review(&cp, &vault, &["vault"]);
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(r["status"]["audiences"][0], "vault", "{r}");
    let r = review(&cp, &vault, &[]);
    assert_ne!(
        r["status"]["authenticated"], true,
        "not for the apiserver: {r}"
    );
    assert_eq!(
        exec(&node, "sa", &["stat", "-L", "-c", "%a", "/vault/token"]).trim(),
        "600"
    );

    // Service links: the kubernetes Service and my-svc, not the headless one.
    let kube_ip = cluster_ip(&cp, "default", "kubernetes");
    let svc_ip = cluster_ip(&cp, "default", "my-svc");
    let env = env_of(&node, "sa");
    let want = [
        ("KUBERNETES_SERVICE_HOST", kube_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".into()),
        ("KUBERNETES_PORT", format!("tcp://{kube_ip}:443")),
        ("MY_SVC_SERVICE_HOST", svc_ip.clone()),
        ("MY_SVC_SERVICE_PORT", "80".into()),
        ("MY_SVC_SERVICE_PORT_HTTP", "80".into()),
        ("MY_SVC_SERVICE_PORT_DNS", "53".into()),
        ("MY_SVC_PORT", format!("tcp://{svc_ip}:80")),
        ("MY_SVC_PORT_80_TCP", format!("tcp://{svc_ip}:80")),
        ("MY_SVC_PORT_80_TCP_PROTO", "tcp".into()),
        ("MY_SVC_PORT_80_TCP_PORT", "80".into()),
        ("MY_SVC_PORT_80_TCP_ADDR", svc_ip.clone()),
        ("MY_SVC_PORT_53_UDP", format!("udp://{svc_ip}:53")),
        ("MY_SVC_PORT_53_UDP_PROTO", "udp".into()),
    ];
    for (k, v) in &want {
        assert_eq!(env.get(*k), Some(v), "{k} in {env:?}");
    }
    assert!(!env.contains_key("HEADLESS_SERVICE_HOST"), "{env:?}");

    // enableServiceLinks: false: only the kubernetes Service; an explicit
    // env var wins over a service variable and $(VAR) sees them.
    let container = r#"    env:
    - {name: KUBERNETES_SERVICE_PORT, value: "mine"}
    - {name: API, value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT_HTTPS)"}"#;
    cp.apply(&pod("nolinks", "  enableServiceLinks: false", container));
    wait_get(
        &cp,
        &node,
        &["pod", "nolinks"],
        "Running and Ready",
        api_pod_ready,
    );
    let env = env_of(&node, "nolinks");
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some(&kube_ip));
    assert_eq!(
        env.get("KUBERNETES_SERVICE_PORT").map(String::as_str),
        Some("mine")
    );
    assert_eq!(env.get("API"), Some(&format!("https://{kube_ip}:443")));
    assert!(
        !env.keys().any(|k| k.starts_with("MY_SVC_")),
        "no links to my-svc: {env:?}"
    );
    cp.kubectl_ok(&["delete", "pod", "sa", "nolinks", "--wait=false"]);
}

#[test]
fn a_failed_token_request_is_failed_mount_until_it_works() {
    require_control_plane!();
    let cp = ControlPlane::start();
    // The pod is admitted while its ServiceAccount exists; the account is
    // gone by the time the node asks for a token.
    cp.apply(r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot","namespace":"default"}}"#);
    cp.apply(&pod("robot", "  serviceAccountName: robot", ""));
    cp.kubectl_ok(&["delete", "serviceaccount", "robot"]);
    let node = PodNode::join(&cp, &[]);
    let events = wait_get(
        &cp,
        &node,
        &["events", "--field-selector", "involvedObject.name=robot"],
        "a FailedMount event",
        |l| {
            l["items"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["reason"] == "FailedMount"))
        },
    );
    let msg = events["items"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["reason"] == "FailedMount"))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains("MountVolume.SetUp failed for volume \"kube-api-access-")
            && msg.contains("failed to fetch token")
            && msg.contains("robot"),
        "{msg}"
    );
    let p = cp.get_json(&["pod", "robot"]);
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
    assert_eq!(waiting, "ContainerCreating", "{p}");
    // The account comes back: the next attempt gets a token, the pod runs.
    cp.apply(r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot","namespace":"default"}}"#);
    wait_get(
        &cp,
        &node,
        &["pod", "robot"],
        "Running and Ready",
        api_pod_ready,
    );
    let token = exec(&node, "robot", &["cat", &format!("{SA_DIR}/token")]);
    let r = review(&cp, &token, &[]);
    assert_eq!(
        r["status"]["user"]["username"], "system:serviceaccount:default:robot",
        "{r}"
    );

    // A static pod has no pod object to bind a token to: a clear FailedMount.
    node.add(
        "static.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static, namespace: default}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    \
         image: busybox:latest\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n    \
         volumeMounts: [{name: t, mountPath: /t}]\n  volumes:\n  - name: t\n    projected:\n      \
         sources: [{serviceAccountToken: {path: token}}]\n",
    );
    let p = node.wait_pod("static", T, "FailedMount", |p| {
        has_event(p, "FailedMount", "static pods cannot use them")
    });
    assert_ne!(p["status"]["phase"], "Running", "{p}");
}

fn quantity_bytes(q: &str) -> i64 {
    let (n, mult) = match q {
        _ if q.ends_with("Ki") => (&q[..q.len() - 2], 1024),
        _ if q.ends_with("Mi") => (&q[..q.len() - 2], 1 << 20),
        _ if q.ends_with("Gi") => (&q[..q.len() - 2], 1 << 30),
        _ => (q, 1),
    };
    n.parse::<i64>().unwrap_or_else(|_| panic!("quantity {q}")) * mult
}

#[test]
fn allocatable_is_capacity_less_the_reservations() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(
        &cp,
        &[
            "--system-reserved=cpu=100m,memory=256Mi,ephemeral-storage=1Gi,pid=1000",
            "--kube-reserved=cpu=50m,memory=128Mi",
            "--eviction-hard=memory.available<100Mi,nodefs.available<1Gi,pid.available<1",
        ],
    );
    let n = wait_get(&cp, &node, &["node", NODE], "registered", |n| {
        n["status"]["allocatable"].is_object()
    });
    let cap = &n["status"]["capacity"];
    let alloc = &n["status"]["allocatable"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let cpus: i64 = s(&cap["cpu"]).parse().expect("cpu capacity");
    assert_eq!(s(&alloc["cpu"]), format!("{}m", cpus * 1000 - 150));
    assert_eq!(
        quantity_bytes(&s(&alloc["memory"])),
        quantity_bytes(&s(&cap["memory"])) - (256 + 128 + 100) * (1 << 20)
    );
    let storage = quantity_bytes(&s(&cap["ephemeral-storage"])) - 2 * (1 << 30);
    assert_eq!(
        quantity_bytes(&s(&alloc["ephemeral-storage"])),
        storage.max(0)
    );
    assert_eq!(alloc["pods"], cap["pods"]);

    // A bad value names its flag.
    let root = tempfile::tempdir().expect("tempdir");
    let err =
        husk_tests::husklet::husklet_fails(root.path(), &["serve", "--system-reserved=gpu=1"]);
    assert!(
        err.contains("--system-reserved") && err.contains("cannot reserve \"gpu\""),
        "{err}"
    );
}
