// Containers of a pod end to end, as Kubernetes documents them: sidecars
// (init containers with restartPolicy Always), preStop and postStart hooks,
// the image's stop signal, CrashLoopBackOff as `husklet pods` shows it, and
// the start-up timeline of `husklet describe pod`. Included by
// pod_containers.rs (husklet's own CRI) and pod_containers_containerd.rs
// (containerd): each defines `pod_node!()`, which starts the node.

use std::time::{Duration, Instant, SystemTime};

use husk_tests::pods::{condition, container, has_event};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

fn restarts(p: &serde_json::Value, c: &str) -> i64 {
    container(p, c)["restartCount"].as_i64().unwrap_or(-1)
}

fn is_running(p: &serde_json::Value, c: &str) -> bool {
    container(p, c)["state"]["running"].is_object()
}

fn phase(p: &serde_json::Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

/// A timestamp of a container state (RFC 3339, second precision: compare
/// as strings).
fn at(p: &serde_json::Value, c: &str, state: &str, key: &str) -> String {
    container(p, c)["state"][state][key]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn sidecars_start_before_the_app_keep_running_restart_and_the_pod_still_completes() {
    require_root!();
    let node = pod_node!();
    // `proxy` is up (its startup probe passed) before `app` starts; `flaky`
    // exits every 2 s and is restarted (with back-off) while the app runs
    // undisturbed; when the app
    // exits 0 the pod (restartPolicy Never) Succeeds and the sidecars stop.
    node.add(
        "side.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: setup, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "sleep 1"]}
  - name: proxy
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: [sh, -c, "sleep 2; mkdir -p /www && echo via-sidecar > /www/index.html && exec httpd -f -p 8080 -h /www"]
    startupProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
      failureThreshold: 30
  - name: flaky
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: [sh, -c, "sleep 2; exit 1"]
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "wget -qO- http://127.0.0.1:8080/index.html || echo no-sidecar; sleep 12; exit 0"]
"#,
    );
    let p = node.wait_pod("side", T, "app running", |p| is_running(p, "app"));
    assert!(condition(&p, "Initialized"), "{p:#}");
    assert!(
        at(&p, "setup", "terminated", "finishedAt") <= at(&p, "proxy", "running", "startedAt"),
        "the sidecar starts after the init container before it: {p:#}"
    );
    // Its second exit puts `flaky` in CrashLoopBackOff (10 s) while the
    // app still runs.
    let p = node.wait_pod("side", T, "flaky backing off while the app runs", |p| {
        container(p, "flaky")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && is_running(p, "app")
    });
    assert!(restarts(&p, "flaky") >= 1, "{p:#}");
    assert_eq!(
        phase(&p),
        "Running",
        "a restarting sidecar keeps the pod Running"
    );
    assert!(condition(&p, "Initialized"), "and Initialized: {p:#}");
    assert_eq!(restarts(&p, "app"), 0);
    assert!(is_running(&p, "proxy"));
    let p = node.wait_pod("side", T, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(container(&p, "app")["state"]["terminated"]["exitCode"], 0);
    assert!(
        container(&p, "proxy")["state"]["terminated"].is_object(),
        "the sidecar is stopped once the app is done: {p:#}"
    );
    assert_eq!(restarts(&p, "app"), 0);
    let logs = node.container_logs("side", "app", &[]);
    assert!(
        logs.contains("via-sidecar"),
        "the app reached the sidecar at its start: {logs:?}"
    );
}

/// The container's stdout: pid 1's, where hooks write to be seen in the log.
const LOG: &str = "/proc/1/fd/1";

#[test]
fn pre_stop_hooks_exec_http_and_sleep_run_before_the_stop_signal() {
    require_root!();
    let node = pod_node!();
    // Each container is killed by its liveness probe once /tmp/kill exists;
    // its preStop runs first, then SIGTERM (trapped: "got-TERM <time>").
    let main =
        "trap 'echo got-TERM $(date +%s); exit 0' TERM; echo up; while true; do sleep 0.2; done";
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: by-exec
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "{main}"]
    livenessProbe: {{exec: {{command: [sh, -c, "test ! -f /tmp/kill"]}}, periodSeconds: 1, failureThreshold: 1}}
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo prestop-exec > {LOG}"]}}}}
  - name: by-http
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www/cgi-bin && printf "%s" "$CGI" > /www/cgi-bin/hook && chmod +x /www/cgi-bin/hook && httpd -p 8080 -h /www && eval "$MAIN"']
    env:
    - {{name: MAIN, value: "{main}"}}
    - name: CGI
      value: |
        #!/bin/sh
        echo prestop-http > {LOG}
        printf 'Content-Type: text/plain\r\n\r\nok\n'
    livenessProbe: {{exec: {{command: [sh, -c, "test ! -f /tmp/kill"]}}, periodSeconds: 1, failureThreshold: 1}}
    lifecycle:
      preStop: {{httpGet: {{path: /cgi-bin/hook, port: 8080}}}}
  - name: by-sleep
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "{main}"]
    livenessProbe: {{exec: {{command: [sh, -c, "test ! -f /tmp/kill"]}}, periodSeconds: 1, failureThreshold: 1}}
    lifecycle:
      preStop: {{sleep: {{seconds: 3}}}}
"#
    );
    node.add("hooks.yaml", &yaml);
    node.wait_pod("hooks", T, "Ready", |p| condition(p, "Ready"));
    let mut killed_at = 0;
    for c in ["by-exec", "by-http", "by-sleep"] {
        killed_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let (ok, out) = node.exec("hooks", c, &["touch", "/tmp/kill"]);
        assert!(ok, "{c}: {out}");
    }
    let p = node.wait_pod("hooks", T, "all restarted", |p| {
        ["by-exec", "by-http", "by-sleep"]
            .iter()
            .all(|c| restarts(p, c) >= 1)
    });
    for (c, line) in [("by-exec", "prestop-exec"), ("by-http", "prestop-http")] {
        let prev = node.container_logs("hooks", c, &["--previous"]);
        let hook = prev.find(line);
        let term = prev.find("got-TERM");
        assert!(
            hook.is_some() && term.is_some() && hook < term,
            "{c}: preStop before SIGTERM: {prev:?}"
        );
        assert_eq!(
            container(&p, c)["lastState"]["terminated"]["exitCode"],
            0,
            "{c}: stopped by SIGTERM, not killed"
        );
    }
    let prev = node.container_logs("hooks", "by-sleep", &["--previous"]);
    let term: u64 = prev
        .lines()
        .find_map(|l| l.trim().strip_prefix("got-TERM "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("by-sleep got no SIGTERM: {prev:?}"));
    assert!(
        term >= killed_at + 3,
        "SIGTERM at {term}, kill asked at {killed_at}: the 3 s preStop sleep runs first"
    );
    assert!(has_event(&p, "Killing", "liveness"), "{:#}", p["events"]);
}

