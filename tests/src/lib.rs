//! Shared helpers for husk's end-to-end tests.
//!
//! Every helper that creates something on the host (a network namespace, a
//! cgroup subtree, a temp dir) removes it when dropped, also when the test
//! fails, so the host rules in TESTING.md hold.

pub mod bins;
pub mod cgroup;
pub mod cni;
pub mod husk_ctr;
pub mod husklet;
pub mod netns;
pub mod oci;
pub mod registry;
pub mod rootfs;

use std::sync::Once;

/// A short random suffix for names of test objects (`husk-test-<suffix>`).
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{}-{n:08x}", std::process::id())
}

/// Make this test process the subreaper of everything it starts, so that
/// detached container processes are reaped by the test, not by pid 1.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and touches no memory.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// Skip (return early from) a test that needs root when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}
