//! Seccomp profiles enforced inside a busybox container run by the runtime
//! under test (husk, or `HUSK_TEST_RUNTIME=/usr/sbin/runc`).

use husk_tests::oci::{Bundle, Runtime, is_husk, run_once};
use husk_tests::require_root;
use serde_json::{Value, json};

/// Run `script` in a busybox container with `seccomp` (if any) as
/// `linux.seccomp`; returns the exit code, stdout + stderr, and the bundle.
fn run_with(seccomp: Option<Value>, script: &str) -> (i32, String, Bundle) {
    let (out, bundle) = run_once(&["sh", "-c", script], |c| {
        if let Some(s) = seccomp {
            c["linux"]["seccomp"] = s;
        }
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().unwrap_or(-1);
    (code, text, bundle)
}

fn deny(names: &[&str], extra: Value) -> Value {
    let mut rule = json!({"names": names, "action": "SCMP_ACT_ERRNO"});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW",
           "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
           "syscalls": [rule]})
}

#[test]
fn without_a_profile_mkdir_works() {
    require_root!();
    let (code, out, bundle) = run_with(None, "mkdir /tmp/made && grep Seccomp: /proc/self/status");
    assert_eq!(code, 0, "{out}");
    assert!(bundle.rootfs().join("tmp/made").is_dir(), "{out}");
    assert!(out.contains("Seccomp:\t0"), "{out}");
}

#[test]
fn denied_mkdir_fails_with_eperm_by_default() {
    require_root!();
    let (code, out, bundle) = run_with(
        Some(deny(&["mkdir", "mkdirat"], json!({}))),
        "grep Seccomp: /proc/self/status; mkdir /tmp/made",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Seccomp:\t2"), "filter mode expected: {out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(!bundle.rootfs().join("tmp/made").exists());
}

#[test]
fn denied_mkdir_fails_with_the_configured_errno() {
    require_root!();
    let (code, out, bundle) = run_with(
        Some(deny(
            &["mkdir", "mkdirat"],
            json!({"errnoRet": libc::ENOSPC}),
        )),
        "mkdir /tmp/made",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert!(!bundle.rootfs().join("tmp/made").exists());
}

#[test]
fn argument_conditions_deny_only_matching_calls() {
    require_root!();
    // kill(pid, sig): deny signal 0 only (arg 1), so `kill -0` fails while a real signal works.
    let profile = deny(
        &["kill"],
        json!({"errnoRet": libc::EACCES,
               "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}),
    );
    let (code, out, _b) = run_with(
        Some(profile),
        "trap 'echo got-usr1' USR1; kill -USR1 $$; kill -0 $$ || echo probe-denied",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("got-usr1"), "{out}");
    assert!(out.contains("probe-denied"), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
}

#[test]
fn default_errno_with_an_allow_list() {
    require_root!();
    // Everything but what sh (and the runtime before execve) needs is denied:
    // mkdir(2) then fails with defaultErrnoRet.
    let allowed: Vec<&str> = vec![
        "read",
        "write",
        "open",
        "openat",
        "close",
        "stat",
        "fstat",
        "lstat",
        "newfstatat",
        "statx",
        "poll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "pread64",
        "readv",
        "writev",
        "access",
        "pipe",
        "pipe2",
        "dup",
        "dup2",
        "dup3",
        "getpid",
        "getppid",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "fcntl",
        "wait4",
        "waitid",
        "clone",
        "clone3",
        "fork",
        "vfork",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "getcwd",
        "chdir",
        "getdents64",
        "faccessat",
        "faccessat2",
        "readlink",
        "readlinkat",
        "getrandom",
        "futex",
        "sigaltstack",
        "setpgid",
        "getpgid",
        "getpgrp",
        "setsid",
        "capget",
        "capset",
        "prctl",
        "setgroups",
        "setuid",
        "setgid",
        "setresuid",
        "setresgid",
        "nanosleep",
        "clock_nanosleep",
        "clock_gettime",
        "gettid",
        "tgkill",
        "kill",
        "madvise",
        "sched_getaffinity",
        "getrlimit",
        "umask",
        "select",
        "pselect6",
        "ppoll",
        "epoll_create1",
        "epoll_ctl",
        "epoll_wait",
        "epoll_pwait",
        "close_range",
        "fchdir",
        "sysinfo",
        "times",
        "mremap",
        // What runtimes themselves call between loading the filter and execve.
        "statfs",
        "fstatfs",
        "sched_yield",
        "openat2",
        "fchown",
        "fchmod",
        "getdents",
        "socket",
        "connect",
        "sendmsg",
        "recvmsg",
        "sendto",
        "recvfrom",
        "getsockopt",
        "setsockopt",
        "keyctl",
        "personality",
        "unshare",
        "setns",
        "mount",
        "umount2",
        "pivot_root",
        "sethostname",
        "symlink",
        "symlinkat",
        "unlinkat",
        "mknodat",
        "fsync",
        "ftruncate",
        "epoll_create",
        "epoll_pwait2",
        "eventfd2",
        "signalfd4",
        "timerfd_create",
        "pidfd_open",
        "pidfd_send_signal",
        "memfd_create",
        "sync_file_range",
    ];
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::ENOSYS,
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    });
    let (code, out, bundle) = run_with(Some(profile), "mkdir /tmp/made; echo after-mkdir");
    assert!(
        out.contains("after-mkdir"),
        "the allow list must keep sh alive: {out}"
    );
    assert!(out.contains("Function not implemented"), "{out}");
    assert!(!bundle.rootfs().join("tmp/made").exists());
    assert_eq!(code, 0, "{out}");
}

#[test]
fn kill_process_ends_the_container_with_sigsys() {
    require_root!();
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_KILL_PROCESS"}]});
    let (code, out, _b) = run_with(Some(profile), "uname -a; echo not-reached");
    assert!(!out.contains("not-reached"), "{out}");
    // The runtime reports death by signal as 128 + signal number.
    assert_eq!(code, 128 + libc::SIGSYS, "{out}");
}

/// A rejected profile fails `create` and leaves nothing behind.
fn assert_rejected(seccomp: Value, field: &str) {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&rt, "c", &["true"]);
    bundle.edit(|c| c["linux"]["seccomp"] = seccomp);
    let id = format!("badseccomp-{}", husk_tests::unique_suffix());
    let out = rt.out(&["create", "--bundle", bundle.path_str(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad profile must fail create");
    if is_husk() {
        assert!(stderr.contains(field), "error must name {field}: {stderr}");
    }
    assert!(rt.container_ids().is_empty(), "no container may be left");
    assert!(!rt.out(&["state", &id]).status.success());
    let leftover = rt.cgroup().leaf_dirs("c");
    assert!(leftover.is_empty(), "cgroup left: {leftover:?}");
}

#[test]
fn an_unknown_action_is_rejected_naming_the_field() {
    require_root!();
    assert_rejected(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["rmdir"], "action": "SCMP_ACT_EXPLODE"}]}),
        "linux.seccomp.syscalls[1].action",
    );
}

#[test]
fn an_unknown_architecture_is_rejected_naming_the_field() {
    require_root!();
    assert_rejected(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]}),
        "linux.seccomp.architectures[0]",
    );
}

