//! Static pods' volumes, env, termination messages and bad manifests, end
//! to end through `husklet serve` and its CLI.

use std::time::{Duration, Instant};

use husk_tests::pods::{PodNode, condition, container};
use husk_tests::require_root;

const T: Duration = Duration::from_secs(60);

fn exec(node: &PodNode, pod: &str, c: &str, cmd: &[&str]) -> (bool, String) {
    let endpoint = format!("unix://{}", node.socket().display());
    let full = node.full(pod);
    let mut args = vec![
        "exec",
        full.as_str(),
        "-c",
        c,
        "--endpoint",
        endpoint.as_str(),
        "--",
    ];
    args.extend_from_slice(cmd);
    let out = node.husklet(&args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn logs(node: &PodNode, pod: &str, extra: &[&str]) -> String {
    let full = node.full(pod);
    let mut args = vec!["logs", full.as_str()];
    args.extend_from_slice(extra);
    String::from_utf8_lossy(&node.husklet(&args).stdout).into_owned()
}

const ONCE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: scratch, emptyDir: {}}]
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "if [ -f /data/seen ]; then echo again; exec sleep 3600; fi; echo first; touch /data/seen; exit 1"]
    volumeMounts: [{name: scratch, mountPath: /data}]
"#;

#[test]
fn an_empty_dir_survives_a_container_restart_but_not_the_pod() {
    require_root!();
    let node = PodNode::start();
    node.add("once.yaml", ONCE);
    let p = node.wait_pod("once", T, "restarted and running", |p| {
        container(p, "c")["restartCount"] == 1 && container(p, "c")["state"]["running"].is_object()
    });
    assert_eq!(container(&p, "c")["lastState"]["terminated"]["exitCode"], 1);
    assert!(
        logs(&node, "once", &[]).contains("again"),
        "the restarted container saw the file"
    );
    assert!(logs(&node, "once", &["--previous"]).contains("first"));
    node.remove("once.yaml");
    node.wait_gone("once", T);
    node.add("once.yaml", ONCE);
    node.wait_pod("once", T, "restarted again", |p| {
        container(p, "c")["restartCount"] == 1 && container(p, "c")["state"]["running"].is_object()
    });
    assert!(
        logs(&node, "once", &["--previous"]).contains("first"),
        "a new pod starts with an empty emptyDir"
    );
}

#[test]
fn config_maps_and_secrets_reach_env_and_volumes_and_updates_swap_atomically() {
    require_root!();
    let node = PodNode::start();
    let cm = |greeting: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app, namespace: default}}\ndata: {{greeting: {greeting}}}\n"
        )
    };
    std::fs::write(node.config_dir().join("app.yaml"), cm("hello")).expect("configmap");
    std::fs::write(
        node.config_dir().join("creds.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: default}\nstringData: {password: s3cret}\n",
    )
    .expect("secret");
    node.add(
        "app.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: cfg, configMap: {name: app}}
  - {name: sec, secret: {secretName: creds, defaultMode: 0400}}
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo GREETING=$GREETING PASS=$PASS; exec sleep 3600"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: app, key: greeting}}
    - name: PASS
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: BOTH, value: "$(GREETING)-$(POD_NAME)"}
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: sec, mountPath: /etc/creds}
"#,
    );
    node.wait_pod("app", T, "Ready", |p| condition(p, "Ready"));
    let full = node.full("app");
    let (ok, env) = exec(
        &node,
        "app",
        "c",
        &["sh", "-c", "echo $GREETING $PASS $BOTH"],
    );
    assert!(ok, "{env}");
    assert_eq!(env.trim(), format!("hello s3cret hello-{full}"));
    assert_eq!(
        exec(&node, "app", "c", &["cat", "/etc/app/greeting"]).1,
        "hello"
    );
    let (_, mounts) = exec(&node, "app", "c", &["cat", "/proc/mounts"]);
    let creds = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/etc/creds"))
        .unwrap_or_default()
        .to_string();
    assert!(
        creds.starts_with("tmpfs ") || creds.contains(" tmpfs "),
        "secret volume on tmpfs: {creds:?}"
    );
    let (_, mode) = exec(
        &node,
        "app",
        "c",
        &["stat", "-L", "-c", "%a", "/etc/creds/password"],
    );
    assert_eq!(mode.trim(), "400");
    let (_, before) = exec(&node, "app", "c", &["readlink", "/etc/app/..data"]);
    std::fs::write(node.config_dir().join(".app.tmp"), cm("bye")).expect("configmap");
    std::fs::rename(
        node.config_dir().join(".app.tmp"),
        node.config_dir().join("app.yaml"),
    )
    .expect("rename");
    let t0 = Instant::now();
    loop {
        let (_, g) = exec(&node, "app", "c", &["cat", "/etc/app/greeting"]);
        if g == "bye" {
            break;
        }
        assert_eq!(
            g, "hello",
            "the file is the old or the new content, never anything else"
        );
        assert!(t0.elapsed() < T, "the update never reached the volume");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, after) = exec(&node, "app", "c", &["readlink", "/etc/app/..data"]);
    assert_ne!(before.trim(), after.trim(), "the update swapped ..data");
}

