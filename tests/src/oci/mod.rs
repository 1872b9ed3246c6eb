//! OCI runtime test fixtures, one file per concept:
//!
//! - [`Runtime`] (runtime.rs): the runtime binary under test with a state
//!   root and a cgroup subtree of the test's own;
//! - [`Bundle`] and [`default_config`] (bundle.rs): a busybox bundle and the
//!   one config every test starts from;
//! - [`Ctr`] (ctr.rs): a husk container with `linux.resources`, for the
//!   cgroup suites.
//!
//! Here: [`run_once`] for checks of what a container does when run to
//! completion, and what the host sees ([`alive`], [`wait_gone`],
//! [`host_mounts_under`]).
//!
//! The runtime under test is husk, or with `HUSK_TEST_RUNTIME=/usr/sbin/runc`
//! a peer for conformance ([`runtime_bin`]); husk-specific checks ask
//! [`is_husk`].

mod bundle;
mod ctr;
mod runtime;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use bundle::{Bundle, default_config};
pub use ctr::Ctr;
pub use runtime::Runtime;

/// The runtime under test: `$HUSK_TEST_RUNTIME` when set, else the built `husk`.
pub fn runtime_bin() -> PathBuf {
    match std::env::var_os("HUSK_TEST_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::bins::bin("husk"),
    }
}

/// Whether the runtime under test is husk itself (husk-specific checks, such
/// as error wording, only run then).
pub fn is_husk() -> bool {
    runtime_bin()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("husk"))
}

/// Run `args` to completion in a fresh busybox container (a runtime root and
/// cgroup of its own) after `edit` changed the default config. Returns the
/// runtime's output (the container's exit status and stdio) and the bundle,
/// whose rootfs shows what the container wrote.
pub fn run_once(args: &[&str], edit: impl FnOnce(&mut Value)) -> (Output, Bundle) {
    let rt = Runtime::new();
    let mut bundle = Bundle::new(&rt, "c", args);
    bundle.edit(edit);
    let out = rt.out(&["run", "--bundle", bundle.path_str(), "once"]);
    (out, bundle)
}

/// Pid is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let st = s.rsplit_once(')').map(|x| x.1.trim_start().chars().next());
            !matches!(st, Some(Some('Z')) | Some(Some('X')))
        }
        Err(_) => false,
    }
}

/// Wait until a pid is gone, reaping it if it is a child of ours.
pub fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // SAFETY: waitpid with WNOHANG on a pid; no memory is shared.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Mount points under `dir` in the calling thread's mount namespace (the
/// host's, unless the test thread unshared one: /proc/self would show the
/// main thread's namespace instead).
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&d))
        .map(str::to_string)
        .collect()
}
