//! husk-shim's life apart from its launcher: it survives the launcher's
//! SIGKILL (its whole process group), keeps the container running and
//! logging, and a new client reconnects by path; a bad bundle gives the
//! launcher the runtime's error and leaves nothing behind.

mod shim_support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use husk_shim::SyncResult;
use husk_tests::bins;
use husk_tests::require_root;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use shim_support::{Fixture, stream};

fn ticks(c: &Fixture) -> usize {
    stream(&c.log(), "stdout").len()
}

#[test]
fn the_shim_outlives_its_launcher() {
    require_root!();
    let c = Fixture::new(
        &[
            "sh",
            "-c",
            "i=0; while :; do echo tick$i; i=$((i+1)); sleep 0.05; done",
        ],
        |_| {},
    );
    // The launcher: a shell in a process group of its own that starts the
    // shim, keeps its result, and stays around to be killed.
    let cfg = c.config(false);
    let result = c.path("result");
    let mut launcher = Command::new("sh")
        .arg("-c")
        .arg(r#"result=$1; shift; "$@" > "$result"; exec sleep 1000"#)
        .arg("sh")
        .arg(&result)
        .arg(&cfg.shim)
        .args(["--runtime".as_ref(), cfg.runtime.as_os_str()])
        .args(["--root".as_ref(), cfg.root.as_os_str()])
        .args(["--id", &cfg.id])
        .args(["--bundle".as_ref(), cfg.bundle.as_os_str()])
        .args(["--dir".as_ref(), cfg.dir.as_os_str()])
        .args(["--log-path".as_ref(), cfg.log_path.as_os_str()])
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the launcher");
    let mut pid = 0;
    husk_tests::wait_for("the shim's result", 20, || {
        let text = std::fs::read_to_string(&result).unwrap_or_default();
        match serde_json::from_str::<SyncResult>(text.trim()) {
            Ok(SyncResult::Created { pid: p }) => {
                pid = p;
                true
            }
            Ok(SyncResult::Failed { error }) => panic!("launch failed: {error}"),
            Err(_) => false,
        }
    });
    let shim_pid: i32 = std::fs::read_to_string(c.dir().join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("shim.pid is a pid");

    // Kill the launcher's whole process group.
    killpg(Pid::from_raw(launcher.id() as i32), Signal::SIGKILL).expect("kill the launcher");
    launcher.wait().expect("reap the launcher");
    assert!(
        husk_tests::oci::alive(shim_pid),
        "the shim died with its launcher"
    );

    // A new client reconnects by path and starts the container.
    let mut ctl = c.ctl();
    let st = ctl.status().expect("status");
    assert_eq!(
        (st.pid, st.shim_pid, st.state.as_str()),
        (pid, shim_pid, "created")
    );
    ctl.start().expect("start");
    husk_tests::wait_for("ticks in the log", 10, || ticks(&c) >= 3);
    let n = ticks(&c);
    husk_tests::wait_for("more ticks", 10, || ticks(&c) > n + 3);
    assert_eq!(c.ctl().status().expect("status").state, "running");

    c.rt.ok(&["kill", &c.id, "KILL"]);
    assert_eq!(c.wait_exit().signal, Some(9));
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && husk_tests::oci::alive(pid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_bad_bundle_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    let c = Fixture::new(&["true"], |cfg| {
        cfg["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "foo"}]);
    });
    let err = c.try_launch(true).unwrap_err().to_string();
    assert!(
        err.contains("linux.namespaces[1].type") && err.contains("foo"),
        "{err}"
    );
    assert!(!c.dir().exists(), "the shim dir was left behind");
    assert!(!c.log_path().exists(), "the log file was left behind");
    assert!(c.rt.container_ids().is_empty() && !c.rt.state_dir(&c.id).exists());
    assert!(c.rt.cgroup().leaf_dirs("shim").is_empty());
    let dir = c.dir().to_string_lossy().into_owned();
    husk_tests::wait_for("the shim to exit", 5, || {
        processes_mentioning(&dir).is_empty()
    });

    // No config.json at all: the shim says which file.
    std::fs::remove_file(c.bundle.path().join("config.json")).expect("remove config.json");
    let err = c.try_launch(false).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("No such file"),
        "{err}"
    );
    assert!(!c.dir().exists());

    // A usage error reaches the launcher too.
    let out = Command::new(bins::bin("husk-shim"))
        .arg("--id")
        .output()
        .expect("run husk-shim");
    let r: SyncResult = serde_json::from_slice(&out.stdout).expect("a result line");
    assert!(
        matches!(&r, SyncResult::Failed { error } if error.contains("--id needs a value")),
        "{r:?}"
    );
}

#[test]
fn the_container_starts_with_default_signal_dispositions() {
    require_root!();
    // Launched from this (Rust, glibc) test process as husklet launches it:
    // glibc's posix_spawn leaves its internal signals 32 and 33 ignored in
    // the child, and the shim itself ignores SIGPIPE and blocks SIGCHLD;
    // none of that may reach the container.
    let c = Fixture::new(&["cat", "/proc/self/status"], |_| {});
    c.run(false);
    assert_eq!(c.wait_exit().exit_code, 0);
    let lines = stream(&c.log(), "stdout");
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|(_, l)| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
    };
    assert_eq!(field("SigIgn:"), "0000000000000000");
    assert_eq!(field("SigBlk:"), "0000000000000000");
}