/// Remove manifest `file` of pod `name` and time until the pod is gone.
fn time_removal(node: &PodNode, file: &str, name: &str) -> Duration {
    node.remove(file);
    node.wait_pod(name, T, "terminating", |p| p["stage"] == "Terminating");
    let t0 = Instant::now();
    node.wait_gone(name, T);
    t0.elapsed()
}

#[test]
fn pre_stop_counts_against_the_grace_period() {
    require_root!();
    let node = pod_node!();
    // Both ignore SIGTERM. `short`: a 2 s preStop leaves 3 s of the 5 s
    // grace for the stop signal. `long`: the preStop outlives the 2 s grace;
    // kubelet then gives the stop signal its 2 s minimum (the documented
    // one-off extension), so the pod goes after 4 s, not 30.
    let pod = |name: &str, grace: u32, sleep: u32| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap '' TERM; while true; do sleep 0.1; done"]
    lifecycle:
      preStop: {{sleep: {{seconds: {sleep}}}}}
"#
        )
    };
    node.add("short.yaml", &pod("short", 5, 2));
    node.add("long.yaml", &pod("long", 2, 30));
    for n in ["short", "long"] {
        node.wait_pod(n, T, "Ready", |p| condition(p, "Ready"));
    }
    let short = time_removal(&node, "short.yaml", "short");
    assert!(
        short >= Duration::from_millis(4500) && short <= Duration::from_millis(6500),
        "grace 5 s with a 2 s preStop: gone after {short:?}\n{}",
        node.log()
    );
    let long = time_removal(&node, "long.yaml", "long");
    assert!(
        long >= Duration::from_millis(3500) && long <= Duration::from_millis(5500),
        "grace 2 s, preStop 30 s: gone after {long:?}\n{}",
        node.log()
    );
}

