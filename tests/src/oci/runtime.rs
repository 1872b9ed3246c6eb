//! The runtime handle: one OCI runtime binary with a `--root` and a cgroup
//! subtree of the test's own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cgroup::TestCgroup;

/// A runtime binary with its own state root (`--root`) and a `husk-test-*`
/// cgroup subtree for its containers. Dropping it deletes (`--force`) every
/// container left in the root, then removes the root and the subtree.
pub struct Runtime {
    bin: PathBuf,
    // Dropped in this order, after `Drop::drop` deleted the containers.
    root: tempfile::TempDir,
    cgroup: TestCgroup,
}

impl Runtime {
    /// The runtime under test ([`super::runtime_bin`]: husk, or the peer
    /// named by `HUSK_TEST_RUNTIME`).
    pub fn new() -> Self {
        Self::with_bin(super::runtime_bin())
    }

    /// The built `husk`, whatever `HUSK_TEST_RUNTIME` says: for suites that
    /// check husk's own commands (`update`, `events`, `pause`).
    pub fn husk() -> Self {
        Self::with_bin(crate::bins::bin("husk"))
    }

    fn with_bin(bin: PathBuf) -> Self {
        crate::become_subreaper();
        Runtime {
            bin,
            root: tempfile::Builder::new()
                .prefix("husk-test-root-")
                .tempdir()
                .expect("runtime state root"),
            cgroup: TestCgroup::new(),
        }
    }

    /// The runtime binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The state root passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The cgroup subtree that this runtime's bundles put their containers in.
    pub fn cgroup(&self) -> &TestCgroup {
        &self.cgroup
    }

    /// The directory the runtime keeps container `id`'s state in.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }

    /// A command `<runtime> --root <root> <args...>` with stdin from /dev/null.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Run `<runtime> --root <root> <args...>` and capture its output.
    ///
    /// Output goes through files, not pipes: after `create`, `run -d` or
    /// `exec -d` the container holds the runtime's stdio, and a pipe would
    /// never reach EOF.
    pub fn out(&self, args: &[&str]) -> Output {
        let out = tempfile::tempfile().expect("stdout tempfile");
        let err = tempfile::tempfile().expect("stderr tempfile");
        let status = self
            .cmd(args)
            .stdout(out.try_clone().expect("dup stdout file"))
            .stderr(err.try_clone().expect("dup stderr file"))
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()));
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    /// Like [`Runtime::out`], panicking unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "{} {args:?} failed ({:?}): {}{}",
            self.bin.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `state` as JSON; panics when the container is unknown.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// The status field of `state`, or None when the container is unknown.
    pub fn status(&self, id: &str) -> Option<String> {
        let o = self.out(&["state", id]);
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["status"].as_str().map(str::to_string)
    }

    /// Wait until `status(id)` is `want`; panic after 20 s.
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.status(id);
            if s.as_deref() == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{id}: status {s:?}, want {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The ids `list -q` reports for this runtime's root.
    pub fn container_ids(&self) -> Vec<String> {
        let out = self.out(&["list", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Whatever a failed test left behind, also half-created containers
        // that `list` might not show: every entry of the root is an id.
        if let Ok(rd) = std::fs::read_dir(self.root.path()) {
            for e in rd.flatten() {
                if let Some(id) = e.file_name().to_str() {
                    let _ = self.out(&["delete", "--force", id]);
                }
            }
        }
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    f.seek(SeekFrom::Start(0)).expect("seek output file");
    f.read_to_end(&mut v).expect("read output file");
    v
}
