use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;
use serde_json::json;

use super::*;

fn sh(script: &str) -> Hook {
    serde_json::from_value(json!({"path": "/bin/sh", "args": ["sh", "-c", script]}))
        .expect("hook parses")
}

fn hook(v: serde_json::Value) -> Hook {
    serde_json::from_value(v).expect("hook parses")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn kinds_display_their_oci_names() {
    let names: Vec<String> = [
        HookKind::Prestart,
        HookKind::CreateRuntime,
        HookKind::CreateContainer,
        HookKind::StartContainer,
        HookKind::Poststart,
        HookKind::Poststop,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        names,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
}

#[test]
fn hooks_run_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let hooks: Vec<Hook> = ["one", "two", "three"]
        .iter()
        .map(|n| sh(&format!("echo {n} >> {}", log.display())))
        .collect();
    run(HookKind::CreateRuntime, &hooks, b"{}").expect("hooks succeed");
    assert_eq!(read(&log), "one\ntwo\nthree\n");
}

#[test]
fn state_json_arrives_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdin");
    let state = br#"{"ociVersion":"1.0.2","id":"c1","status":"created","pid":42,"bundle":"/b"}"#;
    run(
        HookKind::Poststart,
        &[sh(&format!("cat > {}", out.display()))],
        state,
    )
    .expect("hook succeeds");
    assert_eq!(read(&out).as_bytes(), state);
}

#[test]
fn a_hook_that_ignores_a_large_stdin_does_not_block() {
    let state = vec![b'x'; 4 << 20];
    run(HookKind::Poststop, &[sh("exit 0")], &state).expect("hook succeeds");
}

#[test]
fn args_zero_is_argv0_and_env_is_the_whole_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (argv, env) = (dir.path().join("argv"), dir.path().join("env"));
    let h = hook(json!({
        "path": "/bin/sh",
        "args": ["my-hook-name", "-c",
                 format!("tr '\\0' ' ' < /proc/$$/cmdline > {}; env > {}", argv.display(), env.display())],
        "env": ["HOOK_A=1", "HOOK_B=two words"]
    }));
    run(HookKind::StartContainer, &[h], b"{}").expect("hook succeeds");
    assert!(
        read(&argv).starts_with("my-hook-name -c "),
        "{}",
        read(&argv)
    );
    let env = read(&env);
    assert!(env.lines().any(|l| l == "HOOK_A=1"), "{env}");
    assert!(env.lines().any(|l| l == "HOOK_B=two words"), "{env}");
    assert!(
        !env.lines().any(|l| l.starts_with("PATH=")),
        "caller's env leaked: {env}"
    );
}

#[test]
fn without_env_the_hook_inherits_the_callers_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join("env");
    run(
        HookKind::Prestart,
        &[sh(&format!("env > {}", env.display()))],
        b"{}",
    )
    .expect("hook succeeds");
    let path = std::env::var("PATH").expect("tests run with PATH");
    assert!(read(&env).lines().any(|l| l == format!("PATH={path}")));
}

