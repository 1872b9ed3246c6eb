//! `linux.rootfsPropagation`: every value runc accepts starts the container,
//! also when every mount of the runtime's own mount namespace is shared (as
//! on a systemd host). pivot_root refuses a shared new root or parent, so the
//! runtime must make the rootfs's parent private before it binds the rootfs.

use std::process::{Command, Stdio};

use husk_tests::oci::{Bundle, Runtime};
use husk_tests::require_root;
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
