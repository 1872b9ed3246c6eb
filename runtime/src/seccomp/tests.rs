use std::ffi::CString;

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use super::*;

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

fn err_text(v: serde_json::Value) -> String {
    validate(&profile(v))
        .expect_err("profile must be rejected")
        .to_string()
}

/// Fork, load `prog` in the child (allocation-free, as the runtime's init
/// does), run `f` there and exit with its result.
fn in_child(prog: &SeccompProgram, f: impl FnOnce() -> i32) -> WaitStatus {
    // SAFETY: the child only calls async-signal-safe functions (prctl,
    // seccomp, the syscall under test, _exit); everything it touches was
    // allocated before the fork.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = match prog.load() {
                Ok(()) => f(),
                Err(_) => 200,
            };
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}

/// mkdir(path, mode) in the child: 0 on success, else errno.
fn mkdir(path: &CString, mode: libc::mode_t) -> i32 {
    // SAFETY: path is a valid NUL-terminated string owned by the caller.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } == 0 {
        0
    } else {
        errno()
    }
}

fn tmp_path(dir: &tempfile::TempDir, name: &str) -> CString {
    CString::new(dir.path().join(name).into_os_string().into_encoded_bytes()).expect("no NUL")
}

#[test]
fn compiles_a_typical_profile() {
    let prog = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 30},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["kexec_load"], "action": "SCMP_ACT_TRAP"},
            {"names": ["acct"], "action": "SCMP_ACT_LOG"},
            {"names": ["reboot"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["swapon"], "action": "SCMP_ACT_KILL"},
            {"names": ["swapoff"], "action": "SCMP_ACT_KILL_THREAD"}
        ]
    })))
    .expect("profile compiles");
    assert!(prog.len() > 10, "a real program, got {} insns", prog.len());
    assert_eq!(
        prog.flags(),
        (libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_TSYNC) as u32
    );
}

#[test]
fn unknown_syscalls_are_skipped_like_runc() {
    let base = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
    let with_unknown = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "no_such_syscall_42"], "action": "SCMP_ACT_ERRNO"}]});
    let a = compile(&profile(base)).expect("base compiles");
    let b = compile(&profile(with_unknown)).expect("unknown name is skipped");
    assert_eq!(a.len(), b.len());
}

#[test]
fn rules_with_the_default_action_are_dropped() {
    let a = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).expect("compiles");
    let b = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]})))
    .expect("compiles");
    assert_eq!(a.len(), b.len());
}

#[test]
fn notify_is_refused_naming_the_field() {
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["rmdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[1].action:"), "{e}");
    assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
    let e = err_text(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(e.starts_with("linux.seccomp.defaultAction:"), "{e}");
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[0].errnoRet:"), "{e}");
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}));
    assert!(e.starts_with("linux.seccomp.defaultErrnoRet:"), "{e}");
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(
        e.starts_with("linux.seccomp.syscalls[1].args[1].index:"),
        "{e}"
    );
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(e.starts_with("linux.seccomp.syscalls[0].names:"), "{e}");
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
    assert!(e.starts_with("linux.seccomp.flags[1]:"), "{e}");
    let e = err_text(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}));
    assert!(e.starts_with("linux.seccomp.listenerPath:"), "{e}");
}

#[test]
fn raw_json_errors_name_the_field() {
    let calls = |action: &str| {
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["b"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["c"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["d"], "action": action}]})
    };
    let e = validate_json(&calls("SCMP_ACT_FOO"))
        .expect_err("unknown action")
        .to_string();
    assert_eq!(
        e,
        r#"linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO""#
    );
    validate_json(&calls("SCMP_ACT_LOG")).expect("known action parses");

    let e = validate_json(&json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]}))
    .expect_err("unknown arch")
    .to_string();
    assert_eq!(
        e,
        r#"linux.seccomp.architectures[1]: unknown architecture "SCMP_ARCH_VAX""#
    );

    let e = validate_json(&json!({"defaultAction": "SCMP_ACT_BLOCK"}))
        .expect_err("unknown default")
        .to_string();
    assert!(e.starts_with("linux.seccomp.defaultAction:"), "{e}");

    let e = validate_json(&json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_ABOUT"}]}]}))
    .expect_err("unknown op")
    .to_string();
    assert!(
        e.starts_with("linux.seccomp.syscalls[0].args[0].op:"),
        "{e}"
    );

    let e = validate_json(
        &json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]}),
    )
    .expect_err("unknown flag")
    .to_string();
    assert!(e.starts_with("linux.seccomp.flags[0]:"), "{e}");
}

