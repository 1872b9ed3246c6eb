//! husk-shim's exit record: exit code, a kill by signal, an OOM kill (the
//! cgroup's oom_kill counter), and an exec session's exit code (with and
//! without a tty).

mod shim_support;

use husk_shim::client::{Ctl, LaunchConfig, launch};
use husk_tests::{require_cgroup_v1, require_root};
use serde_json::json;
use shim_support::{Fixture, is_rfc3339_nano_utc, stream, wait_exit};

#[test]
fn exit_code_is_recorded() {
    require_root!();
    let c = Fixture::new(&["sh", "-c", "exit 3"], |_| {});
    let pid = c.run(false);
    let rec = c.wait_exit();
    assert_eq!(
        (rec.pid, rec.exit_code, rec.signal, rec.oom_killed),
        (pid, 3, None, false)
    );
    assert!(is_rfc3339_nano_utc(&rec.finished_at), "{rec:?}");
    // The shim removes its sockets right after the record, then exits; the
    // record stays for husklet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while c.dir().join("ctl.sock").exists() || c.dir().join("attach.sock").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the shim's sockets outlive it"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(c.dir().join("exit.json").exists());
}

#[test]
fn a_kill_by_sigkill_is_signal_9_code_137() {
    require_root!();
    let c = Fixture::new(&["sleep", "1000"], |_| {});
    c.run(false);
    assert_eq!(c.ctl().status().expect("status").state, "running");
    c.rt.ok(&["kill", &c.id, "KILL"]);
    let rec = c.wait_exit();
    assert_eq!(
        (rec.exit_code, rec.signal, rec.oom_killed),
        (137, Some(9), false),
        "{rec:?}"
    );
}

#[test]
fn a_container_killed_before_start_is_recorded() {
    require_root!();
    let c = Fixture::new(&["true"], |_| {});
    c.launch(false);
    assert_eq!(c.ctl().status().expect("status").state, "created");
    c.rt.ok(&["delete", "--force", &c.id]);
    let rec = c.wait_exit();
    assert_eq!(rec.signal, Some(9), "{rec:?}");
}

#[test]
fn an_oom_kill_is_recorded() {
    require_cgroup_v1!();
    let c = Fixture::new(&["sh", "-c", "exec tail /dev/zero"], |cfg| {
        cfg["linux"]["resources"] = json!({"memory": {"limit": 33554432}});
    });
    c.run(false);
    let rec = c.wait_exit();
    assert_eq!((rec.signal, rec.oom_killed), (Some(9), true), "{rec:?}");
}

#[test]
fn an_exec_session_reports_its_exit_code() {
    require_root!();
    let c = Fixture::new(&["sleep", "1000"], |_| {});
    c.run(false);
    let process = c.path("process.json");
    let p = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "read line; echo in-exec $line; echo exec-err >&2; exit 5"],
        "env": ["PATH=/usr/bin:/bin"],
        "cwd": "/"
    });
    std::fs::write(&process, p.to_string()).expect("write process.json");
    let dir = c.path("exec1");
    let log = c.path("exec1.log");
    let cfg = LaunchConfig {
        dir: dir.clone(),
        log_path: log.clone(),
        exec: Some(process),
        release: None,
        ..c.config(true)
    };
    let pid = launch(&cfg).expect("launch the exec shim");
    let mut ctl = Ctl::connect(&dir).expect("connect");
    let st = ctl.status().expect("status");
    assert!(st.exec && st.state == "running" && st.pid == pid, "{st:?}");
    let err = ctl.start().unwrap_err().to_string();
    assert!(err.contains("exec"), "{err}");
    let mut a = husk_shim::Attach::connect(&dir).expect("attach");
    a.write_stdin(b"hi\n").expect("stdin");
    let rec = wait_exit(&dir);
    assert_eq!(
        (rec.pid, rec.exit_code, rec.signal),
        (pid, 5, None),
        "{rec:?}"
    );
    let lines = shim_support::parse_log(&log);
    assert_eq!(
        stream(&lines, "stdout"),
        vec![("F".to_string(), "in-exec hi".to_string())]
    );
    assert_eq!(
        stream(&lines, "stderr"),
        vec![("F".to_string(), "exec-err".to_string())]
    );
    // The container itself runs on.
    assert_eq!(c.rt.status(&c.id).as_deref(), Some("running"));
}

#[test]
fn an_exec_session_with_a_tty() {
    require_root!();
    let c = Fixture::new(&["sleep", "1000"], |_| {});
    c.run(false);
    let process = c.path("process-tty.json");
    let p = json!({
        "terminal": true,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "read go; stty size; exit 4"],
        "env": ["PATH=/usr/bin:/bin"],
        "cwd": "/"
    });
    std::fs::write(&process, p.to_string()).expect("write process.json");
    let dir = c.path("exec-tty");
    let log = c.path("exec-tty.log");
    let cfg = LaunchConfig {
        dir: dir.clone(),
        log_path: log.clone(),
        exec: Some(process),
        release: None,
        ..c.config(false)
    };
    let pid = launch(&cfg).expect("launch the exec shim");
    assert!(
        Ctl::connect(&dir)
            .expect("connect")
            .status()
            .expect("status")
            .terminal
    );
    let mut a = husk_shim::Attach::connect(&dir).expect("attach");
    a.resize(12, 34).expect("resize");
    a.write_stdin(b"go\n").expect("stdin");
    let rec = wait_exit(&dir);
    assert_eq!((rec.pid, rec.exit_code), (pid, 4), "{rec:?}");
    let lines = shim_support::parse_log(&log);
    assert!(
        lines
            .iter()
            .any(|l| l.stream == "stdout" && l.text == "12 34\r"),
        "{lines:?}"
    );
}

#[test]
fn a_second_start_is_a_clear_error() {
    require_root!();
    let c = Fixture::new(&["sleep", "1000"], |_| {});
    c.launch(false);
    let mut ctl = c.ctl();
    ctl.start().expect("first start");
    let err = ctl.start().unwrap_err().to_string();
    assert!(err.contains("already started"), "{err}");
    // The connection stays usable after an error.
    assert_eq!(ctl.status().expect("status").state, "running");
}
