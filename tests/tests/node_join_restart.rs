//! husklet joined to a real kube-apiserver, across its own restarts and at
//! admission: API pods are re-adopted after a `kill -9` (the same
//! containers keep running, nothing is created twice, the status stays
//! Running/Ready), started again after a SIGTERM stop (node shutdown: the
//! pods were terminated); an untolerated NoExecute taint rejects a pod as
//! kubelet does; static pods' events are found for their mirror pods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use husk_tests::control_plane::ControlPlane;
use husk_tests::pods::{NODE, PodNode};
use husk_tests::pods::{api_pod_ready, wait_get};
use husk_tests::require_control_plane;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

/// A pod bound to the test node running `sleep 3600`.
fn pod(name: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {NODE}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
{extra_spec}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "3600"]
"#
    )
}

/// What must not change while a pod is adopted: its object, its sandbox's
/// address, its container and when that started, its restarts.
fn identity(p: &Value) -> (String, String, String, String, String) {
    let cs = &p["status"]["containerStatuses"][0];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&p["metadata"]["uid"]),
        s(&p["status"]["podIP"]),
        s(&cs["containerID"]),
        s(&cs["state"]["running"]["startedAt"]),
        cs["restartCount"].to_string(),
    )
}

/// The pods `names` as kubectl shows them, by name.
fn pods(cp: &ControlPlane, names: &[&str]) -> BTreeMap<String, Value> {
    let mut args = vec!["pods"];
    args.extend_from_slice(names);
    let v = cp.get_json(&args);
    let items = match v["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![v],
    };
    items
        .into_iter()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p,
            )
        })
        .collect()
}

/// `crictl pods -q` / `crictl ps -a -q` against the node's CRI socket.
fn crictl_ids(node: &PodNode, what: &[&str]) -> Vec<String> {
    let crictl = husk_tests::cri::crictl_path().expect("crictl (build/k8s)");
    let endpoint = node.cri_endpoint();
    let out = std::process::Command::new(crictl)
        .args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
        ])
        .args(what)
        .output()
        .expect("run crictl");
    assert!(
        out.status.success(),
        "crictl {what:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
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
    out.sort();
    out
}

/// `reason` events of pod `name` (involvedObject.name), by count.
fn event_counts(cp: &ControlPlane, name: &str, reason: &str) -> Vec<i64> {
    let v = cp.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={name},reason={reason}"),
    ]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["count"].as_i64().unwrap_or(0))
        .collect()
}