#[test]
fn denied_mkdir_returns_eperm_by_default_and_errno_ret_when_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp_path(&dir, "a"), tmp_path(&dir, "b"));

    let deny = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}),
    ))
    .expect("compiles");
    assert_eq!(in_child(&deny, || mkdir(&a, 0o755)).exit(), libc::EPERM);
    assert!(!dir.path().join("a").exists());

    let custom = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EROFS}]}),
    ))
    .expect("compiles");
    assert_eq!(in_child(&custom, || mkdir(&b, 0o755)).exit(), libc::EROFS);

    // Without a filter the same call succeeds: the test can tell the difference.
    let allow = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).expect("compiles");
    assert_eq!(in_child(&allow, || mkdir(&b, 0o755)).exit(), 0);
    assert!(dir.path().join("b").is_dir());
}

#[test]
fn argument_conditions_select_the_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp_path(&dir, "a"), tmp_path(&dir, "b"));
    // mkdir(path, mode): deny only mode 0700 (arg 1), on both mkdir and mkdirat(dirfd, path, mode).
    let prog = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
         "args": [{"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
         "args": [{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}]}]}),
    ))
    .expect("compiles");
    let status = in_child(&prog, || {
        let denied = mkdir(&a, 0o700);
        let allowed = mkdir(&b, 0o755);
        if denied == libc::EACCES && allowed == 0 {
            0
        } else {
            100 + denied
        }
    });
    assert_eq!(status.exit(), 0, "{status:?}");
    assert!(!dir.path().join("a").exists());
    assert!(dir.path().join("b").is_dir());
}

#[test]
fn masked_eq_compares_the_masked_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp_path(&dir, "a"), tmp_path(&dir, "b"));
    // Deny when the group-write bit (0o020) of the mode is set.
    let rule = |name: &str, index: usize| {
        json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOTSUP,
               "args": [{"index": index, "value": 0o020, "valueTwo": 0o020, "op": "SCMP_CMP_MASKED_EQ"}]})
    };
    let prog = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [rule("mkdir", 1), rule("mkdirat", 2)]})))
    .expect("compiles");
    let status = in_child(&prog, || {
        let denied = mkdir(&a, 0o775);
        let allowed = mkdir(&b, 0o755);
        if denied == libc::ENOTSUP && allowed == 0 {
            0
        } else {
            100 + denied
        }
    });
    assert_eq!(status.exit(), 0, "{status:?}");
}

#[test]
fn default_errno_ret_applies_to_unlisted_calls() {
    let prog = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": libc::ENOSYS,
        "syscalls": [{"names": ["exit", "exit_group", "rt_sigreturn"], "action": "SCMP_ACT_ALLOW"}]})))
    .expect("compiles");
    let status = in_child(&prog, || {
        // SAFETY: getppid takes no arguments.
        let rc = unsafe { libc::syscall(libc::SYS_getppid) };
        if rc == -1 { errno() } else { 0 }
    });
    assert_eq!(status.exit(), libc::ENOSYS);
}

#[test]
fn kill_process_ends_the_child_with_sigsys() {
    let prog = compile(&profile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
    ))
    .expect("compiles");
    let status = in_child(&prog, || {
        // SAFETY: getppid takes no arguments.
        unsafe { libc::syscall(libc::SYS_getppid) };
        0
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

trait ExitCode {
    fn exit(&self) -> i32;
}

impl ExitCode for WaitStatus {
    fn exit(&self) -> i32 {
        match self {
            WaitStatus::Exited(_, code) => *code,
            other => panic!("child did not exit normally: {other:?}"),
        }
    }
}
