//! The device cgroup as an attacker meets it: root in a container run by the
//! real `husk`, with CAP_MKNOD (as Docker grants), makes a node for a host
//! block device in its /dev and reads it. The block device is a read-only
//! loop device over a file holding a marker, made for the test.
//!
//! However `linux.resources` leaves out a deny rule (absent, `{}`, only a
//! memory limit, only allow rules) the read must fail with EPERM, as with
//! runc, which starts every container from deny-all; the default devices
//! (/dev/null, /dev/zero, ...) must still work. An explicit allow rule for the
//! device does let it be read: the check can see a successful read.
//!
//! v1 runs on the development hosts; v2 (the eBPF filter) in the VM
//! (`scripts/vm-test`).

use std::process::Output;

use husk_tests::loopdev::LoopDev;
use husk_tests::oci::{Bundle, Runtime, default_config};
use husk_tests::{require_cgroup_v1, require_cgroup_v2};
use serde_json::{Value, json};

/// The attacker's script: make a node for `disk` and read it; show that the
/// default devices work.
fn attack_script(disk: &LoopDev) -> String {
    format!(
        "mknod /dev/hostdisk b {maj} {min} || {{ echo mknod-failed; exit 90; }}
         echo ok > /dev/null && echo \"zero=$(head -c 3 /dev/zero | wc -c)\"
         head -c {len} /dev/hostdisk
         echo \"read-exit=$?\"",
        maj = disk.major,
        min = disk.minor,
        len = disk.marker.len(),
    )
}

/// A container config for the attacker: root with CAP_MKNOD on a read-only
/// busybox rootfs, in a cgroup of `rt`'s test subtree.
fn attacker_config(rt: &Runtime, args: &[&str]) -> Value {
    let mut config = default_config(&rt.cgroup().path("dev"), args);
    config["root"] = json!({"path": husk_tests::rootfs::shared_busybox_rootfs(), "readonly": true});
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_MKNOD"]);
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set] = caps.clone();
    }
    config
}

/// Run the attack in a husk container whose `linux.resources` is what
/// `resources` makes for the device (None: no resources at all). Returns
/// husk's output and the device.
fn attack(resources: impl FnOnce(&LoopDev) -> Option<Value>) -> (Output, LoopDev) {
    let disk = LoopDev::attach();
    let rt = Runtime::husk();
    let script = attack_script(&disk);
    let mut config = attacker_config(&rt, &["/bin/sh", "-c", &script]);
    if let Some(r) = resources(&disk) {
        config["linux"]["resources"] = r;
    }
    let bundle = Bundle::from_config(config);
    let id = format!("dev-{}", husk_tests::unique_suffix());
    let out = rt.out(&["run", "--bundle", bundle.path_str(), &id]);
    (out, disk)
}

/// `husk update` with only allow rules, then the attack through `husk exec`:
/// the update's rules join the container's policy (deny-all first, the
/// defaults last) instead of replacing it, so the disk stays out of reach
/// and /dev/zero keeps working. (On v2 the filter is replaced whole: an
/// update that installed only its own rules cut off the default devices.)
fn update_keeps_the_device_policy() {
    let disk = LoopDev::attach();
    let rt = Runtime::husk();
    let bundle = Bundle::from_config(attacker_config(&rt, &["sleep", "300"]));
    let id = format!("devupd-{}", husk_tests::unique_suffix());
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    let update = tempfile::NamedTempFile::new().expect("resources file");
    std::fs::write(update.path(), allow_rules_only().to_string()).expect("write resources");
    rt.ok(&[
        "update",
        "--resources",
        &update.path().to_string_lossy(),
        &id,
    ]);
    let script = attack_script(&disk);
    let out = rt.out(&["exec", &id, "/bin/sh", "-c", &script]);
    rt.out(&["delete", "--force", &id]);
    check_denied(&out, &disk);
}

/// The attack fails with EPERM and the default devices still work.
fn denied(resources: Option<Value>) {
    let (out, disk) = attack(|_| resources);
    check_denied(&out, &disk);
}

