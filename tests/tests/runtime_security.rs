//! Hardening: no runtime fd leaks into the container (CVE-2024-21626 class),
//! the runtime's binary cannot be reached through /proc/self/exe
//! (CVE-2019-5736 class).

use std::os::unix::fs::PermissionsExt;

use husk_tests::oci::{Bundle, Runtime, is_husk};
use husk_tests::require_root;

/// The fds of the container's pid 1 (`ls -l /proc/self/fd` run as pid 1),
/// without the one `ls` itself holds on the directory it lists.
fn fds_of_pid1(out: &str) -> Vec<(u32, String)> {
    out.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .filter(|(_, t)| t != "/proc/1/fd")
        .collect()
}

#[test]
fn only_stdio_is_open_in_the_container() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["ls", "-l", "/proc/self/fd"]);
    let out = rt.ok(&["run", "--bundle", b.path_str(), "f1"]);
    let fds: Vec<u32> = fds_of_pid1(&out).into_iter().map(|f| f.0).collect();
    assert_eq!(fds, [0, 1, 2], "{out}");
}

#[test]
fn preserve_fds_passes_exactly_the_extra_fds() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["ls", "-l", "/proc/self/fd"]);
    let f = b.path().join("extra");
    std::fs::write(&f, "from-fd-3\n").unwrap();
    let file = std::fs::File::open(&f).unwrap();
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = file.as_raw_fd();
    let mut cmd = rt.cmd(&["run", "--preserve-fds", "1", "--bundle", b.path_str(), "f2"]);
    // SAFETY: dup2 in the child before exec puts our file at fd 3.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly.
            if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fds = fds_of_pid1(&out);
    let nums: Vec<u32> = fds.iter().map(|f| f.0).collect();
    assert_eq!(nums, [0, 1, 2, 3], "{out}");
    assert!(fds[3].1.ends_with("/extra"), "{out}");
}

#[test]
fn proc_self_exe_does_not_reach_the_runtime() {
    require_root!();
    let rt = Runtime::new();
    let runtime = rt.bin().to_path_buf();
    let before = std::fs::read(&runtime).unwrap();
    // The entrypoint is a script whose interpreter is /proc/self/exe: at the
    // moment of its execve that is whatever the runtime exec'd from. It must
    // not be the runtime's binary on the host, and nothing in the container
    // may be able to write that binary.
    let b = Bundle::new(&rt, "c", &["/evil"]);
    let evil = b.rootfs().join("evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = rt.out(&["run", "--bundle", b.path_str(), "e1"]);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        std::fs::read(&runtime).unwrap(),
        before,
        "runtime binary changed"
    );
    if is_husk() {
        // husk execs through a sealed trampoline, which refuses to run
        // without its marker: exit 126, and husk's own CLI never ran.
        assert_eq!(o.status.code(), Some(126), "{stdout}{stderr}");
        assert!(!stderr.contains("Usage"), "{stderr}");
    }
}

#[test]
fn runtime_image_processes_are_not_dumpable_and_exe_is_sealed() {
    require_root!();
    if !is_husk() {
        husk_tests::skip!("husk-only", "checks husk's own trampoline");
    }
    let rt = Runtime::new();
    // The created container's init is still the runtime's image (waiting on
    // the exec fifo): nothing may open its exe or memory.
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    rt.ok(&["create", "--bundle", b.path_str(), "d1"]);
    let pid = rt.state("d1")["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "Uid:\t0\t0\t0\t0"), "{status}");
    // Root without CAP_SYS_PTRACE, whose capabilities are a superset of the
    // init's, may read the exe of any uid-0 process that is dumpable: only
    // non-dumpability keeps it out. (An unprivileged uid could never read a
    // uid-0 process's exe, dumpable or not.)
    let without_ptrace = |cmd: &str| {
        std::process::Command::new("setpriv")
            .args(["--inh-caps=-all", "--bounding-set=-sys_ptrace", "--"])
            .args(["sh", "-c", cmd])
            .output()
            .unwrap()
    };
    let readlink = |pid: i64| {
        let out = without_ptrace(&format!("readlink /proc/{pid}/exe || echo denied"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The control: a dumpable uid-0 process with the same capabilities.
    let mut control = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-sys_ptrace",
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    let seen = readlink(control.id() as i64);
    let _ = control.kill();
    let _ = control.wait();
    assert!(seen.ends_with("sleep"), "control process readable: {seen}");
    assert_eq!(readlink(pid), "denied");
    rt.ok(&["start", "d1"]);
    rt.wait_status("d1", "running");
    // After start the init is the user's program, exec'd from the sealed
    // trampoline: its exe is busybox in the container, and the trampoline
    // itself never was the runtime binary.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        if exe.ends_with("bin/busybox") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", exe.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rt.ok(&["delete", "--force", "d1"]);
}
