//! Busybox root filesystems for runtime tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fill `dir` with a busybox root filesystem (scripts/lib/busybox-rootfs).
pub fn busybox_rootfs(dir: &Path) {
    let script = crate::bins::repo_root().join("scripts/lib/busybox-rootfs");
    let status = Command::new(&script)
        .arg(dir)
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(status.success(), "busybox-rootfs {} failed", dir.display());
}

/// One read-only busybox rootfs shared by every container of the cgroup
/// suites: making one costs tens of seconds under TCG. Built once under the
/// build dir, atomically (test processes race for it).
pub fn shared_busybox_rootfs() -> PathBuf {
    let build = crate::bins::build_dir();
    let dir = build.join("cgroups-v2-rootfs");
    if !dir.join("bin/busybox").exists() {
        fs::create_dir_all(&build).expect("build dir");
        let tmp = tempfile::tempdir_in(&build).expect("tmp rootfs");
        busybox_rootfs(tmp.path());
        // Another test process may have won the race: theirs is as good.
        let made = tmp.keep();
        if fs::rename(&made, &dir).is_err() {
            let _ = fs::remove_dir_all(&made);
        }
    }
    dir
}