fn check_denied(out: &Output, disk: &LoopDev) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "status {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(
        !stdout.contains(&disk.marker),
        "the container read the host block device {}:\n{ctx}",
        disk.dev
    );
    assert!(
        stdout.contains("zero=3"),
        "the default devices failed:\n{ctx}"
    );
    assert!(stdout.contains("read-exit=1"), "{ctx}");
    assert!(
        stderr.contains("Operation not permitted"),
        "not EPERM:\n{ctx}"
    );
}

/// The control: an explicit allow rule for the device lets it be read.
fn allowed_when_the_spec_says_so() {
    let (out, disk) = attack(|d| {
        Some(json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": d.major, "minor": d.minor, "access": "r"}
        ]}))
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&disk.marker) && stdout.contains("read-exit=0"),
        "an allowed device could not be read: status {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `husk exec` joins the container's cgroup and nothing more: a device the
/// spec allows stays readable to an exec'd process (joining once reset the
/// policy to the defaults).
fn exec_keeps_the_spec_devices() {
    let disk = LoopDev::attach();
    let rt = Runtime::husk();
    let mut config = attacker_config(&rt, &["sleep", "300"]);
    config["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "b", "major": disk.major, "minor": disk.minor, "access": "r"}
    ]});
    let bundle = Bundle::from_config(config);
    let id = format!("devexec-{}", husk_tests::unique_suffix());
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    let script = format!("rm -f /dev/hostdisk; {}", attack_script(&disk));
    let first = rt.out(&["exec", &id, "/bin/sh", "-c", &script]);
    let second = rt.out(&["exec", &id, "/bin/sh", "-c", &script]);
    rt.out(&["delete", "--force", &id]);
    for (n, out) in [("first", first), ("second", second)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&disk.marker) && stdout.contains("read-exit=0"),
            "the {n} exec could not read the device the spec allows: status {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn memory_only() -> Value {
    json!({"memory": {"limit": 134217728}})
}

fn allow_rules_only() -> Value {
    json!({"devices": [
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"}
    ]})
}

#[test]
fn v1_without_resources_a_host_disk_cannot_be_read() {
    require_cgroup_v1!();
    denied(None);
}

#[test]
fn v1_with_empty_resources_a_host_disk_cannot_be_read() {
    require_cgroup_v1!();
    denied(Some(json!({})));
}

#[test]
fn v1_with_only_a_memory_limit_a_host_disk_cannot_be_read() {
    require_cgroup_v1!();
    denied(Some(memory_only()));
}

#[test]
fn v1_with_only_allow_rules_a_host_disk_cannot_be_read() {
    require_cgroup_v1!();
    denied(Some(allow_rules_only()));
}

#[test]
fn v1_a_device_the_spec_allows_can_be_read() {
    require_cgroup_v1!();
    allowed_when_the_spec_says_so();
}

#[test]
fn v2_without_resources_a_host_disk_cannot_be_read() {
    require_cgroup_v2!();
    denied(None);
}

#[test]
fn v2_with_empty_resources_a_host_disk_cannot_be_read() {
    require_cgroup_v2!();
    denied(Some(json!({})));
}

#[test]
fn v2_with_only_a_memory_limit_a_host_disk_cannot_be_read() {
    require_cgroup_v2!();
    denied(Some(memory_only()));
}

#[test]
fn v2_with_only_allow_rules_a_host_disk_cannot_be_read() {
    require_cgroup_v2!();
    denied(Some(allow_rules_only()));
}

#[test]
fn v2_a_device_the_spec_allows_can_be_read() {
    require_cgroup_v2!();
    allowed_when_the_spec_says_so();
}

#[test]
fn v1_an_update_with_allow_rules_keeps_the_host_disk_denied() {
    require_cgroup_v1!();
    update_keeps_the_device_policy();
}

#[test]
fn v2_an_update_with_allow_rules_keeps_the_host_disk_denied() {
    require_cgroup_v2!();
    update_keeps_the_device_policy();
}

#[test]
fn v1_an_exec_keeps_the_devices_the_spec_allows() {
    require_cgroup_v1!();
    exec_keeps_the_spec_devices();
}

#[test]
fn v2_an_exec_keeps_the_devices_the_spec_allows() {
    require_cgroup_v2!();
    exec_keeps_the_spec_devices();
}
