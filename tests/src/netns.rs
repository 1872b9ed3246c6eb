//! A network namespace of the test's own, deleted on drop.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A named network namespace (`ip netns add husk-test-<suffix>`), with
/// loopback up. Deleted when dropped.
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Create a fresh namespace whose name starts with `husk-test-`.
    pub fn new() -> Self {
        let name = format!("husk-test-{}", crate::unique_suffix());
        run("ip", &["netns", "add", &name]);
        let ns = TestNetns { name };
        ns.exec_ok("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's bind-mount path (`/run/netns/<name>`), for setns/CNI_NETNS.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside the namespace, entering only the
    /// network namespace (so /sys/fs/cgroup stays visible, see TESTING.md).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Run a command in the namespace and return its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program} in {}: {e}", self.name))
    }

    /// Run a command in the namespace and panic unless it succeeds; returns stdout.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} in netns {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Default for TestNetns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Move the calling thread (and so the processes and threads it starts
/// afterwards) into a fresh network namespace with only loopback, up. It
/// goes away with the test process: nothing to clean up.
pub fn private_loopback() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare net ns");
    run("ip", &["link", "set", "lo", "up"]);
}
