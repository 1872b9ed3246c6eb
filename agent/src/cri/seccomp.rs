//! Seccomp for CRI containers: which profile a security context selects
//! (RuntimeDefault, Unconfined, Localhost), husklet's default profile, and
//! Docker-format profile files turned into the OCI form the runtime takes.
//!
//! The default profile is an allow-list (everything else fails with EPERM)
//! no wider than containerd's and moby's: the same base set, the same
//! capability-conditioned additions, `clone` without namespace flags unless
//! CAP_SYS_ADMIN, and `clone3` failing with ENOSYS (so libcs fall back to
//! `clone`, whose flags can be checked).

use k8s_cri::v1 as cri;
use serde_json::{Value, json};

use super::error::CriError;

/// What a container's seccomp comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// No filter.
    Unconfined,
    /// husklet's default profile.
    RuntimeDefault,
    /// A profile file on the node.
    Localhost(String),
}

const FIELD: &str = "config.linux.security_context.seccomp";
const FIELD_PATH: &str = "config.linux.security_context.seccomp_profile_path";

/// The profile the security context asks for. With nothing set the
/// container is unconfined, as with containerd (the kubelet always sends
/// RuntimeDefault unless the pod says Unconfined).
// seccomp_profile_path is deprecated but still what older clients send.
#[allow(deprecated)]
pub fn choose(sc: Option<&cri::LinuxContainerSecurityContext>) -> Result<Choice, CriError> {
    let Some(sc) = sc else {
        return Ok(Choice::Unconfined);
    };
    if let Some(p) = &sc.seccomp {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => Ok(Choice::RuntimeDefault),
            Ok(cri::security_profile::ProfileType::Unconfined) => Ok(Choice::Unconfined),
            Ok(cri::security_profile::ProfileType::Localhost) => {
                let path = p
                    .localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(&p.localhost_ref);
                if !path.starts_with('/') {
                    return Err(CriError::invalid(
                        format!("{FIELD}.localhost_ref"),
                        format!("{:?} is not an absolute path", p.localhost_ref),
                    ));
                }
                Ok(Choice::Localhost(path.to_string()))
            }
            Err(_) => Err(CriError::invalid(
                format!("{FIELD}.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    match sc.seccomp_profile_path.as_str() {
        "" | "unconfined" => Ok(Choice::Unconfined),
        "runtime/default" | "docker/default" => Ok(Choice::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(p) if p.starts_with('/') => Ok(Choice::Localhost(p.to_string())),
            _ => Err(CriError::invalid(
                FIELD_PATH,
                format!(
                    "{other:?} is none of runtime/default, docker/default, unconfined, \
                     localhost/<absolute path>"
                ),
            )),
        },
    }
}

/// The OCI `linux.seccomp` for `choice` (None: unconfined); `caps` is the
/// container's bounding set, which widens the default profile as moby's.
pub fn profile(choice: &Choice, caps: &[String]) -> Result<Option<Value>, CriError> {
    match choice {
        Choice::Unconfined => Ok(None),
        Choice::RuntimeDefault => Ok(Some(default_profile(std::env::consts::ARCH, caps))),
        Choice::Localhost(path) => {
            let field = format!("{FIELD}.localhost_ref");
            let data = std::fs::read(path).map_err(|e| {
                CriError::invalid(&field, format!("read the profile {path:?}: {e}"))
            })?;
            let v: Value = serde_json::from_slice(&data).map_err(|e| {
                CriError::invalid(&field, format!("profile {path:?} is not JSON: {e}"))
            })?;
            from_docker(&v, std::env::consts::ARCH, caps)
                .map(Some)
                .map_err(|why| CriError::invalid(&field, format!("profile {path:?}: {why}")))
        }
    }
}

/// The seccomp architectures a process of `arch` may use.
fn arches(arch: &str) -> Vec<&'static str> {
    match arch {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => vec!["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
        _ => vec![],
    }
}

/// Allowed for everyone, whitespace-separated (names unknown on this arch
/// are skipped by the runtime).
const BASE: &str = "\
    accept accept4 access alarm bind brk capget capset chdir chmod chown chown32 \
    clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep \
    clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 \
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait \
    epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 \
    fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 \
    fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr \
    fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 \
    futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid \
    geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp \
    getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 \
    getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid \
    gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 \
    inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents \
    io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule \
    landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat \
    listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise \
    membarrier memfd_create mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap \
    mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 \
    mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync \
    munlock munlockall munmap nanosleep newfstatat _newselect open openat openat2 pause \
    pidfd_open pidfd_send_signal pipe pipe2 poll ppoll ppoll_time64 prctl pread64 preadv \
    preadv2 prlimit64 pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead \
    readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg \
    remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq \
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend \
    rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr \
    sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler \
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr \
    sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop \
    semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid \
    setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid \
    setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid \
    setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address \
    setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd \
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 \
    statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create \
    timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime \
    timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime \
    timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat \
    utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev";

/// Additions for a capability in the bounding set.
const BY_CAP: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Namespace flags a `clone` without CAP_SYS_ADMIN must not carry.
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// husklet's default profile for `arch` and a bounding set `caps`.
pub fn default_profile(arch: &str, caps: &[String]) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let allow = |names: &[&str]| json!({"names": names, "action": "SCMP_ACT_ALLOW"});
    let base: Vec<&str> = BASE.split_whitespace().collect();
    let mut rules = vec![allow(&base)];
    // socket(2) except AF_VSOCK (host communication, as moby).
    rules.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": libc::AF_VSOCK, "op": "SCMP_CMP_NE"}]}));
    // personality(2): only the harmless personas (Linux, 32-bit, query).
    for persona in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}));
    }
    match arch {
        "x86_64" => rules.push(allow(&["arch_prctl", "modify_ldt"])),
        "aarch64" => rules.push(allow(&[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ])),
        _ => {}
    }
    for (cap, names) in BY_CAP {
        if has(cap) {
            rules.push(allow(names));
        }
    }
    if !has("CAP_SYS_ADMIN") {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        // clone3's flags live in memory seccomp cannot read: ENOSYS makes
        // the libc fall back to clone, which is checked above.
        rules.push(
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}),
        );
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": arches(arch),
        "syscalls": rules,
    })
}

