//! Placement through `husk_cgroups` on whatever layout this host has
//! (v1 hybrid on the development machines, pure v2 in the test VM): a real
//! process is moved into a `husk-test-*` subtree, frozen, thawed and killed.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use husk_cgroups::{self as cgroups, CgroupError};
use husk_tests::cgroup::TestCgroup;
use husk_tests::require_root;

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("spawn sleep")
}

/// The process's cgroup paths, one per hierarchy line of /proc/<pid>/cgroup.
fn proc_cgroups(pid: i32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("read /proc/pid/cgroup")
        .lines()
        .map(|l| l.splitn(3, ':').nth(2).unwrap_or("").to_string())
        .collect()
}

fn proc_state(pid: i32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = stat.rsplit_once(')').expect("stat has comm").1;
    after.trim_start().chars().next().expect("state char")
}

#[test]
fn apply_places_the_process_in_every_hierarchy_and_destroy_removes_it() {
    require_root!();
    let tcg = TestCgroup::new();
    let path = tcg.path("c1");
    let mgr = cgroups::open(Some(&path), "c1").expect("open");
    assert!(tcg.dirs().is_empty(), "open must create nothing");

    let mut child = sleeper();
    let pid = child.id() as i32;
    mgr.apply(pid).expect("apply");

    for d in mgr.dirs() {
        assert!(d.is_dir(), "{} exists", d.display());
        assert!(d.ends_with(path.trim_start_matches('/')), "{}", d.display());
    }
    // Every hierarchy the process is listed in (v1 controllers, the unified one
    // on a hybrid host, or the single v2 one) now says our path.
    let listed = proc_cgroups(pid);
    let ours = listed.iter().filter(|p| **p == path).count();
    assert_eq!(ours, mgr.dirs().len(), "{listed:?}");
    assert_eq!(mgr.pids().expect("pids"), vec![pid]);

    mgr.destroy().expect("destroy");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    for d in mgr.dirs() {
        assert!(!d.exists(), "{} removed", d.display());
    }
    // Destroying again is fine: the cgroup is already gone.
    mgr.destroy().expect("second destroy");
}

#[test]
fn freeze_stops_and_thaw_resumes() {
    require_root!();
    let tcg = TestCgroup::new();
    let mgr = cgroups::open(Some(&tcg.path("frz")), "frz").expect("open");
    let mut child = sleeper();
    let pid = child.id() as i32;
    mgr.apply(pid).expect("apply");

    assert!(!mgr.is_frozen().expect("is_frozen"));
    mgr.freeze().expect("freeze");
    assert!(mgr.is_frozen().expect("is_frozen"));
    // A frozen task sleeps in the freezer: state D (v1) or S (v2) — never R.
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc_state(pid) == 'R' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(proc_state(pid), 'R');
    mgr.thaw().expect("thaw");
    assert!(!mgr.is_frozen().expect("is_frozen"));

    // Destroying a frozen cgroup still kills and removes it.
    mgr.freeze().expect("freeze again");
    mgr.destroy().expect("destroy");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(tcg.dirs().iter().all(|d| !d.join("frz").exists()));
}

#[test]
fn destroy_kills_forked_children_too() {
    require_root!();
    let tcg = TestCgroup::new();
    let mgr = cgroups::open(Some(&tcg.path("tree")), "tree").expect("open");
    // A shell that forks background sleepers after it has been placed.
    let mut child = Command::new("sh")
        .args(["-c", "read x; sleep 300 & sleep 300 & wait"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    mgr.apply(pid).expect("apply");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "go").expect("write");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while mgr.pids().expect("pids").len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids = mgr.pids().expect("pids");
    assert_eq!(pids.len(), 3, "{pids:?}");
    mgr.destroy().expect("destroy");
    child.wait().expect("wait");
    for p in pids {
        // Reparented to us (or pid 1) and killed: gone or a zombie.
        let st = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            st.is_empty() || proc_state(p) == 'Z',
            "pid {p} survived: {st}"
        );
    }
}

#[test]
fn bad_paths_are_refused_and_create_nothing() {
    require_root!();
    let tcg = TestCgroup::new();
    let cases = [
        (format!("/{}/../escape", tcg.name()), ".."),
        (
            "system.slice:husk:abc".to_string(),
            "systemd cgroup paths are not supported",
        ),
        ("/".to_string(), "below the hierarchy root"),
    ];
    for (path, want) in cases {
        let err = match cgroups::open(Some(&path), "bad") {
            Ok(_) => panic!("{path}: accepted"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.starts_with("linux.cgroupsPath"), "{path}: {msg}");
        assert!(msg.contains(want), "{path}: {msg}");
        assert!(matches!(
            err,
            CgroupError::InvalidPath { .. } | CgroupError::SystemdPath(_)
        ));
    }
    assert!(tcg.dirs().is_empty());
}

#[test]
fn relative_and_missing_paths_resolve_like_runc() {
    require_root!();
    // Only resolved, never applied: on this host the caller's own cgroup belongs
    // to someone else.
    let own: Vec<String> = proc_cgroups(std::process::id() as i32);
    let mgr = cgroups::open(Some("husk-rel/c1"), "c1").expect("open relative");
    for d in mgr.dirs() {
        assert!(d.ends_with("husk-rel/c1"), "{}", d.display());
        assert!(!d.exists());
    }
    let mgr = cgroups::open(None, "some-id").expect("open without a path");
    for d in mgr.dirs() {
        assert!(d.ends_with("some-id"), "{}", d.display());
    }
    assert!(!own.is_empty());
}
