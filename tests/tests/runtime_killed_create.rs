//! A `create` killed with SIGKILL at any point (as a node agent or an OOM
//! killer may): `list` and `delete --force` still finish, and `delete
//! --force` removes everything of the id: state dir, cgroup, processes.

use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use husk_tests::oci::{Bundle, Runtime};
use husk_tests::require_root;

/// Run `cmd` to completion within `secs`; None (after killing it) if it hangs.
fn finish_within(mut cmd: Command, secs: u64) -> Option<ExitStatus> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Our children (the test is their subreaper: a container init that
/// outlived its runtime ends up here), zombies reaped first.
fn children() -> Vec<i32> {
    // SAFETY: waitpid with WNOHANG reaps exited children only.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        if ppid == Some(me.as_str()) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn create_killed_at_any_point_is_removed_by_delete_force() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    // How long a whole create takes here: the kills are spread over it.
    let t0 = Instant::now();
    rt.ok(&["create", "--bundle", b.path_str(), "whole"]);
    let whole = t0.elapsed();
    rt.ok(&["delete", "--force", "whole"]);
    let steps = 24;
    for i in 0..=steps {
        let id = format!("k{i}");
        let delay = whole * i / steps;
        let mut create = rt.cmd(&["create", "--bundle", b.path_str(), &id]);
        let mut create = create
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = create.kill();
        let _ = create.wait();

        let list = finish_within(rt.cmd(&["list"]), 20);
        assert!(list.is_some(), "{id} (killed after {delay:?}): list hangs");
        let del = finish_within(rt.cmd(&["delete", "--force", &id]), 20);
        assert!(
            del.is_some(),
            "{id} (killed after {delay:?}): delete --force hangs"
        );
        assert!(
            del.unwrap().success(),
            "{id} (killed after {delay:?}): delete --force failed"
        );
        assert!(
            !rt.state_dir(&id).exists(),
            "{id} (killed after {delay:?}): state dir left"
        );
        let cgroups = rt.cgroup().leaf_dirs("c");
        assert!(
            cgroups.is_empty(),
            "{id} (killed after {delay:?}): cgroup left: {cgroups:?}"
        );
        // A process killed by SIGKILL may take a moment to be gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut left = children();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = children();
        }
        assert!(
            left.is_empty(),
            "{id} (killed after {delay:?}): processes left: {left:?}"
        );
        assert!(rt.container_ids().is_empty(), "{id}: still listed");
    }
}
