//! `husk events` streaming, as containerd's shim reads it: one `stats` line
//! per `--interval` until the container stops, and an `oom` line when the
//! kernel OOM-kills in the container. Runs on the v1/hybrid host and in the
//! cgroup v2 VM (scripts/vm-test runs every cgroups_* binary).

use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use husk_tests::oci::Ctr;
use husk_tests::require_root;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// `husk events --interval <interval> <id>` until it exits by itself (the
/// container stopped): its JSON lines and how long it ran.
fn stream(c: &Ctr, interval: &str) -> (Vec<Value>, Duration) {
    let start = Instant::now();
    let child = c
        .husk(&["events", "--interval", interval, &c.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run husk events");
    let pid = Pid::from_raw(child.id() as i32);
    // Read the output while it runs (a full pipe would block it), on a thread,
    // so that a stream that never ends fails the test instead of hanging it.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("husk events output"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let state = c.husk(&["state", &c.id]).output().expect("husk state");
            panic!(
                "husk events still running 60 s after the container was started; state: {}",
                String::from_utf8_lossy(&state.stdout)
            );
        }
    };
    let _ = reader.join();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "husk events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    (lines, took)
}

#[test]
fn events_streams_stats_until_the_container_stops() {
    require_root!();
    let c = Ctr::new("evs", "sleep 3", json!({"pids": {"limit": 20}}));
    c.run_detached();
    let (events, took) = stream(&c, "200ms");
    // ~3 s at 5 a second; the VM (qemu TCG) is slow, so only ask for a few.
    assert!(events.len() >= 4, "{} lines in {took:?}", events.len());
    for e in &events {
        assert_eq!(e["type"], "stats", "{e}");
        assert_eq!(e["id"], c.id.as_str(), "{e}");
        assert_eq!(e["data"]["pids"]["limit"], 20, "{e}");
    }
    assert!(
        took >= Duration::from_millis(1500),
        "events returned before the container stopped: {took:?}"
    );
}

#[test]
fn events_reports_an_oom_kill() {
    require_root!();
    // The hog is a child, so the container's init lives on after the kill.
    let c = Ctr::new(
        "evo",
        "sleep 1; tail /dev/zero; sleep 2",
        json!({"memory": {"limit": 33554432}}),
    );
    c.run_detached();
    let (events, _) = stream(&c, "100ms");
    let ooms = events.iter().filter(|e| e["type"] == "oom").count();
    assert!(ooms >= 1, "no oom event in {events:?}");
    assert!(
        events.iter().all(|e| e["id"] == c.id.as_str()),
        "{events:?}"
    );
}
