//! `linux.rootfsPropagation`: every value runc accepts starts the container,
//! also when every mount of the runtime's own mount namespace is shared (as
//! on a systemd host). pivot_root refuses a shared new root or parent, so the
//! runtime must make the mount holding the rootfs private before it binds the
//! rootfs, and apply the propagation to the container's new `/`.

use std::process::{Command, Stdio};

use husk_tests::oci::{Bundle, Runtime};
use husk_tests::require_root;
use nix::mount::{MsFlags, mount};
use serde_json::json;

/// Run the bundle with the runtime inside a new mount namespace of its own
/// whose mounts are all shared; returns (exit code, stdout, stderr).
fn run_under_shared_root(rt: &Runtime, b: &Bundle, id: &str) -> (i32, String, String) {
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "shared", "--"])
        .arg(rt.bin())
        .arg("--root")
        .arg(rt.root())
        .args(["run", "--bundle", b.path_str(), id])
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn every_propagation_works_under_a_shared_root() {
    require_root!();
    let rt = Runtime::new();
    for (i, prop) in [
        "rshared", "shared", "rslave", "slave", "rprivate", "private",
    ]
    .iter()
    .enumerate()
    {
        let mut b = Bundle::new(
            &rt,
            &format!("p{i}"),
            &["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo | wc -l"],
        );
        b.edit(|c| c["linux"]["rootfsPropagation"] = json!(prop));
        let (code, out, err) = run_under_shared_root(&rt, &b, &format!("prop{i}"));
        assert_eq!(code, 0, "rootfsPropagation {prop}: {err}");
        assert_eq!(out.trim(), "1", "rootfsPropagation {prop}: one root mount");
    }
}

#[test]
fn the_host_sees_none_of_the_containers_mounts_with_rshared() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "s", &["true"]);
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rshared"));
    let before = husk_tests::oci::host_mounts_under(b.path());
    let (code, _, err) = run_under_shared_root(&rt, &b, "shared-host");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        husk_tests::oci::host_mounts_under(b.path()),
        before,
        "no mount under the bundle leaked to the host"
    );
}

/// Mount points of the calling thread's mount namespace.
fn mount_points() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let mut v: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// containerd with a Bidirectional mount in the pod: the rootfs is a mount
/// of its own (containerd's overlay), the caller's `/` is shared and the
/// config asks for `rshared`. The container runs, and not one of the mounts
/// the runtime made under the rootfs (proc, dev, sys, ...) is left in the
/// caller's namespace.
#[test]
fn rshared_with_the_rootfs_on_its_own_mount_leaves_nothing_in_the_callers_namespace() {
    require_root!();
    husk_tests::private_mount_ns();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["sh", "-c", "grep -c . /proc/self/mountinfo"]);
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!("rshared"));
    let rootfs = b.rootfs();
    let none = None::<&str>;
    // A shared / (systemd's), then the rootfs on a mount of its own in a
    // peer group of its own.
    mount(none, "/", none, MsFlags::MS_SHARED | MsFlags::MS_REC, none).unwrap();
    mount(Some(&rootfs), &rootfs, none, MsFlags::MS_BIND, none).unwrap();
    mount(none, &rootfs, none, MsFlags::MS_PRIVATE, none).unwrap();
    mount(none, &rootfs, none, MsFlags::MS_SHARED, none).unwrap();
    let before = mount_points();
    let o = rt.out(&["run", "--bundle", b.path_str(), "own-mount"]);
    let after = mount_points();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(after, before, "mounts left in the caller's namespace");
}

/// The propagation tags of the container's `/` in its own mountinfo.
fn root_tags(prop: &str) -> String {
    let rt = Runtime::new();
    let mut b = Bundle::new(
        &rt,
        "c",
        &["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"],
    );
    b.edit(|c| c["linux"]["rootfsPropagation"] = json!(prop));
    let o = rt.out(&["run", "--bundle", b.path_str(), "tags"]);
    assert!(
        o.status.success(),
        "rootfsPropagation {prop}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let pre = line.split(" - ").next().unwrap_or_default();
    pre.split(' ').skip(6).collect::<Vec<_>>().join(" ")
}

#[test]
fn rootfs_propagation_is_what_the_containers_root_gets() {
    require_root!();
    // runc 1.1 has both defects this guards against: it leaves the new
    // root private whatever was asked, and fails with unbindable (EINVAL on
    // the rootfs bind).
    if husk_tests::oci::is_husk() {
        for prop in ["shared", "rshared"] {
            let tags = root_tags(prop);
            assert!(tags.starts_with("shared:"), "{prop}: {tags:?}");
        }
        for prop in ["unbindable", "runbindable"] {
            let tags = root_tags(prop);
            assert_eq!(tags, "unbindable", "{prop}");
        }
    }
    for prop in ["private", "rprivate"] {
        assert_eq!(root_tags(prop), "", "{prop}");
    }
}
