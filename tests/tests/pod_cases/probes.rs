// Probes end to end, as Kubernetes documents them: a startup probe holds
// back liveness and readiness until it passes and restarts the container
// when it gives up; httpGet resolves named ports, sends its headers and
// takes 200–399 as success; tcpSocket passes when the port accepts; an exec
// probe that outlives timeoutSeconds fails. Included by pod_probes.rs
// (husklet's own CRI) and pod_probes_containerd.rs (containerd): each
// defines `pod_node!()`, which starts the node.

use std::time::{Duration, Instant};

use husk_tests::pods::{condition, container, has_event};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

fn restarts(p: &serde_json::Value, c: &str) -> i64 {
    container(p, c)["restartCount"].as_i64().unwrap_or(-1)
}

fn is_running(p: &serde_json::Value, c: &str) -> bool {
    container(p, c)["state"]["running"].is_object()
}

#[test]
fn a_startup_probe_holds_back_liveness_and_readiness_until_it_passes() {
    require_root!();
    let node = pod_node!();
    // Liveness and readiness check the file the startup probe waits for:
    // run before the startup probe passed, liveness would restart `slow`.
    // `never` gives up after two failures and is restarted.
    node.add(
        "slow.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: slow
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 5; touch /tmp/started; exec sleep 3600"]
    startupProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
  - name: never
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    startupProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    let p = node.wait_pod("slow", T, "slow running", |p| is_running(p, "slow"));
    let t0 = Instant::now();
    assert_eq!(
        container(&p, "slow")["started"],
        false,
        "not started before the startup probe passed"
    );
    assert_eq!(container(&p, "slow")["ready"], false);
    let p = node.wait_pod("slow", T, "slow started", |p| {
        container(p, "slow")["started"] == true
    });
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "started after {:?}, before the file existed",
        t0.elapsed()
    );
    let p = if container(&p, "slow")["ready"] == true {
        p
    } else {
        node.wait_pod("slow", T, "slow ready", |p| {
            container(p, "slow")["ready"] == true
        })
    };
    assert_eq!(
        restarts(&p, "slow"),
        0,
        "liveness never ran before startup passed"
    );
    assert!(!has_event(&p, "Unhealthy", "Liveness"), "{p:#}");
    let p = node.wait_pod("slow", T, "never restarted", |p| restarts(p, "never") >= 1);
    assert!(
        has_event(&p, "Unhealthy", "Startup probe failed"),
        "{:#}",
        p["events"]
    );
    assert_eq!(container(&p, "never")["ready"], false);
    assert!(
        !condition(&p, "Ready"),
        "a container never started is never ready"
    );
}

/// A CGI script for busybox httpd: 200 with the `X-Probe: yes` header
/// (httpd passes request headers to CGI as HTTP_* variables), 500 without.
const CGI_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: with-header
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www/cgi-bin && printf "%s" "$CGI" > /www/cgi-bin/probe && chmod +x /www/cgi-bin/probe && exec httpd -f -p 8080 -h /www']
    env:
    - name: CGI
      value: |
        #!/bin/sh
        if [ "$HTTP_X_PROBE" = yes ]; then printf 'Content-Type: text/plain\r\n\r\nok\n'
        else printf 'HTTP/1.1 500 No Header\r\nContent-Type: text/plain\r\n\r\nno header\n'; fi
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet:
        path: /cgi-bin/probe
        port: http
        httpHeaders: [{name: X-Probe, value: "yes"}]
      periodSeconds: 1
  - name: without-header
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www/cgi-bin && printf "%s" "$CGI" > /www/cgi-bin/probe && chmod +x /www/cgi-bin/probe && exec httpd -f -p 8081 -h /www']
    env:
    - name: CGI
      value: |
        #!/bin/sh
        if [ "$HTTP_X_PROBE" = yes ]; then printf 'Content-Type: text/plain\r\n\r\nok\n'
        else printf 'HTTP/1.1 500 No Header\r\nContent-Type: text/plain\r\n\r\nno header\n'; fi
    ports: [{name: alt, containerPort: 8081}]
    readinessProbe:
      httpGet: {path: /cgi-bin/probe, port: alt}
      periodSeconds: 1
    livenessProbe:
      httpGet: {path: /missing, port: alt}
      periodSeconds: 1
      failureThreshold: 2
"#;

#[test]
fn http_probes_resolve_named_ports_send_headers_and_fail_outside_200_to_399() {
    require_root!();
    let node = pod_node!();
    node.add("web.yaml", CGI_POD);
    let p = node.wait_pod("web", T, "with-header ready", |p| {
        container(p, "with-header")["ready"] == true
    });
    assert_eq!(restarts(&p, "with-header"), 0);
    // Without the header the CGI answers 500: never ready. /missing is a
    // 404: liveness restarts the container.
    let p = node.wait_pod("web", T, "without-header restarted", |p| {
        restarts(p, "without-header") >= 1
    });
    assert!(
        has_event(&p, "Unhealthy", "404"),
        "liveness failure names the status: {:#}",
        p["events"]
    );
    assert_eq!(
        container(&p, "without-header")["ready"],
        false,
        "500 is not ready"
    );
    assert!(!condition(&p, "Ready"));
    assert_eq!(
        container(&p, "with-header")["ready"],
        true,
        "one container's failures leave the other alone"
    );
}

#[test]
fn tcp_probes_pass_once_the_port_accepts_and_fail_on_a_closed_one() {
    require_root!();
    let node = pod_node!();
    node.add(
        "tcp.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: tcp}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: late
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 3; exec httpd -f -p 9000"]
    ports: [{name: svc, containerPort: 9000}]
    readinessProbe:
      tcpSocket: {port: svc}
      periodSeconds: 1
  - name: closed
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    livenessProbe:
      tcpSocket: {port: 9001}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    let p = node.wait_pod("tcp", T, "late running", |p| is_running(p, "late"));
    let t0 = Instant::now();
    assert_eq!(container(&p, "late")["ready"], false, "nothing listens yet");
    node.wait_pod("tcp", T, "late ready", |p| {
        container(p, "late")["ready"] == true
    });
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "ready after {:?}, before httpd listened",
        t0.elapsed()
    );
    let p = node.wait_pod("tcp", T, "closed restarted", |p| restarts(p, "closed") >= 1);
    assert!(
        has_event(&p, "Unhealthy", "9001"),
        "the failure names the port: {:#}",
        p["events"]
    );
    assert_eq!(restarts(&p, "late"), 0);
}

#[test]
fn an_exec_probe_that_outlives_its_timeout_fails() {
    require_root!();
    let node = pod_node!();
    // `sleep 5` exits 0: only the 1 s timeout can make this probe fail.
    node.add(
        "slowprobe.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slowprobe}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    livenessProbe:
      exec: {command: [sleep, "5"]}
      timeoutSeconds: 1
      periodSeconds: 2
      failureThreshold: 1
"#,
    );
    let p = node.wait_pod("slowprobe", T, "running", |p| is_running(p, "c"));
    let started = Instant::now();
    let _ = p;
    let p = node.wait_pod("slowprobe", T, "restarted", |p| restarts(p, "c") >= 1);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "restarted after {:?}",
        started.elapsed()
    );
    assert!(has_event(&p, "Unhealthy", "timed out"), "{:#}", p["events"]);
}
