//! husklet joined to a real kube-apiserver with its pods on containerd
//! (`--container-runtime-endpoint`): kubectl exec, attach and port-forward
//! through the apiserver reach containerd's own streaming server through
//! husklet's kubelet API, which proxies the upgraded connection as kubelet
//! does. The control plane, husklet, containerd (its streaming server on
//! 127.0.0.1) and the pods share containerd's network namespace, as they
//! share a host's.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use husk_tests::containerd::Containerd;
use husk_tests::control_plane::{Config, ControlPlane};
use husk_tests::pods::{NODE, PodNode};
use husk_tests::require_control_plane;

const T: Duration = Duration::from_secs(90);

fn pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: talk, namespace: default}}
spec:
  nodeName: {NODE}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "3600"]
  - name: web
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "mkdir -p /www && echo hello-from-containerd > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: chatter
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "i=0; while true; do i=$((i+1)); echo chat-$i; sleep 0.3; done"]
"#
    )
}

fn kubectl_spawn(cp: &ControlPlane, args: &[&str]) -> std::process::Child {
    cp.command(husk_tests::cri::k8s_bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cp.admin_kubeconfig())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl")
}

#[test]
fn kubectl_exec_attach_and_port_forward_reach_containerd_streams() {
    require_control_plane!();
    if let Some(why) = husk_tests::containerd::unavailable() {
        husk_tests::skip!("tool", "containerd: {why}");
    }
    let c = Containerd::start();
    let cp = ControlPlane::start_in_netns(Config::default(), &c.netns.clone());
    let ca = cp.ca_cert();
    let node = PodNode::join_containerd(
        &cp,
        c,
        &[
            "--client-ca-file",
            ca.to_str().expect("utf-8"),
            "--authorization-mode",
            "Webhook",
        ],
    );
    cp.apply(&pod());
    let t0 = Instant::now();
    let p = loop {
        let p = cp.get_json(&["pod", "talk"]);
        let running = p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| {
                cs.len() == 3 && cs.iter().all(|c| c["state"]["running"].is_object())
            });
        if running {
            break p;
        }
        assert!(
            t0.elapsed() < T,
            "not running: {}\n{}",
            p["status"],
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        p["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("containerd://")),
        "the pod runs on containerd: {}",
        p["status"]
    );

    // exec: the exit code and output come back, stdin goes in.
    let out = cp.kubectl(&[
        "exec",
        "talk",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\nhusklet:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    let out = cp.kubectl_as(
        &cp.admin_kubeconfig(),
        &["exec", "-i", "talk", "-c", "main", "--", "tr", "a-z", "A-Z"],
        Some("hello stdin\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\n");
    // A refusal from containerd's side comes back as kubectl's error.
    let out = cp.kubectl(&["exec", "talk", "-c", "main", "--", "/no/such/program"]);
    assert!(!out.status.success(), "exec of a missing program fails");

    // port-forward, fetched with curl inside the namespace.
    let mut pf = kubectl_spawn(&cp, &["port-forward", "pod/talk", "18080:8080"]);
    let mut lines = BufReader::new(pf.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let fetched = cp
        .command("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "http://127.0.0.1:18080/index.html",
        ])
        .output()
        .expect("run curl");
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(
        first.contains("Forwarding from"),
        "port-forward said {first:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&fetched.stdout),
        "hello-from-containerd\n",
        "{}\nhusklet:\n{}",
        String::from_utf8_lossy(&fetched.stderr),
        node.log()
    );

    // attach: the running container's output as it comes.
    let mut at = kubectl_spawn(&cp, &["attach", "talk", "-c", "chatter"]);
    let mut lines = BufReader::new(at.stdout.take().expect("stdout")).lines();
    let got: Vec<String> = lines.by_ref().take(2).map_while(Result::ok).collect();
    let _ = at.kill();
    let _ = at.wait();
    let n = |l: &str| l.strip_prefix("chat-").and_then(|n| n.parse::<u32>().ok());
    assert_eq!(
        got.len(),
        2,
        "kubectl attach printed {got:?}\n{}",
        node.log()
    );
    match (n(&got[0]), n(&got[1])) {
        (Some(a), Some(b)) => assert_eq!(b, a + 1, "{got:?}"),
        _ => panic!("kubectl attach printed {got:?}"),
    }

    cp.kubectl_ok(&["delete", "pod", "talk", "--wait=false"]);
    let t0 = Instant::now();
    while !cp
        .kubectl_ok(&["get", "pods", "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(t0.elapsed() < T, "pod not deleted\n{}", node.log());
        std::thread::sleep(Duration::from_millis(250));
    }
}
