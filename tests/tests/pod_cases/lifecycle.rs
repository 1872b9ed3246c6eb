// Static pods end to end: what Kubernetes documents for a pod's lifecycle,
// checked through `husklet pods` as a user sees it. Included by
// pod_lifecycle.rs (husklet's own CRI) and pod_lifecycle_containerd.rs
// (containerd): each defines `pod_node!()`, which starts the node.

use std::time::{Duration, Instant};

use husk_tests::pods::{condition, container};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

fn phase(p: &serde_json::Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn restarts(p: &serde_json::Value, c: &str) -> i64 {
    container(p, c)["restartCount"].as_i64().unwrap_or(-1)
}

#[test]
fn containers_of_a_pod_share_localhost_and_the_pod_becomes_ready() {
    require_root!();
    let node = pod_node!();
    node.add(
        "web.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
  - name: client
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "until wget -qO- http://127.0.0.1:8080/index.html; do sleep 0.2; done; exec sleep 3600"]
"#,
    );
    let p = node.wait_pod("web", T, "Ready", |p| condition(p, "Ready"));
    assert_eq!(phase(&p), "Running");
    assert!(container(&p, "httpd")["ready"].as_bool().unwrap_or(false));
    let id = container(&p, "httpd")["containerID"].as_str().unwrap_or("");
    assert!(
        id.starts_with(&format!("{}://", node.runtime_name())),
        "container ID {id:?} from the runtime under test"
    );
    let ip = p["status"]["podIP"].as_str().unwrap_or("");
    assert!(
        ip.starts_with("10.88.0."),
        "pod IP {ip:?} from the pod network"
    );
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    let t0 = Instant::now();
    loop {
        let out = node.husklet(&["logs", &node.full("web"), "-c", "client"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("hello-from-httpd") {
            break;
        }
        assert!(
            t0.elapsed() < T,
            "client never fetched the page over localhost: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = String::from_utf8_lossy(&node.husklet(&["pods"]).stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{} ", node.full("web"))))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("2/2") && row.contains("Running") && row.contains(ip),
        "{table}"
    );
}

#[test]
fn a_container_ignoring_sigterm_is_killed_when_the_grace_period_runs_out() {
    require_root!();
    let node = pod_node!();
    node.add(
        "stubborn.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap '' TERM; while true; do sleep 0.1; done"]
"#,
    );
    node.wait_pod("stubborn", T, "Running", |p| {
        phase(p) == "Running" && container(p, "c")["state"]["running"].is_object()
    });
    node.remove("stubborn.yaml");
    let p = node.wait_pod("stubborn", T, "terminating", |p| {
        p["stage"] == "Terminating"
    });
    let t0 = Instant::now();
    let _ = p;
    node.wait_gone("stubborn", T);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took <= Duration::from_millis(4500),
        "grace 3 s: the pod went after {took:?}\n{}",
        node.log()
    );
}

#[test]
fn post_start_finishes_before_the_container_is_running() {
    require_root!();
    let node = pod_node!();
    node.add(
        "hooked.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, "sleep 2; touch /tmp/post-start-done"]}
"#,
    );
    node.wait_pod("hooked", T, "Running", |p| {
        container(p, "c")["state"]["running"].is_object()
    });
    let endpoint = node.cri_endpoint();
    let full = node.full("hooked");
    let out = node.husklet(&[
        "exec",
        &full,
        "--endpoint",
        &endpoint,
        "--",
        "test",
        "-f",
        "/tmp/post-start-done",
    ]);
    assert!(
        out.status.success(),
        "the hook had not finished when the container showed Running: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn restart_policies_end_the_pod_as_kubernetes_does() {
    require_root!();
    let node = pod_node!();
    node.add(
        "job.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: c, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "echo done"]}
"#,
    );
    node.add(
        "init-fails.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: init-fails}
spec:
  restartPolicy: Never
  initContainers:
  - {name: setup, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "exit 3"]}
  containers:
  - {name: app, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "sleep 3600"]}
"#,
    );
    node.add(
        "crash.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: c, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "exit 1"]}
"#,
    );
    let p = node.wait_pod("job", T, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(restarts(&p, "c"), 0);
    assert_eq!(
        container(&p, "c")["state"]["terminated"]["reason"],
        "Completed"
    );
    let p = node.wait_pod("init-fails", T, "Failed", |p| phase(p) == "Failed");
    assert_eq!(container(&p, "setup")["state"]["terminated"]["exitCode"], 3);
    assert!(
        container(&p, "app")["state"]["waiting"].is_object(),
        "the app container never starts after a failed init container"
    );
    let p = node.wait_pod("crash", T, "restarted", |p| restarts(p, "c") >= 1);
    assert_ne!(
        phase(&p),
        "Failed",
        "OnFailure restarts a failing container"
    );
    assert_eq!(container(&p, "c")["lastState"]["terminated"]["exitCode"], 1);
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    require_root!();
    let node = pod_node!();
    node.add(
        "ordered.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: first, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "sleep 1"]}
  - {name: second, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "sleep 1"]}
  containers:
  - {name: app, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "exec sleep 3600"]}