#[test]
fn a_failing_post_start_hook_kills_the_container() {
    require_root!();
    let node = pod_node!();
    node.add(
        "badhook.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: badhook}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "echo hook-broke; exit 7"]}}
"#,
    );
    let p = node.wait_pod("badhook", T, "restarted", |p| restarts(p, "c") >= 1);
    assert!(
        has_event(&p, "FailedPostStartHook", "hook-broke"),
        "{:#}",
        p["events"]
    );
    assert!(
        container(&p, "c")["lastState"]["terminated"].is_object(),
        "the container was killed: {p:#}"
    );
    assert!(!condition(&p, "Ready"));
}

#[test]
fn the_stop_signal_comes_from_the_image() {
    require_root!();
    let node = pod_node!();
    node.import_image("busybox-stopsignal");
    // The image says STOPSIGNAL SIGUSR1; the container exits 0 on USR1 and
    // 3 on TERM.
    node.add(
        "sig.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: sig}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: busybox-stopsignal:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap 'echo got-USR1; exit 0' USR1; trap 'echo got-TERM; exit 3' TERM; while true; do sleep 0.2; done"]
    livenessProbe: {exec: {command: [sh, -c, "test ! -f /tmp/kill"]}, periodSeconds: 1, failureThreshold: 1}
"#,
    );
    node.wait_pod("sig", T, "Ready", |p| condition(p, "Ready"));
    let (ok, out) = node.exec("sig", "c", &["touch", "/tmp/kill"]);
    assert!(ok, "{out}");
    let p = node.wait_pod("sig", T, "restarted", |p| restarts(p, "c") >= 1);
    let prev = node.container_logs("sig", "c", &["--previous"]);
    assert!(prev.contains("got-USR1"), "{prev:?}");
    assert_eq!(container(&p, "c")["lastState"]["terminated"]["exitCode"], 0);
}

#[test]
fn a_crashing_container_shows_crash_loop_back_off() {
    require_root!();
    let node = pod_node!();
    node.add(
        "crashy.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "exit 2"]}
"#,
    );
    let p = node.wait_pod("crashy", T, "CrashLoopBackOff", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let msg = container(&p, "c")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(msg.contains("back-off 10s"), "{msg}");
    assert_eq!(container(&p, "c")["lastState"]["terminated"]["exitCode"], 2);
    assert!(has_event(
        &p,
        "BackOff",
        "Back-off restarting failed container"
    ));
    let row = node.table_row("crashy");
    assert!(
        row.contains("CrashLoopBackOff") && row.contains("0/1"),
        "husklet pods: {row:?}"
    );
}

#[test]
fn describe_shows_the_start_up_timeline_in_order() {
    require_root!();
    let node = pod_node!();
    node.add(
        "timed.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: timed}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "sleep 1"]}}
    readinessProbe:
      exec: {command: ["true"]}
      initialDelaySeconds: 1
      periodSeconds: 1
"#,
    );
    node.wait_pod("timed", T, "Ready", |p| condition(p, "Ready"));
    let text = node.describe("timed");
    let steps: Vec<(String, f64)> = text
        .lines()
        .skip_while(|l| !l.starts_with("Start-up timeline"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (step, secs) = l.trim().rsplit_once(' ').unwrap_or_default();
            let secs = secs.trim_end_matches('s').parse().unwrap_or(f64::NAN);
            (step.trim().to_string(), secs)
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "volumes",
            "sandbox+network",
            "images",
            "create",
            "start",
            "postStart",
            "first ready"
        ],
        "{text}"
    );
    for w in steps.windows(2) {
        assert!(
            w[0].1 <= w[1].1,
            "{} ({}) after {} ({}):\n{text}",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }
    let get = |n: &str| steps.iter().find(|(s, _)| s == n).map_or(f64::NAN, |s| s.1);
    assert!(
        get("postStart") - get("start") >= 0.9,
        "the 1 s postStart hook: {text}"
    );
    assert!(
        get("first ready") - get("postStart") >= 0.9,
        "readiness after its 1 s initial delay: {text}"
    );
    assert!(get("first ready") < 30.0, "{text}");
}