#[test]
fn api_pods_are_adopted_after_husklet_is_killed() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let mut node = PodNode::join(&cp, &[]);
    let names = ["one", "two", "three"];
    for n in names {
        cp.apply(&pod(n, ""));
    }
    for n in names {
        wait_get(&cp, &node, &["pod", n], "Running and Ready", api_pod_ready);
    }
    let before: BTreeMap<String, _> = pods(&cp, &names)
        .into_iter()
        .map(|(n, p)| (n, identity(&p)))
        .collect();
    let procs = sleepers(&node);
    assert_eq!(procs.len(), 3, "the pods' processes run");
    let sandboxes = crictl_ids(&node, &["pods", "-q"]);
    let containers = crictl_ids(&node, &["ps", "-a", "-q"]);
    assert_eq!((sandboxes.len(), containers.len()), (3, 3));
    for n in names {
        wait_get(
            &cp,
            &node,
            &[
                "events",
                "--field-selector",
                &format!("involvedObject.name={n},reason=Started"),
            ],
            "Started posted",
            |l| l["items"].as_array().is_some_and(|i| !i.is_empty()),
        );
    }

    // kill -9: the pods live on without husklet.
    node.kill9();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sleepers(&node), procs, "the containers outlive husklet");

    node.spawn();
    // husklet is back once it reports the pods again; then it has a while
    // to do anything twice.
    let t0 = Instant::now();
    while node.pods().len() < 3 {
        assert!(t0.elapsed() < T, "pods not re-adopted\n{}", node.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        for (n, p) in pods(&cp, &names) {
            assert!(
                api_pod_ready(&p),
                "{n} after the restart: {}\n{}",
                p["status"],
                node.log()
            );
            assert_eq!(
                identity(&p),
                before[&n],
                "{n} after the restart\n{}",
                node.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sleepers(&node), procs, "the same processes run");
    assert_eq!(
        crictl_ids(&node, &["pods", "-q"]),
        sandboxes,
        "no sandbox made twice"
    );
    assert_eq!(
        crictl_ids(&node, &["ps", "-a", "-q"]),
        containers,
        "no container made twice"
    );
    for n in names {
        assert_eq!(
            event_counts(&cp, n, "Started"),
            vec![1],
            "{n}: one Started event, once"
        );
    }
    // Still managed: a deletion goes through as before.
    cp.kubectl_ok(&["delete", "pod", "one", "--wait=false"]);
    wait_get(&cp, &node, &["pods"], "without one", |l| {
        l["items"]
            .as_array()
            .is_some_and(|i| i.len() == 2 && i.iter().all(|p| p["metadata"]["name"] != "one"))
    });

    // SIGTERM is node shutdown: the pods are terminated (see node_join's
    // sigterm test); started again, husklet runs them anew, still bound.
    node.stop();
    assert_eq!(sleepers(&node), Vec::<i32>::new(), "terminated on SIGTERM");
    node.spawn();
    for n in ["two", "three"] {
        let p = wait_get(&cp, &node, &["pod", n], "Running and Ready again", |p| {
            api_pod_ready(p) && identity(p).2 != before[n].2
        });
        assert_eq!(identity(&p).0, before[n].0, "{n}: the same pod object");
    }
    assert_eq!(sleepers(&node).len(), 2);
    cp.kubectl_ok(&["delete", "pod", "two", "three", "--wait=false"]);
    wait_get(&cp, &node, &["pods"], "all deleted", |l| {
        l["items"].as_array().is_some_and(Vec::is_empty)
    });
}

#[test]
fn an_untolerated_no_execute_taint_rejects_the_pod() {
    require_control_plane!();
    let cp = ControlPlane::start();
    let node = PodNode::join(
        &cp,
        &["--register-with-taints=husk.test/drain=yes:NoExecute"],
    );
    wait_get(
        &cp,
        &node,
        &["node", NODE],
        "registered with its taint",
        |n| {
            n["spec"]["taints"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["key"] == "husk.test/drain"))
        },
    );
    cp.apply(&pod("intolerant", ""));
    let p = wait_get(&cp, &node, &["pod", "intolerant"], "Failed", |p| {
        p["status"]["phase"] == "Failed"
    });
    // kubelet's predicate admission: reason and message of its
    // PredicateFailureError.
    assert_eq!(p["status"]["reason"], "TaintToleration");
    assert_eq!(
        p["status"]["message"],
        "Pod was rejected: Predicate TaintToleration failed"
    );
    // Tolerated, the same pod runs.
    cp.apply(&pod(
        "tolerant",
        "  tolerations:\n  - {key: husk.test/drain, operator: Equal, value: \"yes\", effect: NoExecute}",
    ));
    wait_get(
        &cp,
        &node,
        &["pod", "tolerant"],
        "Running and Ready",
        api_pod_ready,
    );
    assert_eq!(node.pods().len(), 1, "only the tolerant pod runs");
    cp.kubectl_ok(&["delete", "pod", "intolerant", "tolerant", "--wait=false"]);
    wait_get(&cp, &node, &["pods"], "all deleted", |l| {
        l["items"].as_array().is_some_and(Vec::is_empty)
    });
}

#[test]
fn static_pod_events_are_shown_with_the_mirror_pod() {
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
    let m = wait_get(
        &cp,
        &node,
        &["pod", &name],
        "mirrored, Running",
        api_pod_ready,
    );
    let hash = m["metadata"]["annotations"]["kubernetes.io/config.mirror"]
        .as_str()
        .expect("mirror annotation")
        .to_string();
    // kubelet records a static pod's events against the static pod: its
    // name and namespace (the mirror's), its UID the config hash, which
    // kubectl describe looks them up by for a mirror pod.
    let events = wait_get(
        &cp,
        &node,
        &[
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ],
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
    for e in events["items"].as_array().into_iter().flatten() {
        assert_eq!(e["involvedObject"]["uid"], hash.as_str(), "{e}");
        assert_eq!(e["involvedObject"]["kind"], "Pod");
        assert_eq!(e["involvedObject"]["namespace"], "default");
        assert_eq!(e["source"]["component"], "kubelet");
        assert_eq!(e["source"]["host"], NODE);
    }
    let described = cp.kubectl_ok(&["describe", "pod", &name]);
    let events_part = described
        .split("Events:")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        events_part.contains("Started") && events_part.contains("kubelet"),
        "kubectl describe shows the static pod's events:\n{described}"
    );
    node.remove("static.yaml");
    wait_get(&cp, &node, &["pods"], "mirror deleted", |l| {
        l["items"].as_array().is_some_and(Vec::is_empty)
    });
}
