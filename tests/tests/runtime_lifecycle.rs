//! The OCI lifecycle through the runtime's CLI: create/start rendezvous,
//! state, kill, delete, run's exit status and signals, list and ps.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use husk_tests::oci::{Bundle, Runtime, alive, host_mounts_under, wait_gone};
use husk_tests::require_root;

#[test]
fn create_blocks_until_start_then_runs() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sh", "-c", "touch /started; exec sleep 300"]);
    let pidfile = b.path().join("pid");
    rt.ok(&[
        "create",
        "--bundle",
        b.path_str(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        "c1",
    ]);
    let st = rt.state("c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "c1");
    assert!(st["ociVersion"].is_string(), "{st}");
    assert!(st["created"].as_str().unwrap().ends_with('Z'), "{st}");
    assert_eq!(st["bundle"], b.path_str());
    assert_eq!(st["rootfs"].as_str().unwrap(), b.rootfs().to_str().unwrap());
    assert!(st.get("owner").is_some(), "{st}");
    let pid = st["pid"].as_i64().unwrap() as i32;
    let from_file: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, from_file);
    assert!(alive(pid));
    // The user program has not run yet.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!b.rootfs().join("started").exists(), "ran before start");
    assert_eq!(rt.state("c1")["status"], "created");

    rt.ok(&["start", "c1"]);
    rt.wait_status("c1", "running");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !b.rootfs().join("started").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "did not run after start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `exec sleep` follows the touch: the init becomes the user's program.
    loop {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        if cmdline.starts_with(b"sleep\x00300") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{cmdline:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second start is refused.
    assert!(!rt.out(&["start", "c1"]).status.success());

    rt.ok(&["kill", "c1", "KILL"]);
    assert!(wait_gone(pid));
    rt.wait_status("c1", "stopped");
    assert_eq!(rt.state("c1")["pid"], 0);
    rt.ok(&["delete", "c1"]);
    assert!(rt.status("c1").is_none());
}

#[test]
fn delete_refuses_running_and_force_leaves_nothing() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    rt.ok(&["run", "--detach", "--bundle", b.path_str(), "d1"]);
    let pid = rt.state("d1")["pid"].as_i64().unwrap() as i32;
    let o = rt.out(&["delete", "d1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(alive(pid), "a refused delete must not kill");
    assert!(!rt.cgroup().dirs().is_empty(), "container has a cgroup");

    rt.ok(&["delete", "--force", "d1"]);
    assert!(wait_gone(pid), "init still alive");
    assert!(!rt.state_dir("d1").exists(), "state dir left");
    let leaf = rt.cgroup().leaf_dirs("c");
    assert!(leaf.is_empty(), "cgroup left: {leaf:?}");
    assert!(
        host_mounts_under(b.path()).is_empty(),
        "mounts left on the host"
    );
    assert!(rt.status("d1").is_none());
}

#[test]
fn run_propagates_exit_status() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sh", "-c", "exit 42"]);
    let st = rt
        .cmd(&["run", "--bundle", b.path_str(), "e1"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(42));
    assert!(rt.status("e1").is_none(), "run deletes the container");
    assert!(!rt.state_dir("e1").exists());
}

#[test]
fn run_reports_128_plus_signal() {
    require_root!();
    let rt = Runtime::new();
    // Without a pid namespace of its own the process is not an init: a signal
    // without a handler kills it, and run exits with 128+N.
    let mut b = Bundle::new(&rt, "c", &["sh", "-c", "kill -TERM $$; sleep 5"]);
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    });
    let st = rt
        .cmd(&["run", "--bundle", b.path_str(), "s1"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(128 + 15), "{st:?}");
}

#[test]
fn pid1_without_handler_ignores_sigterm_but_not_sigkill() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["sleep", "300"]);
    b.edit(|_| {});
    let mut child = rt
        .cmd(&["run", "--bundle", b.path_str(), "t1"])
        .spawn()
        .unwrap();
    rt.wait_status("t1", "running");
    rt.ok(&["kill", "t1", "TERM"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rt.status("t1").as_deref(),
        Some("running"),
        "pid 1 ignored SIGTERM"
    );
    assert!(child.try_wait().unwrap().is_none());
    // The foreground runtime forwards signals: SIGKILL through it is not ignorable.
    rt.ok(&["kill", "t1", "9"]);
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(137), "{st:?}");
}

#[test]
fn pid1_with_handler_gets_forwarded_sigterm() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(
        &rt,
        "c",
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; touch /ready; while :; do sleep 0.05; done",
        ],
    );
    let mut child = rt
        .cmd(&["run", "--bundle", b.path_str(), "h1"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !b.rootfs().join("ready").exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // Signal the foreground runtime itself: it forwards to the container.
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(7), "{st:?} {:?}", st.signal());
}

#[test]
fn list_and_ps() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sh", "-c", "sleep 300 & exec sleep 301"]);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), "l1"]);
    let table = rt.ok(&["list"]);
    let mut lines = table.lines();
    let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("l1 ") && row.contains("running"), "{row}");
    let json: serde_json::Value =
        serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(json[0]["id"], "l1");
    assert_eq!(json[0]["status"], "running");

    let pid = rt.state("l1")["pid"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let pids = loop {
        let pids: Vec<i64> =
            serde_json::from_str(&rt.ok(&["ps", "--format", "json", "l1"])).unwrap();
        if pids.len() == 2 || std::time::Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.contains(&pid));
    let ps = rt.ok(&["ps", "l1"]);
    assert!(ps.lines().next().unwrap().contains("PID"), "{ps}");
    assert!(ps.contains("sleep 301") && ps.contains("sleep 300"), "{ps}");
    assert_eq!(ps.lines().count(), 3, "{ps}");

    rt.ok(&["kill", "--all", "l1", "KILL"]);
    rt.wait_status("l1", "stopped");
    rt.ok(&["delete", "l1"]);
}

