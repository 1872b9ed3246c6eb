//! husklet joined to a real kube-apiserver (v1.26, with etcd, the Node
//! authorizer and NodeRestriction): registration, the Lease, pods bound to
//! the node as `kubectl` shows them, graceful deletion, ConfigMap updates,
//! admission, and a dropped watch.

use std::time::{Duration, Instant};

use husk_tests::control_plane::{ControlPlane, NODE_IP};
use husk_tests::pods::wait_get;
use husk_tests::pods::{NODE, PodNode};
use husk_tests::require_control_plane;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

fn condition(obj: &Value, type_: &str) -> Option<String> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str().map(str::to_string))
}

/// A pod bound to the test node running busybox `script`.
fn pod(name: &str, grace: u32, script: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: {grace}
{extra_spec}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "{script}"]
"#
    )
}

fn wait_running(cp: &ControlPlane, node: &PodNode, name: &str) -> Value {
    wait_get(cp, node, &["pod", name], "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready").as_deref() == Some("True")
    })
}

fn wait_deleted(cp: &ControlPlane, node: &PodNode, name: &str) {
    let t0 = Instant::now();
    loop {
        let out = cp.kubectl(&["get", "pod", name, "--ignore-not-found", "-o", "name"]);
        if out.status.success() && out.stdout.is_empty() {
            return;
        }
        assert!(t0.elapsed() < T, "pod {name} still there\n{}", node.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn registers_the_node_and_renews_its_lease() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(
        &cp,
        &[
            "--node-labels=husk.test/role=worker,husk.test/zone=a",
            "--register-with-taints=husk.test/dedicated=yes:NoSchedule",
            "--max-pods=42",
            // No pressure whatever this host's free space.
            "--eviction-hard=memory.available<1Ki,nodefs.available<1Ki,pid.available<1",
        ],
    );
    let n = wait_get(&cp, &node, &["node", NODE], "Ready", |n| {
        condition(n, "Ready").as_deref() == Some("True")
    });
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["husk.test/role"], "worker");
    assert_eq!(labels["husk.test/zone"], "a");
    // The apiserver's TaintNodesByCondition admission adds
    // node.kubernetes.io/not-ready (the controller-manager lifts it).
    let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
    assert!(
        taints.contains(&serde_json::json!({"key": "husk.test/dedicated", "value": "yes", "effect": "NoSchedule"})),
        "{taints:?}"
    );
    let status = &n["status"];
    for (c, want) in [
        ("Ready", "True"),
        ("MemoryPressure", "False"),
        ("DiskPressure", "False"),
        ("PIDPressure", "False"),
    ] {
        assert_eq!(condition(&n, c).as_deref(), Some(want), "{c}");
    }
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .expect("Ready condition");
    assert_eq!(ready["reason"], "KubeletReady");
    assert!(ready["lastHeartbeatTime"].is_string());
    assert_eq!(
        status["addresses"],
        serde_json::json!([{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}])
    );
    assert_eq!(status["capacity"]["pods"], "42");
    assert_eq!(status["allocatable"]["pods"], "42");
    for r in ["cpu", "memory", "ephemeral-storage"] {
        assert!(status["capacity"][r].is_string(), "capacity {r}: {status}");
        assert!(status["allocatable"][r].is_string(), "allocatable {r}");
    }
    let info = &status["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("husk://")),
        "{info}"
    );
    assert!(
        info["kubeletVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("v1."))
    );
    assert!(
        info["kernelVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(info["osImage"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(info["operatingSystem"], "linux");
    assert_eq!(info["architecture"], "amd64");
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    // kubectl's view.
    let table = cp.kubectl_ok(&["get", "node", NODE, "--no-headers"]);
    let cols: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(cols[0], NODE, "{table}");
    assert_eq!(cols[1], "Ready", "{table}");

    // The Lease: held by the node, owned by the Node, renewed every 10 s.
    let lease = wait_get(
        &cp,
        &node,
        &["lease", NODE, "-n", "kube-node-lease"],
        "created",
        |_| true,
    );
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let owner = &lease["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["name"], NODE);
    assert_eq!(owner["uid"], n["metadata"]["uid"]);
    let first = lease["spec"]["renewTime"].clone();
    assert!(first.is_string());
    let t0 = Instant::now();
    wait_get(
        &cp,
        &node,
        &["lease", NODE, "-n", "kube-node-lease"],
        "renewed",
        |l| l["spec"]["renewTime"] != first,
    );
    assert!(
        t0.elapsed() < Duration::from_secs(25),
        "renewed within two periods"
    );
}

#[test]
fn a_bound_pod_runs_and_is_deleted_with_its_grace_period() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(&cp, &[]);
    cp.apply(&pod(
        "web",
        3,
        "trap '' TERM; while true; do sleep 1; done",
        "",
    ));
    let p = wait_running(&cp, &node, "web");
    let ip = p["status"]["podIP"].as_str().expect("podIP").to_string();
    assert!(ip.starts_with("10.88.0."), "{ip}");
    assert_eq!(p["status"]["hostIP"], NODE_IP);
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|c| c.starts_with("husk://"))
    );
    // What `kubectl get pods -o wide` shows for a kubelet's pod.
    let wide = cp.kubectl_ok(&["get", "pods", "-o", "wide"]);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &header[..7],
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        "{wide}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[0], "web", "{wide}");
    assert_eq!(row[1], "1/1", "{wide}");
    assert_eq!(row[2], "Running", "{wide}");
    assert_eq!(row[3], "0", "{wide}");
    assert_eq!(row[5], ip, "{wide}");
    assert_eq!(row[6], NODE, "{wide}");

    // Its lifecycle events, from the kubelet on this host.
    let events = wait_get(
        &cp,
        &node,
        &["events", "--field-selector", "involvedObject.name=web"],
        "Created and Started",
        |l| {
            let reasons: Vec<&str> = l["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["reason"].as_str())
                .collect();
            reasons.contains(&"Created") && reasons.contains(&"Started")
        },
    );
    let started = events["items"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["reason"] == "Started"))
        .expect("Started event");
    assert_eq!(started["source"]["component"], "kubelet");
    assert_eq!(started["source"]["host"], NODE);
    assert_eq!(started["involvedObject"]["fieldPath"], "spec.containers{c}");
    assert_eq!(started["involvedObject"]["uid"], p["metadata"]["uid"]);
    assert_eq!(started["type"], "Normal");

    // The container ignores SIGTERM: it goes when the 3 s grace ends, and
    // only then does the object go.
    let t0 = Instant::now();
    cp.kubectl_ok(&["delete", "pod", "web", "--wait=false"]);
    std::thread::sleep(Duration::from_millis(1500));
    let during = cp.kubectl_ok(&["get", "pod", "web", "--no-headers"]);
    assert!(during.contains("Terminating"), "{during}");
    wait_deleted(&cp, &node, "web");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the pod went after {took:?}, before its grace period"
    );
    assert!(
        took < Duration::from_secs(30),
        "the pod took {took:?} to go"
    );
    // Nothing of it is left on the node.
    let t1 = Instant::now();
    while !node.pods().is_empty() {
        assert!(t1.elapsed() < T, "pod still on the node: {:?}", node.pods());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `husklet exec` in pod `name`'s container `c`.
fn exec(node: &PodNode, name: &str, cmd: &[&str]) -> String {
    let endpoint = format!("unix://{}", node.socket().display());
    let mut args = vec!["exec", name, "-c", "c", "--endpoint", &endpoint, "--"];
    args.extend_from_slice(cmd);
    let out = node.husklet(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn config_map_and_secret_updates_reach_the_volume() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(&cp, &[]);
    cp.kubectl_ok(&[
        "create",
        "configmap",
        "app",
        "--from-literal=greeting=hello",
    ]);
    cp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    let spec = r#"  volumes:
  - {name: cfg, configMap: {name: app}}
  - {name: sec, secret: {secretName: creds}}"#;
    let manifest = pod("app", 1, "exec sleep 3600", spec).replace(
        "    command:",
        "    volumeMounts:\n    - {name: cfg, mountPath: /etc/app}\n    - {name: sec, mountPath: /etc/creds}\n    env:\n    - name: PASS\n      valueFrom: {secretKeyRef: {name: creds, key: password}}\n    command:",
    );
    cp.apply(&manifest);
    wait_running(&cp, &node, "app");
    assert_eq!(exec(&node, "app", &["cat", "/etc/app/greeting"]), "hello");
    assert_eq!(
        exec(&node, "app", &["cat", "/etc/creds/password"]),
        "s3cret"
    );
    assert_eq!(
        exec(&node, "app", &["sh", "-c", "echo $PASS"]).trim(),
        "s3cret"
    );
    cp.kubectl_ok(&[
        "patch",
        "configmap",
        "app",
        "-p",
        r#"{"data":{"greeting":"bye"}}"#,
    ]);
    cp.kubectl_ok(&[
        "patch",
        "secret",
        "creds",
        "-p",
        r#"{"stringData":{"password":"n3w"}}"#,
    ]);
    let t0 = Instant::now();
    while exec(&node, "app", &["cat", "/etc/app/greeting"]) != "bye"
        || exec(&node, "app", &["cat", "/etc/creds/password"]) != "n3w"
    {
        assert!(
            t0.elapsed() < T,
            "the updates never reached the volumes\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    cp.kubectl_ok(&["delete", "pod", "app"]);
}

#[test]
fn a_pod_that_does_not_fit_is_rejected() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(&cp, &[]);
    let manifest = pod("huge", 1, "exec sleep 3600", "").replace(
        "    command:",
        "    resources: {requests: {cpu: \"1000\"}}\n    command:",
    );
    cp.apply(&manifest);
    let p = wait_get(&cp, &node, &["pod", "huge"], "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(p["status"]["reason"], "OutOfcpu");
    let msg = p["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000"
        ),
        "{msg}"
    );
    let row = cp.kubectl_ok(&["get", "pod", "huge", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(2), Some("OutOfcpu"), "{row}");
    assert!(node.pods().is_empty(), "nothing of it runs");
    // A rejected pod is deleted at once: nothing of it runs.
    cp.kubectl_ok(&["delete", "pod", "huge", "--wait=false"]);
    wait_deleted(&cp, &node, "huge");
}

#[test]
fn pods_survive_an_apiserver_restart() {
    require_control_plane!();
    let mut cp = ControlPlane::start();
    let node = PodNode::join(&cp, &[]);
    cp.apply(&pod("before", 1, "exec sleep 3600", ""));
    wait_running(&cp, &node, "before");
    // Every open watch breaks; husklet resumes from the last version it saw.
    cp.restart_apiserver();
    cp.apply(&pod("after", 1, "exec sleep 3600", ""));
    wait_running(&cp, &node, "after");
    let before = cp.get_json(&["pod", "before"]);
    assert_eq!(before["status"]["phase"], "Running");
    cp.kubectl_ok(&["delete", "pod", "before", "after", "--wait=false"]);
    wait_deleted(&cp, &node, "before");
    wait_deleted(&cp, &node, "after");
}

#[test]
fn a_watch_whose_version_is_gone_relists_and_loses_no_pod() {
    require_control_plane!();
    let mut cp = ControlPlane::start();
    let node = PodNode::join(&cp, &[]);
    cp.apply(&pod("first", 1, "exec sleep 3600", ""));
    wait_running(&cp, &node, "first");
    cp.stop_apiserver();
    for i in 0..3 {
        cp.etcd_put(&format!("/husk-test/bump-{i}"), "x");
    }
    cp.start_apiserver();
    cp.apply(&pod("second", 1, "exec sleep 3600", ""));
    wait_running(&cp, &node, "second");
    assert!(
        node.log().contains("relisting"),
        "the resumed watch got 410 Gone and relisted:\n{}",
        node.log()
    );
    assert_eq!(cp.get_json(&["pod", "first"])["status"]["phase"], "Running");
    cp.kubectl_ok(&["delete", "pod", "first", "second", "--wait=false"]);
    wait_deleted(&cp, &node, "first");
    wait_deleted(&cp, &node, "second");
}

#[test]
fn static_pods_have_mirror_pods() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(&cp, &[]);
    node.add(
        "static.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static, namespace: default}\n\
         spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    \
         image: busybox:latest\n    imagePullPolicy: Never\n    command: [sleep, '3600']\n",
    );
    let name = node.full("static");
    let m = wait_running(&cp, &node, &name);
    let ann = &m["metadata"]["annotations"];
    assert!(ann["kubernetes.io/config.mirror"].is_string(), "{ann}");
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    let owner = &m["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["name"], NODE);
    assert_eq!(m["spec"]["nodeName"], NODE);
    // The static pod goes: so does its mirror.
    node.remove("static.yaml");
    wait_deleted(&cp, &node, &name);
}

/// Live (not zombie) `sleep 3600` processes in the node's cgroup subtree.
fn sleepers(node: &PodNode) -> Vec<i32> {
    let cg = node.cgroup.name().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let read =
            |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let stat = read("stat");
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if read("cmdline") == "sleep\x003600\x00"
            && read("cgroup").contains(&cg)
            && state != Some("Z")
        {
            out.push(pid);
        }
    }
    out
}

#[test]
fn sigterm_terminates_the_api_pods_before_husklet_exits() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let mut node = PodNode::join(&cp, &[]);
    cp.apply(&pod("svc", 1, "exec sleep 3600", ""));
    wait_running(&cp, &node, "svc");
    assert_eq!(sleepers(&node).len(), 1, "the pod's process runs");
    node.stop();
    // husklet is gone, and its pod's process went before it.
    assert_eq!(sleepers(&node), Vec::<i32>::new(), "left running");
}