"#,
    );
    let p = node.wait_pod("ordered", T, "Running", |p| condition(p, "Ready"));
    let t = |c: &str, k: &str| -> String {
        container(&p, c)["state"]["terminated"][k]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let app_started = container(&p, "app")["state"]["running"]["startedAt"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        t("first", "finishedAt") <= t("second", "startedAt"),
        "{p:#}"
    );
    assert!(t("second", "finishedAt") <= app_started, "{p:#}");
    assert!(condition(&p, "Initialized"));
}

#[test]
fn readiness_failure_clears_ready_without_a_restart() {
    require_root!();
    let node = pod_node!();
    node.add(
        "flappy.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: flappy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "touch /tmp/ready; sleep 4; rm /tmp/ready; exec sleep 3600"]
    readinessProbe:
      exec: {command: [test, -f, /tmp/ready]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    node.wait_pod("flappy", T, "Ready", |p| condition(p, "Ready"));
    let p = node.wait_pod("flappy", T, "not Ready", |p| !condition(p, "Ready"));
    assert_eq!(restarts(&p, "c"), 0, "readiness never restarts");
    assert!(container(&p, "c")["state"]["running"].is_object());
    assert_eq!(phase(&p), "Running");
}

#[test]
fn liveness_failure_restarts_with_growing_back_off() {
    require_root!();
    let node = pod_node!();
    node.add(
        "sick.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: sick}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    // Restart n happens when restartCount becomes n; the gaps between them
    // grow as kubelet's back-off: at once, then 10 s, then 20 s (plus the
    // probe period, the kill and the start).
    let mut seen = vec![];
    for n in 1..=3 {
        node.wait_pod("sick", Duration::from_secs(90), "restarted", |p| {
            restarts(p, "c") >= n
        });
        seen.push(Instant::now());
    }
    let gap1 = seen[1] - seen[0];
    let gap2 = seen[2] - seen[1];
    assert!(
        gap1 >= Duration::from_secs(9) && gap1 <= Duration::from_secs(15),
        "second restart after {gap1:?}, want 10 s back-off"
    );
    assert!(
        gap2 >= Duration::from_secs(19) && gap2 <= Duration::from_secs(25),
        "third restart after {gap2:?}, want 20 s back-off"
    );
    let p = node.pod("sick").expect("reported");
    assert!(
        p["events"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["reason"] == "Unhealthy"))
    );
}

#[test]
fn pods_outlive_a_killed_husklet_and_are_adopted_after_restart() {
    require_root!();
    let mut node = pod_node!();
    node.add(
        "durable.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: durable}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "exec sleep 3600"]}
"#,
    );
    let before = node.wait_pod("durable", T, "Ready", |p| condition(p, "Ready"));
    let id = container(&before, "c")["containerID"].clone();
    node.kill9();
    node.spawn();
    let after = node.wait_pod("durable", T, "Ready again", |p| {
        condition(p, "Ready") && container(p, "c")["containerID"] == id
    });
    assert_eq!(restarts(&after, "c"), 0, "adopted, not restarted");
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);
}
