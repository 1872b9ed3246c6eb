//! Driving the `husklet` CLI from tests, with a store root of the test's own.

use std::path::Path;
use std::process::{Command, Output};

/// `husklet --root ROOT`, to add arguments or environment to.
pub fn husklet_command(root: &Path) -> Command {
    let mut c = Command::new(crate::bins::bin("husklet"));
    c.arg("--root").arg(root);
    c
}

/// Run `husklet --root ROOT ARGS…`.
pub fn husklet(root: &Path, args: &[&str]) -> Output {
    husklet_command(root)
        .args(args)
        .output()
        .expect("run husklet")
}

/// Run husklet, panic unless it succeeds; returns stdout.
pub fn husklet_ok(root: &Path, args: &[&str]) -> String {
    let out = husklet(root, args);
    assert!(
        out.status.success(),
        "husklet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Run husklet, panic if it succeeds; returns stderr.
pub fn husklet_fails(root: &Path, args: &[&str]) -> String {
    let out = husklet(root, args);
    assert!(
        !out.status.success(),
        "husklet {args:?} succeeded but should fail"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run husklet with `--output json` and parse what it prints.
pub fn husklet_json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--output", "json"];
    a.extend_from_slice(args);
    serde_json::from_str(&husklet_ok(root, &a)).expect("json output")
}

/// How many entries a directory has (0 when it does not exist).
pub fn entry_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A small tmpfs to serve as an image store root, mounted in a private
/// mount namespace of the calling test thread (and of the husklet
/// processes it starts): limits are reached within megabytes, nothing large
/// is ever written to the host disk, and the mount never reaches the host.
/// Unmounted when dropped.
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mount a tmpfs of `mib` MiB.
    pub fn mount(mib: u64) -> Self {
        crate::private_mount_ns();
        let dir = tempfile::Builder::new()
            .prefix("husk-test-smallfs-")
            .tempdir()
            .expect("tempdir");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={mib}m,mode=0755").as_str()),
        )
        .expect("mount tmpfs");
        SmallFs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes on it.
    pub fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(self.dir.path()).expect("statvfs");
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}
