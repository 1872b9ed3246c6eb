//! Bad input: endpoints that are not CRI servers, an image that does not
//! exist, a failure in the middle of a run, an interrupted run. Each gets a
//! clear error, and nothing the run created is left.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{CRI_BENCH, Containerd};

fn stderr_of(args: &[&str], endpoint: &str) -> (bool, String) {
    let out = Command::new(CRI_BENCH)
        .args(args)
        .args([
            "--endpoint",
            endpoint,
            "--cgroup-parent",
            "/husk-test-unused",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_socket_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let (ok, err) = stderr_of(&["lifecycle"], &format!("unix://{}", sock.display()));
    assert!(!ok);
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn endpoint_scheme_is_checked() {
    let (ok, err) = stderr_of(&["lifecycle"], "tcp://127.0.0.1:1");
    assert!(!ok);
    assert!(
        err.contains("--endpoint") && err.contains("unix://"),
        "{err}"
    );
}

#[test]
fn a_socket_that_is_not_cri() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("http.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // Answers every connection with HTTP/1.1, as a web server would.
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let (ok, err) = stderr_of(&["lifecycle"], &format!("unix://{}", sock.display()));
    assert!(!ok);
    assert!(err.contains("CRI v1 Version"), "{err}");
    assert!(err.contains(&sock.display().to_string()), "{err}");
}

#[test]
fn pod_modes_need_a_cgroup_parent() {
    let out = Command::new(CRI_BENCH)
        .args(["lifecycle", "--endpoint", "unix:///nonexistent.sock"])
        .env_remove("CGROUP_PARENT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cgroup-parent"), "{err}");
}

#[test]
fn failures_and_interrupts_against_containerd_leave_nothing() {
    let c = Containerd::start();

    // An image the registry does not have: PullImage fails, named with the image.
    let out = c.run(&[
        "lifecycle",
        "--count",
        "1",
        "--image",
        "docker.io/husk/nope:latest",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PullImage") && err.contains("docker.io/husk/nope:latest"),
        "{err}"
    );
    c.assert_nothing_left();
    let out = c.run(&[
        "images",
        "--count",
        "1",
        "--image",
        "docker.io/husk/nope:latest",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PullImage"));

    // A failure in the middle: the sandbox and container exist, StartContainer
    // fails (no such binary in the image); both must be removed.
    let out = c.run(&["lifecycle", "--count", "2", "--command", "/no/such/binary"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("StartContainer") && err.contains("container "),
        "{err}"
    );
    c.assert_nothing_left();

    // Interrupted with SIGINT while its pods run.
    let mut child = c
        .cri_bench(&["density", "--count", "2", "--settle", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.leftovers().1 < 2 {
        assert!(
            Instant::now() < deadline,
            "density did not start 2 containers"
        );
        assert!(child.try_wait().unwrap().is_none(), "density ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SIGINT"), "{err}");
    assert!(!err.contains("cleanup of run"), "cleanup failed: {err}");
    c.assert_nothing_left();
}
