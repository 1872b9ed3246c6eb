//! Shared helpers for husk's end-to-end tests.
//!
//! Every helper that creates something on the host (a network namespace, a
//! cgroup subtree, a temp dir) removes it when dropped, also when the test
//! fails, so the host rules in TESTING.md hold.

pub mod bins;
pub mod cgroup;
pub mod cni;
pub mod containerd;
pub mod control_plane;
pub mod cri;
pub mod husklet;
pub mod loopdev;
pub mod mirror;
pub mod netns;
pub mod oci;
pub mod pods;
pub mod registry;
pub mod rootfs;
pub mod skip;

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

/// A short random suffix for names of test objects (`husk-test-<suffix>`).
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{}-{n:08x}", std::process::id())
}

/// Enter a private mount namespace (the calling thread and the processes it
/// starts), so that no mount a test makes, even on a crash, reaches the host's
/// table.
pub fn private_mount_ns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount ns");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
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

/// Poll `f` every 50 ms until it holds; panic after `secs`, naming `what`.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The links of `e`'s error chain (its message, then each source's), after
/// checking the workspace's error convention: no link repeats the next one,
/// so every cause is printed once.
pub fn error_links(e: &dyn std::error::Error) -> Vec<String> {
    let mut links = vec![e.to_string()];
    let mut next = e.source();
    while let Some(c) = next {
        links.push(c.to_string());
        next = c.source();
    }
    for w in links.windows(2) {
        assert!(
            !w[0].contains(&w[1]),
            "{:?} repeats its source {:?}",
            w[0],
            w[1]
        );
    }
    links
}

/// A number a test process keeps writing to a file, 0 while unreadable.
pub fn read_counter(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Skip (visibly, see [`skip`]) a test that needs root when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !nix::unistd::Uid::effective().is_root() {
            $crate::skip!("root", "needs root");
        }
    };
}

/// Skip a test that needs root and a cgroup v1/hybrid host (the development
/// machines); a pure v2 host says so and returns.
#[macro_export]
macro_rules! require_cgroup_v1 {
    () => {
        $crate::require_root!();
        if $crate::cgroup::is_v2() {
            $crate::skip!("cgroup-v1", "needs a cgroup v1/hybrid host");
        }
    };
}

/// Skip a test that needs root and a pure cgroup v2 host (the test VM,
/// `scripts/vm-test`); a v1/hybrid host says so and returns.
#[macro_export]
macro_rules! require_cgroup_v2 {
    () => {
        $crate::require_root!();
        if !$crate::cgroup::is_v2() {
            $crate::skip!(
                "cgroup-v2",
                "needs a cgroup v2 host (runs in scripts/vm-test)"
            );
        }
    };
}
