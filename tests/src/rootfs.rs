//! Busybox root filesystems and OCI bundles for runtime tests.

use std::path::Path;
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
