//! The real crictl (1.26, SPDY) against `husklet serve`'s streaming server:
//! exec (with and without -i/-t, stdin from a pipe, exit codes), attach to
//! a container started with stdin and a tty, port-forward to busybox httpd
//! in the pod's network namespace, several connections at once.

mod cri_stream_support;

use cri_stream_support::{
    Forward, crictl_in_a_tty, crictl_with_input, curl, no_exec_sessions_left, run_pod,
};
use husk_tests::cri::CriNode;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn crictl_exec_streams_output_stdin_and_exit_codes() {
    require_crictl!();
    let node = CriNode::start();
    let (_pod, ctr) = run_pod(
        &node,
        "ex",
        "main",
        serde_json::json!({"command": ["sh", "-c", "while true; do sleep 1; done"]}),
    );

    let out = node.crictl(&["exec", &ctr, "sh", "-c", "echo out; echo err >&2"]);
    assert!(out.status.success(), "{}{}", text(&out.stderr), node.log());
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));

    // Exit codes come back through the v4 status; crictl 1.26 exits 1 on
    // any failure but names the code it decoded.
    for (script, want) in [("exit 1", 1), ("kill -9 $$", 137), ("exit 0", 0)] {
        let out = node.crictl(&["exec", &ctr, "sh", "-c", script]);
        let err = text(&out.stderr);
        if want == 0 {
            assert!(out.status.success(), "{err}");
        } else {
            assert!(!out.status.success(), "{script}: {err}");
            assert!(
                err.contains(&format!("command terminated with exit code {want}")),
                "{script}: {err}"
            );
        }
    }

    // Stdin from a pipe, and its EOF reaching the process.
    let input: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = crictl_with_input(
        &node,
        &["exec", "-i", &ctr, "sh", "-c", "cat; echo EOF"],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut want = input.clone();
    want.extend_from_slice(b"EOF\n");
    assert!(out.stdout == want, "{} bytes back", out.stdout.len());

    // -i without piping anything: EOF at once.
    let out = crictl_with_input(&node, &["exec", "-i", &ctr, "wc", "-c"], b"");
    assert_eq!(text(&out.stdout).trim(), "0", "{}", text(&out.stderr));

    // -t: the process gets a terminal (crictl needs one itself: script).
    let out = crictl_in_a_tty(
        &node,
        &[
            "exec",
            "-it",
            &ctr,
            "sh",
            "-c",
            "tty; read line; echo got-$line; exit 3",
        ],
        b"typed\n",
    );
    let shown = text(&out.stdout);
    assert!(shown.contains("/dev/pts/"), "no tty: {shown}");
    assert!(shown.contains("got-typed"), "{shown}");
    assert_eq!(out.status.code(), Some(1), "exit 3 fails crictl: {shown}");

    // Exec in a container that has stopped is refused by name.
    node.crictl_ok(&["stop", &ctr]);
    let out = node.crictl(&["exec", &ctr, "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );
    no_exec_sessions_left(&node);
}

#[test]
fn crictl_attach_to_a_container_with_stdin_and_a_tty() {
    require_crictl!();
    let node = CriNode::start();
    let (_pod, ctr) = run_pod(
        &node,
        "att",
        "shell",
        serde_json::json!({"command": ["sh"], "stdin": true, "tty": true}),
    );
    husk_tests::wait_for("the container to run", 10, || {
        node.container_state(&ctr) == "CONTAINER_RUNNING"
    });
    let out = crictl_in_a_tty(
        &node,
        &["attach", "-i", "-t", &ctr],
        b"echo attached-$((40+2))\nexit 7\n",
    );
    let shown = text(&out.stdout);
    assert!(
        shown.contains("attached-42"),
        "stdout: {shown}\nstderr: {}\nhusklet:\n{}",
        text(&out.stderr),
        node.log()
    );
    // `exit 7` ended the container's shell: the attach ends, and the container too.
    husk_tests::wait_for("the container to exit", 10, || {
        node.container_state(&ctr) == "CONTAINER_EXITED"
    });
    let st = node.crictl_json(&["inspect", "-o", "json", &ctr]);
    assert_eq!(st["status"]["exitCode"], 7, "{st}");

    // Attach with stdin to a container created without stdin: refused by field.
    let (_p2, plain) = run_pod(
        &node,
        "att2",
        "plain",
        serde_json::json!({"command": ["sh", "-c", "while true; do sleep 1; done"]}),
    );
    let out = crictl_with_input(&node, &["attach", "-i", &plain], b"x\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stdin: container"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn crictl_port_forward_reaches_httpd_in_the_pods_netns() {
    require_crictl!();
    let node = CriNode::start();
    let (pod, _ctr) = run_pod(
        &node,
        "web",
        "httpd",
        serde_json::json!({"command": ["sh", "-c",
            "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www"]}),
    );
    let fwd = Forward::start(&node, &pod, 8080);
    husk_tests::wait_for("httpd answers", 20, || {
        curl(fwd.local, "/index.html").1 == b"hello-from-the-pod\n"
    });
    // Several connections at once over the one SPDY session.
    let port = fwd.local;
    let gets: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || curl(port, "/index.html")))
        .collect();
    for g in gets {
        let (code, body) = g.join().expect("curl thread");
        assert_eq!(code, 0);
        assert_eq!(body, b"hello-from-the-pod\n");
    }
    // 127.0.0.1 is the pod's loopback, not the host's: a port nothing in the
    // pod listens on fails that connection only, and the forward goes on.
    let closed = Forward::start(&node, &pod, 8081);
    let (code, body) = curl(closed.local, "/");
    assert_ne!(code, 0, "{}", text(&body));
    assert_eq!(curl(fwd.local, "/index.html").1, b"hello-from-the-pod\n");
}
