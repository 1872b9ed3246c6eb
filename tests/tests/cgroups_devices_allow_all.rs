//! A typeless allow-all device rule, `{"allow": true, "access": "rwm"}`, as
//! containerd/CRI send for privileged containers: the container starts and
//! every device works, including a host block device the default policy
//! denies. Rules after the allow-all still apply (the last match decides).
//!
//! On cgroup v2 the allow-all once ended husk's eBPF device filter with an
//! unconditional return followed by the rules before it, and the verifier
//! refused the program ("unreachable insn"), so `husk run` failed. v1 runs on
//! the development hosts; v2 in the VM (`scripts/vm-test`).

use std::process::Output;

use husk_tests::loopdev::LoopDev;
use husk_tests::oci::{Bundle, Runtime, default_config};
use husk_tests::{require_cgroup_v1, require_cgroup_v2};
use serde_json::{Value, json};

/// `husk run` a root container with CAP_MKNOD whose device rules are
/// `devices(disk)`: it makes a node for the disk and reads it, and uses
/// /dev/null and /dev/zero.
fn run_with(devices: impl FnOnce(&LoopDev) -> Value) -> (Output, LoopDev) {
    let disk = LoopDev::attach();
    let rt = Runtime::husk();
    let script = format!(
        "mknod /dev/hostdisk b {maj} {min} || {{ echo mknod-failed; exit 90; }}
         echo ok > /dev/null && echo \"null=ok zero=$(head -c 3 /dev/zero | wc -c)\"
         head -c {len} /dev/hostdisk
         echo \"read-exit=$?\"",
        maj = disk.major,
        min = disk.minor,
        len = disk.marker.len(),
    );
    let mut config = default_config(&rt.cgroup().path("allall"), &["/bin/sh", "-c", &script]);
    config["root"] = json!({"path": husk_tests::rootfs::shared_busybox_rootfs(), "readonly": true});
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_MKNOD"]);
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set] = caps.clone();
    }
    config["linux"]["resources"] = json!({"devices": devices(&disk)});
    let bundle = Bundle::from_config(config);
    let id = format!("allall-{}", husk_tests::unique_suffix());
    let out = rt.out(&["run", "--bundle", bundle.path_str(), &id]);
    (out, disk)
}

fn context(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The allow-all alone: the container starts, the default devices work and
/// the host disk (denied without the rule) can be read.
fn allow_all_opens_every_device() {
    let (out, disk) = run_with(|_| json!([{"allow": true, "access": "rwm"}]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ctx = context(&out);
    assert!(
        stdout.contains("null=ok zero=3"),
        "the default devices failed:\n{ctx}"
    );
    assert!(
        stdout.contains(&disk.marker) && stdout.contains("read-exit=0"),
        "the allow-all rule did not let the container read {}:\n{ctx}",
        disk.dev
    );
    assert!(out.status.success(), "{ctx}");
}

/// An allow-all followed by a deny for the disk's reads: the deny (later)
/// wins for the disk, the allow-all for everything else.
fn a_later_deny_overrides_the_allow_all() {
    let (out, disk) = run_with(|d| {
        json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "b", "major": d.major, "minor": d.minor, "access": "r"}
        ])
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = context(&out);
    assert!(
        stdout.contains("null=ok zero=3"),
        "the default devices failed:\n{ctx}"
    );
    assert!(
        !stdout.contains(&disk.marker),
        "the denied disk was read:\n{ctx}"
    );
    assert!(stdout.contains("read-exit=1"), "{ctx}");
    assert!(
        stderr.contains("Operation not permitted"),
        "not EPERM:\n{ctx}"
    );
}

#[test]
fn v1_allow_all_opens_every_device() {
    require_cgroup_v1!();
    allow_all_opens_every_device();
}

#[test]
fn v1_a_later_deny_overrides_the_allow_all() {
    require_cgroup_v1!();
    a_later_deny_overrides_the_allow_all();
}

#[test]
fn v2_allow_all_opens_every_device() {
    require_cgroup_v2!();
    allow_all_opens_every_device();
}

#[test]
fn v2_a_later_deny_overrides_the_allow_all() {
    require_cgroup_v2!();
    a_later_deny_overrides_the_allow_all();
}