#[test]
fn termination_messages_come_from_the_file_or_the_logs() {
    require_root!();
    let node = PodNode::start();
    node.add(
        "msgs.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: msgs}
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo -n written-to-file > /dev/termination-log; echo noise; exit 3"]
  - name: logs
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, "echo last-words; exit 2"]
  - name: custom
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    terminationMessagePath: /tmp/why
    command: [sh, -c, "echo -n custom-path > /tmp/why"]
"#,
    );
    let p = node.wait_pod("msgs", T, "Failed", |p| p["status"]["phase"] == "Failed");
    let msg = |c: &str| {
        container(&p, c)["state"]["terminated"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(msg("file"), "written-to-file");
    assert_eq!(container(&p, "file")["state"]["terminated"]["exitCode"], 3);
    assert!(
        msg("logs").contains("last-words"),
        "FallbackToLogsOnError: {:?}",
        msg("logs")
    );
    assert_eq!(msg("custom"), "custom-path");
    assert_eq!(
        container(&p, "custom")["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[test]
fn bad_manifests_are_reported_with_the_field_and_other_pods_are_untouched() {
    require_root!();
    let node = PodNode::start();
    node.add(
        "good.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: good}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "exec sleep 3600"]}
"#,
    );
    let good = node.wait_pod("good", T, "Ready", |p| condition(p, "Ready"));
    let id = container(&good, "c")["containerID"].clone();
    let bad = [
        (
            "typo.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: typo}\nspec:\n  containers:\n  - {name: c, image: busybox, imagePullPolcy: Never}\n",
            "spec.containers[0].imagePullPolcy",
        ),
        (
            "dup.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: dup}\nspec:\n  containers:\n  - {name: c, image: busybox}\n  - {name: c, image: busybox}\n",
            "spec.containers[1].name",
        ),
        (
            "port.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: port}\nspec:\n  containers:\n  - {name: c, image: busybox, ports: [{name: Not_A_Name, containerPort: 80}]}\n",
            "spec.containers[0].ports[0].name",
        ),
    ];
    for (file, yaml, _) in &bad {
        node.add(file, yaml);
    }
    let t0 = Instant::now();
    for (file, _, field) in &bad {
        let key = format!("invalid-{file}");
        loop {
            let pods = node.pods();
            if let Some(p) = pods
                .iter()
                .find(|p| p["pod"]["metadata"]["name"] == key.as_str())
            {
                let err = p["error"].as_str().unwrap_or("");
                assert!(
                    err.contains(field),
                    "{file}: error {err:?} should name {field}"
                );
                break;
            }
            assert!(t0.elapsed() < T, "{file} was never reported");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let table = String::from_utf8_lossy(&node.husklet(&["pods"]).stdout).into_owned();
    assert!(
        table.contains("invalid-typo.yaml") && table.contains("Invalid"),
        "{table}"
    );
    let describe = node.husklet(&["describe", "pod", "invalid-dup.yaml"]);
    assert!(
        String::from_utf8_lossy(&describe.stdout).contains("spec.containers[1].name"),
        "describe shows the field: {}",
        String::from_utf8_lossy(&describe.stdout)
    );
    let good = node.pod("good").expect("good pod still reported");
    assert!(condition(&good, "Ready"));
    assert_eq!(
        container(&good, "c")["containerID"],
        id,
        "the good pod was not touched"
    );
    // A missing configMap without `optional` holds the container back, naming it.
    node.add(
        "needs.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: needs}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    env: [{name: X, valueFrom: {configMapKeyRef: {name: absent, key: k}}}]
"#,
    );
    let p = node.wait_pod("needs", T, "CreateContainerConfigError", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let msg = container(&p, "c")["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(msg.contains("absent"), "{msg}");
    // Fixing the file replaces the rejected entry with the pod.
    node.add(
        "typo.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: typo}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: \"busybox:latest\", imagePullPolicy: IfNotPresent, command: [sleep, \"3600\"]}\n",
    );
    node.wait_pod("typo", T, "Ready once fixed", |p| condition(p, "Ready"));
}

#[test]
fn a_husklet_killed_during_termination_finishes_it_after_restart() {
    require_root!();
    let mut node = PodNode::start();
    node.add(
        "slow.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - {name: c, image: "busybox:latest", imagePullPolicy: IfNotPresent, command: [sh, -c, "trap '' TERM; while true; do sleep 0.1; done"]}
"#,
    );
    node.wait_pod("slow", T, "Ready", |p| condition(p, "Ready"));
    node.remove("slow.yaml");
    node.wait_pod("slow", T, "terminating", |p| p["stage"] == "Terminating");
    node.kill9();
    node.spawn();
    node.wait_gone("slow", T);
    // Nothing of the pod is left in the runtime: no overlay rootfs mounted
    // under the node's store, no pod dir.
    let t0 = Instant::now();
    loop {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = node.root();
        let leftover = mi
            .lines()
            .any(|l| l.contains(root.to_str().unwrap_or("?")) && l.contains("overlay"));
        let pods_dir = node.root().join("pods");
        let dirs = std::fs::read_dir(&pods_dir).map(|d| d.count()).unwrap_or(0);
        if !leftover && dirs == 0 {
            break;
        }
        assert!(
            t0.elapsed() < T,
            "left behind: overlay mounted {leftover}, pod dirs {dirs}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_husklet_killed_during_pod_start_converges_without_duplicates() {
    require_root!();
    let mut node = PodNode::start();
    node.add(
        "starting.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: starting}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "exec sleep 3600"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "sleep 3"]}}
"#,
    );
    // Kill husklet while the postStart hook runs (after Created/Started).
    node.wait_pod("starting", T, "started", |p| {
        p["events"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["reason"] == "Started"))
    });
    node.kill9();
    node.spawn();
    let p = node.wait_pod("starting", T, "Ready after restart", |p| {
        condition(p, "Ready")
    });
    assert_eq!(
        container(&p, "c")["restartCount"],
        0,
        "the running container is adopted, not replaced"
    );
    let Some(crictl) = husk_tests::cri::crictl_path() else {
        husk_tests::skip!(
            "k8s-tools",
            "crictl not found: cannot count the runtime's containers"
        );
    };
    let endpoint = format!("unix://{}", node.socket().display());
    let count = |what: &str| {
        let out = std::process::Command::new(&crictl)
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
                what,
                "-q",
            ])
            .output()
            .expect("crictl");
        assert!(
            out.status.success(),
            "crictl {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(count("pods"), 1, "one sandbox");
    assert_eq!(count("ps"), 1, "one container");
}