#[test]
fn notify_without_an_agent_is_rejected_naming_the_field() {
    require_root!();
    assert_rejected(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        "linux.seccomp.syscalls[0].action",
    );
}

/// Calls the runtime makes while it sets the container up (cwd check, fd
/// hygiene, mounts, uid change, ...): a profile may deny every one of them,
/// as long as it lets the program itself run.
const SETUP_CALLS: &[&str] = &[
    "getcwd",
    "chdir",
    "fchdir",
    "close_range",
    "fcntl",
    "setresuid",
    "setresgid",
    "setgroups",
    "mount",
    "umount2",
    "pivot_root",
    "openat2",
    "mknodat",
    "symlinkat",
    "sethostname",
    "unshare",
    "setrlimit",
    "prlimit64",
];

#[test]
fn a_profile_denying_the_runtimes_setup_calls_still_starts_the_container() {
    require_root!();
    if !is_husk() {
        // runc 1.1 loads the filter before its own setgroups/setuid/chdir.
        eprintln!("skipped: husk-specific (runc 1.1 loads the filter before its own setup)");
        return;
    }
    for (nnp, uid) in [(false, 0), (true, 0), (false, 1000), (true, 1000)] {
        let (out, _b) = run_once(&["echo", "started"], |c| {
            c["linux"]["seccomp"] = deny(SETUP_CALLS, json!({}));
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["process"]["user"] = json!({"uid": uid, "gid": uid});
        });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "noNewPrivileges {nnp}, uid {uid}: {text}"
        );
        assert_eq!(text, "started\n", "noNewPrivileges {nnp}, uid {uid}");
    }
}

#[test]
fn a_profile_that_kills_every_call_is_reported_as_seccomp() {
    require_root!();
    for nnp in [true, false] {
        let (out, _b) = run_once(&["true"], |c| {
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"});
            c["process"]["noNewPrivileges"] = json!(nnp);
        });
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "noNewPrivileges {nnp}: {err}");
        if is_husk() {
            // Killed at its first call under the filter: 128 + SIGSYS, as
            // `run` reports any death by signal (runc fails its own init
            // then, as it loads the filter before waiting for start).
            assert_eq!(
                out.status.code(),
                Some(128 + libc::SIGSYS),
                "noNewPrivileges {nnp}: {err}"
            );
            assert!(
                err.contains("killed by seccomp (SIGSYS)"),
                "noNewPrivileges {nnp}: {err}"
            );
        }
    }
}