#[test]
fn large_annotations_and_env_reach_the_container() {
    require_root!();
    let rt = Runtime::new();
    // Kubernetes puts 10-100 KiB annotations on pods: 256 KiB of them here,
    // and a 64 KiB variable the container must see whole.
    let big = "e".repeat(64 * 1024);
    let mut b = Bundle::new(&rt, "c", &["sh", "-c", "echo ${#BIG} ${BIG:0:3}"]);
    b.edit(|c| {
        let mut ann = serde_json::Map::new();
        for i in 0..4 {
            ann.insert(format!("example.com/big-{i}"), "a".repeat(64 * 1024).into());
        }
        c["annotations"] = ann.into();
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(format!("BIG={big}").into());
    });
    let out = rt.ok(&["create", "--bundle", b.path_str(), "big"]);
    assert!(out.is_empty(), "{out}");
    let st = rt.state("big");
    assert_eq!(
        st["annotations"]["example.com/big-3"]
            .as_str()
            .unwrap()
            .len(),
        64 * 1024
    );
    let o = rt.out(&["run", "--bundle", b.path_str(), "big2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "65536 eee\n");
    rt.ok(&["delete", "--force", "big"]);
}

#[test]
fn every_command_checks_the_id() {
    require_root!();
    let rt = Runtime::new();
    // A container directory outside the root, which `../outside` would name.
    let outside = rt
        .root()
        .parent()
        .unwrap()
        .join(format!("husk-test-outside-{}", husk_tests::unique_suffix()));
    std::fs::create_dir(&outside).unwrap();
    // A pid no process can have: nothing is signalled whatever happens.
    std::fs::write(outside.join("state.json"), r#"{"ociVersion":"1.0.2","id":"x","pid":2147483000,"status":"running","bundle":"/","rootfs":"/","created":"","owner":""}"#).unwrap();
    let id = format!("../{}", outside.file_name().unwrap().to_str().unwrap());
    for args in [
        vec!["state", &id],
        vec!["start", &id],
        vec!["kill", &id, "WINCH"],
        vec!["exec", &id, "true"],
        vec!["ps", &id],
        vec!["pause", &id],
        vec!["resume", &id],
        vec!["events", "--stats", &id],
        vec!["delete", "--force", &id],
    ] {
        let o = rt.out(&args);
        assert!(!o.status.success(), "{args:?} accepted the id");
        let err = String::from_utf8_lossy(&o.stderr);
        if husk_tests::oci::is_husk() {
            assert!(err.contains("invalid container id"), "{args:?}: {err}");
        }
    }
    assert!(
        outside.join("state.json").exists(),
        "delete reached outside the root"
    );
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn delete_refuses_a_created_container() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    rt.ok(&["create", "--bundle", b.path_str(), "cr"]);
    let pid = rt.state("cr")["pid"].as_i64().unwrap() as i32;
    let o = rt.out(&["delete", "cr"]);
    assert!(!o.status.success(), "a created container was deleted");
    assert!(String::from_utf8_lossy(&o.stderr).contains("created"));
    // Nothing changed: still created, its init alive, it can start.
    assert!(alive(pid));
    assert_eq!(rt.state("cr")["status"], "created");
    assert!(!rt.cgroup().leaf_dirs("c").is_empty(), "cgroup removed");
    rt.ok(&["start", "cr"]);
    rt.wait_status("cr", "running");
    rt.ok(&["delete", "--force", "cr"]);
    assert!(wait_gone(pid));
}

#[test]
fn list_shows_a_corrupt_state_and_delete_force_removes_it() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), "good"]);
    rt.ok(&["run", "-d", "--bundle", b.path_str(), "bad"]);
    std::fs::write(rt.state_dir("bad").join("state.json"), "{ corrupt").unwrap();
    let ids = rt.container_ids();
    assert_eq!(ids, ["bad", "good"], "{ids:?}");
    let table = rt.ok(&["list"]);
    let row = table.lines().find(|l| l.starts_with("bad ")).unwrap();
    assert!(row.contains("unknown"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(json[0]["id"], "bad");
    assert_eq!(json[0]["status"], "unknown");
    assert_eq!(json[1]["status"], "running");
    rt.ok(&["delete", "--force", "bad"]);
    assert!(!rt.state_dir("bad").exists());
    assert_eq!(rt.container_ids(), ["good"]);
    rt.ok(&["delete", "--force", "good"]);
}

#[test]
fn errors_print_each_cause_once() {
    require_root!();
    if !husk_tests::oci::is_husk() {
        husk_tests::skip!("husk-only", "checks husk's error wording");
    }
    let rt = Runtime::new();
    let dir = tempfile::tempdir().unwrap();
    let o = rt.out(&["create", "--bundle", dir.path().to_str().unwrap(), "e1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("config.json"), "{err}");
}

/// Signals the runtime's caller ignored (a shell's SIGHUP, a daemon's SIGUSR1)
/// are not ignored in the container: its process starts with every signal
/// at its default disposition, as under runc.
#[test]
fn the_container_starts_with_default_signal_dispositions() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["grep", "SigIgn", "/proc/self/status"]);
    let mut cmd = rt.cmd(&["run", "--bundle", b.path_str(), "sigs"]);
    // SAFETY: the closure runs between fork and exec and only calls signal(2).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().expect("run the runtime");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "SigIgn:\t0000000000000000");
}