/// A Docker-format profile (`name`/`names`, `includes`/`excludes` by caps
/// and arches, `archMap`) as an OCI `linux.seccomp`; an OCI profile passes
/// through unchanged.
pub fn from_docker(v: &Value, arch: &str, caps: &[String]) -> Result<Value, String> {
    let obj = v.as_object().ok_or("not a JSON object")?;
    let default_action = obj
        .get("defaultAction")
        .and_then(Value::as_str)
        .ok_or("defaultAction is missing")?;
    let mut out = serde_json::Map::new();
    out.insert("defaultAction".into(), default_action.into());
    for k in [
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if let Some(x) = obj.get(k) {
            out.insert(k.into(), x.clone());
        }
    }
    let mut architectures: Vec<Value> = obj
        .get("architectures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(map) = obj.get("archMap").and_then(Value::as_array) {
        let native = match arch {
            "x86_64" => "SCMP_ARCH_X86_64",
            "aarch64" => "SCMP_ARCH_AARCH64",
            _ => "",
        };
        for (i, m) in map.iter().enumerate() {
            let a = m
                .get("architecture")
                .and_then(Value::as_str)
                .ok_or(format!("archMap[{i}].architecture is missing"))?;
            if a == native {
                architectures.push(a.into());
                if let Some(subs) = m.get("subArchitectures").and_then(Value::as_array) {
                    architectures.extend(subs.iter().cloned());
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    architectures.retain(|a| seen.insert(a.to_string()));
    if !architectures.is_empty() {
        out.insert("architectures".into(), architectures.into());
    }
    let mut rules = vec![];
    for (i, s) in obj
        .get("syscalls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let so = s
            .as_object()
            .ok_or(format!("syscalls[{i}] is not an object"))?;
        if !applies(so.get("includes"), arch, caps, true)
            || applies(so.get("excludes"), arch, caps, false)
        {
            continue;
        }
        let mut names: Vec<Value> = so
            .get("names")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(n) = so.get("name") {
            names.push(n.clone());
        }
        if names.is_empty() {
            return Err(format!("syscalls[{i}] has no name or names"));
        }
        let mut r = serde_json::Map::new();
        r.insert("names".into(), names.into());
        for k in ["action", "errnoRet", "args"] {
            if let Some(x) = so.get(k).filter(|x| !x.is_null()) {
                r.insert(k.into(), x.clone());
            }
        }
        if !r.contains_key("action") {
            return Err(format!("syscalls[{i}].action is missing"));
        }
        rules.push(Value::Object(r));
    }
    out.insert("syscalls".into(), rules.into());
    Ok(Value::Object(out))
}

/// Whether a Docker `includes`/`excludes` filter matches: every listed
/// condition holds (caps: all in the set; arches: ours among them).
/// `empty` is the answer for a missing or empty filter.
fn applies(filter: Option<&Value>, arch: &str, caps: &[String], empty: bool) -> bool {
    let Some(f) = filter.and_then(Value::as_object).filter(|f| !f.is_empty()) else {
        return empty;
    };
    let list = |k: &str| -> Vec<String> {
        f.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (fcaps, farches) = (list("caps"), list("arches"));
    if fcaps.is_empty() && farches.is_empty() {
        return empty;
    }
    let docker_arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    fcaps.iter().all(|c| caps.contains(c))
        && (farches.is_empty() || farches.iter().any(|a| a == docker_arch || a == arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Value) -> Vec<String> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn default_profile_denies_namespace_and_key_syscalls_without_caps() {
        let p = default_profile("x86_64", &["CAP_CHOWN".into()]);
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], libc::EPERM);
        let n = names(&p);
        for denied in [
            "unshare", "mount", "setns", "keyctl", "add_key", "ptrace", "bpf", "clone3", "reboot",
        ] {
            assert!(!n.iter().any(|x| x == denied), "{denied} allowed");
        }
        assert!(n.iter().any(|x| x == "arch_prctl"));
        let a = default_profile("aarch64", &[]);
        assert_eq!(
            a["architectures"],
            json!(["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"])
        );
        assert!(!names(&a).iter().any(|x| x == "arch_prctl"));
    }

    #[test]
    fn sys_admin_widens_the_default_profile() {
        let p = default_profile("x86_64", &["CAP_SYS_ADMIN".into()]);
        let n = names(&p);
        assert!(n.iter().any(|x| x == "unshare") && n.iter().any(|x| x == "clone3"));
        assert!(!p.to_string().contains("SCMP_CMP_MASKED_EQ"));
    }

    #[test]
    fn docker_profiles_are_filtered_by_caps_and_arch() {
        let d = json!({"defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"name": "read", "action": "SCMP_ACT_ALLOW", "args": null},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}}]});
        let p = from_docker(&d, "x86_64", &[]).unwrap();
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(names(&p), ["read", "clone", "arch_prctl"]);
        let p = from_docker(
            &d,
            "aarch64",
            &["CAP_SYS_PTRACE".into(), "CAP_SYS_ADMIN".into()],
        )
        .unwrap();
        assert_eq!(names(&p), ["read", "ptrace"]);
        let e = from_docker(&json!({"syscalls": []}), "x86_64", &[]).unwrap_err();
        assert!(e.contains("defaultAction"), "{e}");
    }

    #[test]
    #[allow(deprecated)]
    fn profile_choice_names_the_field() {
        let sc = |path: &str| cri::LinuxContainerSecurityContext {
            seccomp_profile_path: path.into(),
            ..Default::default()
        };
        assert_eq!(
            choose(Some(&sc("runtime/default"))).unwrap(),
            Choice::RuntimeDefault
        );
        assert_eq!(choose(Some(&sc(""))).unwrap(), Choice::Unconfined);
        assert_eq!(
            choose(Some(&sc("localhost//p.json"))).unwrap(),
            Choice::Localhost("/p.json".into())
        );
        let e = choose(Some(&sc("bogus"))).unwrap_err().to_string();
        assert!(e.starts_with(FIELD_PATH), "{e}");
        let lh = cri::LinuxContainerSecurityContext {
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: "rel.json".into(),
            }),
            ..Default::default()
        };
        let e = choose(Some(&lh)).unwrap_err().to_string();
        assert!(
            e.starts_with("config.linux.security_context.seccomp.localhost_ref"),
            "{e}"
        );
        let e = profile(&Choice::Localhost("/nonexistent/p.json".into()), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("localhost_ref") && e.contains("/nonexistent/p.json"),
            "{e}"
        );
    }
}