#[test]
fn failure_names_kind_index_path_and_stderr_and_stops_the_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let hooks = [
        sh(&format!("echo one >> {}", log.display())),
        sh("echo boom >&2; echo some-output; exit 3"),
        sh(&format!("echo three >> {}", log.display())),
    ];
    let e = run(HookKind::CreateRuntime, &hooks, b"{}").expect_err("second hook fails");
    assert!(
        matches!(
            e,
            HookError::Failed {
                kind: HookKind::CreateRuntime,
                index: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "hooks.createRuntime[1] (/bin/sh) failed: exit status 3; stderr: boom; stdout: some-output"
    );
    assert_eq!(
        read(&log),
        "one\n",
        "hooks after the failing one must not run"
    );
}

#[test]
fn run_all_runs_every_hook_and_returns_each_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let hooks = [
        sh("exit 3"),
        sh(&format!("echo two >> {}", log.display())),
        sh("exit 4"),
        sh(&format!("echo four >> {}", log.display())),
    ];
    let errors = run_all(HookKind::Poststop, &hooks, b"{}");
    let failed: Vec<usize> = errors
        .iter()
        .map(|e| match e {
            HookError::Failed { index, .. } => *index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(failed, [0, 2]);
    assert_eq!(read(&log), "two\nfour\n");
    assert!(!HookKind::Poststart.failure_is_fatal());
    assert!(!HookKind::Poststop.failure_is_fatal());
    assert!(HookKind::CreateRuntime.failure_is_fatal());
}

#[test]
fn a_hook_killed_by_a_signal_fails() {
    let e = run(HookKind::Poststart, &[sh("kill -9 $$")], b"{}").expect_err("killed");
    assert!(e.to_string().contains("killed by signal SIGKILL"), "{e}");
}

#[test]
fn timeout_kills_the_hook_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let h = hook(json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo $$ > {}; echo waiting >&2; exec sleep 30", pidfile.display())],
        "timeout": 1
    }));
    let start = Instant::now();
    let e = run(HookKind::CreateContainer, &[h], b"{}").expect_err("times out");
    let took = start.elapsed();
    assert!(matches!(e, HookError::TimedOut { index: 0, .. }), "{e:?}");
    assert!(e.to_string().contains("timed out after 1s"), "{e}");
    assert!(e.to_string().contains("stderr: waiting"), "{e}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // The hook is gone and reaped: its pid no longer exists as our child.
    let pid: i32 = read(&pidfile).trim().parse().expect("hook wrote its pid");
    let gone = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
    assert_eq!(gone, Err(nix::errno::Errno::ECHILD));
}

#[test]
fn a_background_grandchild_holding_the_pipes_does_not_delay_the_hook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let start = Instant::now();
    let result = run(
        HookKind::Poststart,
        &[sh(&format!(
            "sleep 30 & echo $! > {}; exit 0",
            pidfile.display()
        ))],
        b"{}",
    );
    let took = start.elapsed();
    if let Ok(pid) = read(&pidfile).trim().parse::<i32>() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    result.expect("hook succeeds");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn the_waitpid_fallback_without_pidfds_runs_hooks_and_timeouts() {
    process::NO_PIDFD.with(|c| c.set(true));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("stdin");
    run(
        HookKind::Poststart,
        &[sh(&format!("cat > {}", out.display()))],
        b"state",
    )
    .expect("hook succeeds");
    assert_eq!(read(&out), "state");
    let e = run(HookKind::Poststart, &[sh("exit 4")], b"{}").expect_err("fails");
    assert!(e.to_string().contains("exit status 4"), "{e}");
    let h = hook(json!({"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 30"], "timeout": 1}));
    let e = run(HookKind::Poststart, &[h], b"{}").expect_err("times out");
    assert!(matches!(e, HookError::TimedOut { .. }), "{e:?}");
}

#[test]
fn a_missing_binary_is_a_spawn_error_naming_the_path() {
    let h = hook(json!({"path": "/nonexistent/hook"}));
    let e = run(HookKind::Poststop, &[h], b"{}").expect_err("cannot start");
    assert!(
        e.to_string()
            .starts_with("hooks.poststop[0] (/nonexistent/hook): start:"),
        "{e}"
    );
}

#[test]
fn invalid_hooks_are_refused_before_any_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let first = sh(&format!("echo ran >> {}", log.display()));
    for (bad, field) in [
        (
            hook(json!({"path": "relative/hook"})),
            "hooks.createRuntime[1].path",
        ),
        (
            hook(json!({"path": "/bin/true", "timeout": 0})),
            "hooks.createRuntime[1].timeout",
        ),
        (
            hook(json!({"path": "/bin/true", "timeout": -5})),
            "hooks.createRuntime[1].timeout",
        ),
        (
            hook(json!({"path": "/bin/true", "env": ["OK=1", "NOEQUALS"]})),
            "hooks.createRuntime[1].env",
        ),
    ] {
        let e = run(HookKind::CreateRuntime, &[first.clone(), bad], b"{}").expect_err("invalid");
        assert!(e.to_string().starts_with(&format!("{field}: ")), "{e}");
    }
    assert_eq!(read(&log), "", "nothing may run when a hook is invalid");
}
