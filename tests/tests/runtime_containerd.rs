//! Interop: Debian's containerd (1.6) drives the runtime under test as its
//! runc, through the runc v2 shim (`ctr run --runc-binary`, which sets the
//! shim's `BinaryName` option). The runtime is husk, or a peer picked with
//! `HUSK_TEST_RUNTIME=/usr/sbin/runc`.
//!
//! containerd runs with its own root, state and socket in a temp dir, inside
//! a network namespace of the test's own (entered with `nsenter --net`, so
//! cgroups stay visible) and a private mount namespace with a tmpfs on /run
//! (containerd 1.6 keeps shim sockets in /run/containerd/s and ctr its FIFOs
//! in /run/containerd/fifo, whatever the config says). The CRI plugin is
//! disabled. containerd and its shims live in the test's cgroup subtree
//! (`<subtree>/daemons`), containers in `<subtree>/<id>`, so dropping the
//! subtree kills whatever is left.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use husk_tests::cgroup::{TestCgroup, hierarchies};
use husk_tests::netns::TestNetns;
use husk_tests::oci::runtime_bin;
use husk_tests::require_root;

const NAMESPACE: &str = "husk-test";
const IMAGE: &str = "docker.io/library/busybox:latest";

/// A throwaway containerd. Field order matters for drop: the daemon is
/// stopped first, then the cgroup subtree (killing shims and containers left
/// over), then the netns and the temp dir.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    cgroup: TestCgroup,
    _netns: TestNetns,
}

impl Containerd {
    fn start() -> Self {
        husk_tests::become_subreaper();
        let netns = TestNetns::new();
        let cgroup = TestCgroup::new();
        let dir = tempfile::Builder::new()
            .prefix("husk-test-ctrd-")
            .tempdir()
            .expect("containerd tempdir");
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "info"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("write containerd config");

        // The daemon's cgroups: every hierarchy but cpuset (v1 cpuset groups
        // need cpus and mems set before they take tasks).
        let procs: Vec<PathBuf> = hierarchies()
            .into_iter()
            .filter(|h| !h.ends_with("cpuset"))
            .map(|h| {
                let g = h.join(cgroup.name()).join("daemons");
                std::fs::create_dir_all(&g).expect("create daemon cgroup");
                g.join("cgroup.procs")
            })
            .collect();

        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd log");
        let script = r#"set -e
for f in "$@"; do echo $$ > "$f"; done
mount -t tmpfs -o mode=755 tmpfs /run
exec containerd --config "$CONFIG""#;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns.path().display()))
            .args(["--", "unshare", "-m", "--propagation", "private", "--"])
            .args(["/bin/sh", "-c", script, "sh"])
            .args(&procs)
            .env("CONFIG", d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            // Its own process group: a Ctrl-C of the test runner is not its business.
            .process_group(0);
        let child = cmd
            .spawn()
            .expect("start containerd (is containerd installed?)");
        let ctrd = Containerd {
            child,
            dir,
            cgroup,
            _netns: netns,
        };
        ctrd.wait_ready();
        ctrd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, in its network and mount namespaces.
    fn ctr(&self, args: &[&str]) -> Output {
        let pid = self.child.id();
        Command::new("nsenter")
            .arg(format!("--net=/proc/{pid}/ns/net"))
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["--", "ctr", "--address"])
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ctr(&["version"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Server:") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}\nlog:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn import_busybox(&self) {
        let image = husk_tests::bins::test_image("busybox");
        let tar = image.with_extension("docker.tar");
        assert!(
            tar.exists(),
            "{} missing (scripts/build-test-images)",
            tar.display()
        );
        let out = self.ctr(&["images", "import", tar.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list = self.ctr(&["images", "ls", "-q"]);
        assert!(
            String::from_utf8_lossy(&list.stdout).contains(IMAGE),
            "imported image not listed: {}",
            String::from_utf8_lossy(&list.stdout)
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::sys::wait::{WaitPidFlag, waitpid};
        use nix::unistd::Pid;

        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims and containers left in the subtree: kill them and, as their
        // subreaper, reap them here so none ends up a zombie under pid 1.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = subtree_pids(&self.cgroup);
            for p in &left {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                if status == nix::sys::wait::WaitStatus::StillAlive {
                    break;
                }
            }
            if left.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every pid in the test's cgroup subtree, in any hierarchy.
fn subtree_pids(cgroup: &TestCgroup) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
    }
    let mut pids = Vec::new();
    for dir in cgroup.dirs() {
        walk(&dir, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn run_container(ctrd: &Containerd, id: &str, runtime: &Path, script: &str) -> Output {
    let cgroup = ctrd.cgroup.path(id);
    ctrd.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        runtime.to_str().expect("utf-8 path"),
        "--cgroup",
        &cgroup,
        IMAGE,
        id,
        "sh",
        "-c",
        script,
    ])
}

#[test]
fn ctr_run_returns_output_and_exit_status() {
    require_root!();
    let runtime = runtime_bin();
    let ctrd = Containerd::start();
    ctrd.import_busybox();

    let id = format!("c-{}", husk_tests::unique_suffix());
    let out = run_container(
        &ctrd,
        &id,
        &runtime,
        "echo hello from the container; echo to-stderr >&2; exit 7",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "ctr run with {}: stdout {stdout:?} stderr {stderr:?}\ncontainerd log:\n{}",
        runtime.display(),
        ctrd.log()
    );
    assert_eq!(stdout.trim(), "hello from the container");
    assert!(stderr.contains("to-stderr"), "{stderr}");

    // The container ran in the cgroup given to ctr, inside the test's subtree,
    // and `--rm` deleted it everywhere.
    let containers = ctrd.ctr(&["containers", "ls", "-q"]);
    assert!(
        !String::from_utf8_lossy(&containers.stdout).contains(&id),
        "ctr run --rm left the container"
    );
    let tasks = ctrd.ctr(&["tasks", "ls", "-q"]);
    assert!(!String::from_utf8_lossy(&tasks.stdout).contains(&id));
}

#[test]
fn ctr_run_twice_with_success_and_the_cgroup_in_the_test_subtree() {
    require_root!();
    let runtime = runtime_bin();
    let ctrd = Containerd::start();
    ctrd.import_busybox();

    for n in 0..2 {
        let id = format!("c{n}-{}", husk_tests::unique_suffix());
        let want = ctrd.cgroup.path(&id);
        let out = run_container(&ctrd, &id, &runtime, "cat /proc/self/cgroup");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ctr run: {stdout} {}\ncontainerd log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            ctrd.log()
        );
        // With a private cgroup namespace the container may see "/" instead;
        // either way it must not be a host group outside the subtree.
        let pids_line = stdout
            .lines()
            .find(|l| l.contains(":pids:") || l.starts_with("0::"))
            .unwrap_or_default();
        assert!(
            pids_line.ends_with(&want) || pids_line.ends_with(":/"),
            "container cgroup {pids_line:?}, wanted {want}"
        );
    }
}
