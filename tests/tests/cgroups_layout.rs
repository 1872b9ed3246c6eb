//! Layout detection against what is mounted where, with the real `husk`.
//!
//! Some sandboxes and benchmarks run in a private mount namespace that puts a
//! fresh tmpfs over /sys/fs/cgroup. The cgroup mounts are still listed in
//! mountinfo, but hidden: husk must not use them (it used to create plain
//! directories on the tmpfs, fail, and leave them behind). It refuses with an
//! error that says why, and leaves nothing behind, on the tmpfs or in the
//! real hierarchies. Runs on any layout (the v1 host and the v2 VM).

use std::process::Command;

use husk_tests::oci::{Bundle, Runtime, default_config};
use husk_tests::require_root;
use serde_json::json;

#[test]
fn hierarchies_hidden_under_a_tmpfs_are_not_used() {
    require_root!();
    let rt = Runtime::husk();
    let mut config = default_config(&rt.cgroup().path("hidden"), &["/bin/true"]);
    config["root"] = json!({"path": husk_tests::rootfs::shared_busybox_rootfs(), "readonly": true});
    let bundle = Bundle::from_config(config);
    let id = format!("hidden-{}", husk_tests::unique_suffix());
    // unshare(1) gives the shell a private mount namespace: the tmpfs goes
    // away with it and the test process keeps the host's view.
    let script = r#"
        mount -t tmpfs husk-test-cover /sys/fs/cgroup || exit 99
        "$HUSK" --root "$ROOT" run --bundle "$BUNDLE" "$ID"
        echo "husk-exit=$?"
        echo "left-on-tmpfs:[$(find /sys/fs/cgroup -mindepth 1)]"
    "#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("HUSK", rt.bin())
        .env("ROOT", rt.root())
        .env("BUNDLE", bundle.path())
        .env("ID", &id)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    assert!(
        !stdout.contains("husk-exit=0"),
        "husk ran on a tmpfs:\n{ctx}"
    );
    assert!(stdout.contains("husk-exit="), "{ctx}");
    assert!(
        stderr.contains("hidden under later mounts") && stderr.contains("/sys/fs/cgroup"),
        "the error does not say why:\n{ctx}"
    );
    assert!(
        stdout.contains("left-on-tmpfs:[]"),
        "husk left files on the tmpfs:\n{ctx}"
    );
    assert!(
        rt.cgroup().dirs().is_empty(),
        "cgroups left behind: {:?}",
        rt.cgroup().dirs()
    );
    assert!(
        !rt.state_dir(&id).exists(),
        "state left behind in {}",
        rt.state_dir(&id).display()
    );
}

#[test]
fn a_hierarchy_mounted_again_over_the_tmpfs_is_used() {
    require_root!();
    // What is visible counts: with cgroup2 (v2 host) or the v1 pids and
    // devices hierarchies (v1 host; a container needs devices for its device
    // policy) mounted again on top of the tmpfs, layout detection finds
    // exactly those, and husk places the container there.
    let rt = Runtime::husk();
    let cg = rt.cgroup();
    let mut config = default_config(
        &cg.path("again"),
        &["/bin/sh", "-c", "cat /proc/self/cgroup"],
    );
    config["root"] = json!({"path": husk_tests::rootfs::shared_busybox_rootfs(), "readonly": true});
    // The host's cgroup namespace, so the container's own path shows.
    config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != "cgroup");
    let bundle = Bundle::from_config(config);
    let id = format!("again-{}", husk_tests::unique_suffix());
    let remount = if husk_tests::cgroup::is_v2() {
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
    } else {
        "for c in pids devices; do mkdir /sys/fs/cgroup/$c && \
         mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c || exit 98; done"
    };
    let script = format!(
        r#"
        mount -t tmpfs husk-test-cover /sys/fs/cgroup || exit 99
        {remount} || exit 98
        "$HUSK" --root "$ROOT" run --bundle "$BUNDLE" "$ID"
        echo "husk-exit=$?"
        "#
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("HUSK", rt.bin())
        .env("ROOT", rt.root())
        .env("BUNDLE", bundle.path())
        .env("ID", &id)
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(stdout.contains("husk-exit=0"), "{ctx}");
    let want = format!("/{}/again", cg.name());
    let line = if husk_tests::cgroup::is_v2() {
        format!("0::{want}")
    } else {
        format!("pids:{want}")
    };
    assert!(stdout.contains(&line), "not placed in {want}:\n{ctx}");
    assert!(
        cg.leaf_dirs("again").is_empty(),
        "cgroups left behind: {:?}",
        cg.leaf_dirs("again")
    );
}
