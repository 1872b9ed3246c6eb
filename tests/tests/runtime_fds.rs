//! What a container can reach of the host through the runtime's processes:
//! only the fds the caller passed (`--preserve-fds`, CVE-2024-21626 class),
//! no host fd held by a husk process in the container's pid namespace (the
//! created init, the helper `exec` clones in), and no writable
//! `/proc/<pid>/exe` of one (CVE-2019-5736 class). The attacks are run from
//! a second container that shares the victim's pid namespace (as pods with
//! `shareProcessNamespace` do) with CAP_SYS_PTRACE.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use husk_tests::oci::{Bundle, Runtime, default_config, is_husk, runtime_bin};
use husk_tests::{require_root, wait_for};
use serde_json::json;

/// What a host file in the victim's state dir holds: the attacker must never read it.
const SECRET: &str = "host-secret-5c1e";

/// The fds of the process that ran `ls -l /proc/self/fd` (pid 1), less the
/// one `ls` holds on the directory it lists.
fn fds_listed(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            (!target.starts_with("/proc/")).then_some(fd)
        })
        .collect()
}

#[test]
fn preserve_fds_passes_only_fds_the_caller_passed() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(
        &rt,
        "c",
        &[
            "sh",
            "-c",
            "ls -l /proc/self/fd; ls /proc/self/fd/3/ /proc/self/fd/4/",
        ],
    );
    // Nothing passed: --preserve-fds 2 must not hand over whatever the
    // runtime itself opened at 3 and 4 (its state dir, once).
    let o = rt.out(&["run", "--preserve-fds", "2", "--bundle", b.path_str(), "p1"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(fds_listed(&out), [0, 1, 2], "{out}");
    assert!(
        !out.contains("config.json") && !out.contains("state.json"),
        "{out}"
    );

    // fd 3 passed, 4 not: the container gets 3 alone.
    let extra = b.path().join("extra");
    std::fs::write(&extra, "passed\n").unwrap();
    let file = File::open(&extra).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut cmd = rt.cmd(&["run", "--preserve-fds", "2", "--bundle", b.path_str(), "p2"]);
    // SAFETY: dup2/fcntl/close in the child before exec put our file at fd 3 alone.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(4);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(fds_listed(&out), [0, 1, 2, 3], "{out}");
    assert!(out.contains("/extra"), "{out}");
    assert!(!out.contains("state.json"), "{out}");
}

/// A copy of the runtime under test in a temp dir (the attack tries to
/// overwrite it) with a state root and cgroups of the test's own.
struct Husk {
    rt: Runtime,
    dir: tempfile::TempDir,
}

impl Husk {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-bin-")
            .tempdir()
            .unwrap();
        std::fs::copy(runtime_bin(), dir.path().join("husk")).unwrap();
        Husk {
            rt: Runtime::new(),
            dir,
        }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("husk")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin());
        c.arg("--root").arg(self.rt.root()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run to completion; output through files (detached containers keep
    /// the runtime's stdio open).
    fn out(&self, args: &[&str]) -> Output {
        let (out, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
        let status = self
            .cmd(args)
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    fn ok(&self, args: &[&str]) {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// The attacker's script: wait for a pid (in the shared pid namespace), try
/// to reach the host through that process's fds, open its exe, and once
/// told to, append to the exe through the reopened fd.
const ATTACK: &str = r#"
while [ ! -s /shared/pid ]; do sleep 0.05; done
pid=$(cat /shared/pid)
ls -l /proc/$pid/fd/ > /shared/fds 2>&1
for f in /proc/$pid/fd/*; do
  cat $f/marker; ls $f/; echo pwned > $f/pwned
  cat $f/../marker; echo pwned > $f/../pwned
done > /shared/read 2>&1
exec 9< /proc/$pid/exe && readlink /proc/$$/fd/9 > /shared/exe
touch /shared/tried
while [ ! -e /shared/go ]; do sleep 0.05; done
(echo pwned >> /proc/$$/fd/9) 2> /shared/write-error; echo $? > /shared/wrote
exec sleep 300
"#;

/// Start the attacker container: CAP_SYS_PTRACE (and DAC override), in
/// the pid namespace of the victim's init `victim_pid`, /shared from the host.
fn start_attacker(h: &Husk, victim_pid: i64, shared: &Path) -> Bundle {
    let mut config = default_config(&h.rt.cgroup().path("attacker"), &["sh", "-c", ATTACK]);
    let caps = json!([
        "CAP_SYS_PTRACE",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_KILL"
    ]);
    config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    let ns = config["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        if n["type"] == "pid" {
            n["path"] = json!(format!("/proc/{victim_pid}/ns/pid"));
        }
    }
    config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/shared", "type": "bind", "source": shared, "options": ["rbind", "rw"]}),
    );
    let b = Bundle::from_config(config);
    husk_tests::rootfs::busybox_rootfs(&b.rootfs());
    h.ok(&["run", "-d", "--bundle", b.path_str(), "attacker"]);
    b
}

/// A host pid as the pid namespace it is in sees it (NSpid's last field).
fn ns_pid(host_pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().to_string()
}

/// What the attacker got; asserts it reached nothing of the host and could
/// not write the runtime's binary.
fn assert_attack_failed(h: &Husk, shared: &Path, victim: &str, binary_before: &[u8]) {
    wait_for("the attacker's write", 20, || shared.join("wrote").exists());
    let read = std::fs::read_to_string(shared.join("read")).unwrap_or_default();
    let fds = std::fs::read_to_string(shared.join("fds")).unwrap_or_default();
    let exe = std::fs::read_to_string(shared.join("exe")).unwrap_or_default();
    let wrote = std::fs::read_to_string(shared.join("wrote")).unwrap_or_default();
    let werr = std::fs::read_to_string(shared.join("write-error")).unwrap_or_default();
    let report = format!("fds:\n{fds}\nread:\n{read}\nexe: {exe}\nwrite: {wrote} {werr}");
    assert!(!read.contains(SECRET), "host file read: {report}");
    let state_dir = h.rt.state_dir(victim);
    assert!(
        !state_dir.join("pwned").exists() && !h.rt.root().join("pwned").exists(),
        "host file written: {report}"
    );
    assert_eq!(
        std::fs::read(h.bin()).unwrap(),
        binary_before,
        "runtime binary changed: {report}"
    );
    assert_ne!(wrote.trim(), "0", "{report}");
    if is_husk() {
        // Refused because the binary is on a read-only view, not merely
        // because some process still ran it (ETXTBSY).
        assert!(werr.contains("Read-only file system"), "{report}");
    }
}

/// Delete the attacker, reap it (the test is its subreaper: the victim's
/// init, pid 1 of the namespace it shared, waits for that), then the victim.
fn delete_both(h: &Husk) {
    h.ok(&["delete", "--force", "attacker"]);
    // SAFETY: waitpid with WNOHANG reaps exited children only.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    h.ok(&["delete", "--force", "victim"]);
}

/// The victim's cgroup directory that freezes: v1 freezer, or v2.
fn freezer(rt: &Runtime, leaf: &str) -> (PathBuf, &'static str, &'static str, &'static str) {
    for d in rt.cgroup().leaf_dirs(leaf) {
        if d.join("freezer.state").exists() {
            return (d, "freezer.state", "FROZEN", "THAWED");
        }
        if d.join("cgroup.freeze").exists() {
            return (d, "cgroup.freeze", "1", "0");
        }
    }
    panic!("no freezer for {leaf}");
}

#[test]
fn created_init_gives_a_ptracer_no_host_fd_and_no_writable_exe() {
    require_root!();
    let h = Husk::new();
    let before = std::fs::read(h.bin()).unwrap();
    let shared = tempfile::tempdir().unwrap();
    let victim = Bundle::new(&h.rt, "victim", &["sleep", "300"]);
    h.ok(&["create", "--bundle", victim.path_str(), "victim"]);
    std::fs::write(h.rt.state_dir("victim").join("marker"), SECRET).unwrap();
    let pid = h.rt.state("victim")["pid"].as_i64().unwrap();
    let _attacker = start_attacker(&h, pid, shared.path());
    // The created init is pid 1 of the namespace the attacker shares.
    std::fs::write(shared.path().join("pid"), "1").unwrap();
    wait_for("the attacker's try", 20, || {
        shared.path().join("tried").exists()
    });
    // Start: the init execs its program; no husk process runs the binary now.
    h.ok(&["start", "victim"]);
    h.rt.wait_status("victim", "running");
    std::fs::write(shared.path().join("go"), "").unwrap();
    assert_attack_failed(&h, shared.path(), "victim", &before);
    delete_both(&h);
}

#[test]
fn exec_helper_gives_a_ptracer_no_host_fd_and_no_writable_exe() {
    require_root!();
    let h = Husk::new();
    let before = std::fs::read(h.bin()).unwrap();
    let shared = tempfile::tempdir().unwrap();
    let victim = Bundle::new(&h.rt, "victim", &["sleep", "300"]);
    h.ok(&["run", "-d", "--bundle", victim.path_str(), "victim"]);
    std::fs::write(h.rt.state_dir("victim").join("marker"), SECRET).unwrap();
    let init = h.rt.state("victim")["pid"].as_i64().unwrap();
    let _attacker = start_attacker(&h, init, shared.path());
    // Freeze the victim's cgroup: the helper `exec` clones into the
    // container stops there, holding what it holds, visible to the attacker.
    let (dir, file, frozen, thawed) = freezer(&h.rt, "victim");
    std::fs::write(dir.join(file), frozen).unwrap();
    let mut exec = h
        .cmd(&["exec", "victim", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut helper = 0;
    wait_for("the exec helper in the container's cgroup", 20, || {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        helper = procs
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .find(|&p| i64::from(p) != init)
            .unwrap_or(0);
        helper > 0
    });
    std::fs::write(shared.path().join("pid"), ns_pid(helper)).unwrap();
    wait_for("the attacker's try", 20, || {
        shared.path().join("tried").exists()
    });
    std::fs::write(dir.join(file), thawed).unwrap();
    let st = exec.wait().unwrap();
    assert!(st.success(), "{st:?}");
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(shared.path().join("go"), "").unwrap();
    assert_attack_failed(&h, shared.path(), "victim", &before);
    if is_husk() {
        // The helper ran from a read-only view of the binary.
        let exe = std::fs::read_to_string(shared.path().join("exe")).unwrap_or_default();
        assert!(!exe.is_empty(), "the attacker could not even open the exe");
    }
    delete_both(&h);
}
