//! Mount destinations inside a hostile rootfs: a symlink swapped while the
//! runtime mounts (CVE-2021-30465 class) never sends a mount or a mount point
//! outside the rootfs; a symlink that leads a destination back to the
//! container's root is refused with an error naming it. And a config
//! without a mount namespace runs in the runtime's, chrooted.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use husk_tests::oci::{Bundle, Runtime, host_mounts_under, is_husk};
use husk_tests::require_root;
use nix::mount::{MsFlags, mount};
use serde_json::json;

/// Swap two entries of a directory with renameat2(RENAME_EXCHANGE) until
/// `stop` is set; returns how many swaps it made.
fn swapper(a: &Path, b: &Path, stop: Arc<AtomicBool>, swaps: Arc<AtomicU64>) {
    let a = CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = CString::new(b.as_os_str().as_bytes()).unwrap();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: renameat2 reads two NUL-terminated paths.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
        swaps.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_symlink_swapped_during_the_mounts_never_leads_a_mount_outside_the_rootfs() {
    require_root!();
    // Everything below happens in a mount namespace of this test thread.
    husk_tests::private_mount_ns();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["true"]);
    // The host dir the attacker aims at: a tmpfs of its own, shared, so a
    // mount made on it in the container's namespace (which keeps / rshared)
    // would show up here too, and any file or dir made in it is visible.
    let host = tempfile::Builder::new()
        .prefix("husk-test-target-")
        .tempdir()
        .unwrap();
    mount(
        Some("tmpfs"),
        host.path(),
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    mount(
        None::<&str>,
        host.path(),
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    // rootfs/vol is a directory one moment and a symlink to the host dir
    // the next: it is exchanged with rootfs/alt in a loop.
    let rootfs = b.rootfs();
    std::fs::create_dir(rootfs.join("vol")).unwrap();
    std::os::unix::fs::symlink(host.path(), rootfs.join("alt")).unwrap();
    let file_src = b.path().join("file-src");
    std::fs::write(&file_src, "x").unwrap();
    b.edit(|c| {
        c["linux"]["rootfsPropagation"] = json!("rshared");
        let mounts = c["mounts"].as_array_mut().unwrap();
        for i in 0..32 {
            mounts.push(json!({"destination": format!("/vol/d{i}"), "type": "tmpfs",
                               "source": "tmpfs", "options": ["nosuid"]}));
            mounts.push(json!({"destination": format!("/vol/f{i}"), "type": "bind",
                               "source": file_src, "options": ["bind", "ro"]}));
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let t = {
        let (a, z) = (rootfs.join("vol"), rootfs.join("alt"));
        let (stop, swaps) = (stop.clone(), swaps.clone());
        std::thread::spawn(move || swapper(&a, &z, stop, swaps))
    };
    let mut ran = 0;
    for i in 0..30 {
        // A run may fail (a mount point changed under it): what counts is
        // that nothing lands outside the rootfs.
        let o = rt.out(&["run", "--bundle", b.path_str(), &format!("swap{i}")]);
        if o.status.success() {
            ran += 1;
        }
        let _ = rt.out(&["delete", "--force", &format!("swap{i}")]);
    }
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(
        swaps.load(Ordering::Relaxed) > 100,
        "the symlink was swapped"
    );
    let created: Vec<_> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mounted = host_mounts_under(host.path());
    nix::mount::umount2(host.path(), nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert!(
        created.is_empty(),
        "mount points made outside the rootfs: {created:?}"
    );
    assert_eq!(
        mounted,
        [host.path().to_string_lossy().to_string()],
        "mounts made outside the rootfs"
    );
    eprintln!("{ran}/30 runs succeeded while the symlink was swapped");
}

#[test]
fn a_symlink_leading_a_mount_to_the_root_is_refused_by_name() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["true"]);
    let proc = b.rootfs().join("proc");
    std::fs::remove_dir(&proc).unwrap();
    std::os::unix::fs::symlink("/", &proc).unwrap();
    let o = rt.out(&["run", "--bundle", b.path_str(), "procroot"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    if is_husk() {
        assert!(
            err.contains("mount /proc: destination resolves to the rootfs itself")
                && err.contains("/proc is a symlink to /"),
            "{err}"
        );
    }
    assert!(rt.container_ids().is_empty(), "no container may be left");
}

#[test]
fn without_a_mount_namespace_the_container_runs_chrooted_in_the_callers() {
    require_root!();
    // The mounts of a container without a mount namespace are made in the
    // caller's: keep them in one of this test's.
    husk_tests::private_mount_ns();
    let rt = Runtime::new();
    let mut b = Bundle::new(
        &rt,
        "c",
        &[
            "sh",
            "-c",
            "test -e /inside-the-rootfs && echo chrooted; readlink /proc/self/ns/mnt",
        ],
    );
    std::fs::write(b.rootfs().join("inside-the-rootfs"), "").unwrap();
    b.edit(|c| {
        let linux = &mut c["linux"];
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "mount");
        linux.as_object_mut().unwrap().remove("maskedPaths");
        linux.as_object_mut().unwrap().remove("readonlyPaths");
    });
    let o = rt.out(&["run", "--bundle", b.path_str(), "nomntns"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ours = std::fs::read_link("/proc/thread-self/ns/mnt").unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["chrooted", ours.to_str().unwrap()],
        "chrooted into the rootfs, in the caller's mount namespace"
    );

    // What needs a mount namespace of its own is refused, naming the field.
    b.edit(|c| c["linux"]["maskedPaths"] = json!(["/proc/kcore"]));
    let o = rt.out(&["run", "--bundle", b.path_str(), "nomntns2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    if is_husk() {
        assert!(
            err.contains("linux.maskedPaths: needs a private mount namespace"),
            "{err}"
        );
    }
}

#[test]
fn devices_get_their_exact_mode_and_owner_in_a_new_directory() {
    require_root!();
    let (o, _b) = husk_tests::oci::run_once(
        &[
            "stat",
            "-c",
            "%n %F %t %T %a %u %g",
            "/dev/null",
            "/dev/custom/fuse",
        ],
        |c| {
            c["linux"]["devices"] = json!([{"path": "/dev/custom/fuse", "type": "c",
                "major": 10, "minor": 229, "fileMode": 0o640, "uid": 1000, "gid": 1001}]);
        },
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "/dev/null character special file 1 3 666 0 0",
            "/dev/custom/fuse character special file a e5 640 1000 1001"
        ]
    );
}
