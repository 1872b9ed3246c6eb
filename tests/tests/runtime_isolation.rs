//! What the container's process sees, checked from inside: pid 1, its own
//! hostname, only its own mounts, masked and read-only paths, capabilities,
//! rlimits, user.

use husk_tests::oci::run_once;
use husk_tests::require_root;
use serde_json::Value;

/// Run `sh -c script` in a fresh container whose default config `edit`
/// changed; returns (exit code, stdout, stderr).
fn run_sh(script: &str, edit: impl FnOnce(&mut Value)) -> (i32, String, String) {
    let (o, _bundle) = run_once(&["sh", "-c", script], edit);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn pid1_hostname_and_own_mounts() {
    require_root!();
    let (o, bundle) = run_once(
        &[
            "sh",
            "-c",
            "echo pid=$$; hostname; awk '$5 == \"/\" {print \"root-of-/:\" $4}' /proc/self/mountinfo; \
             cut -d' ' -f2 /proc/mounts",
        ],
        |_| {},
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("pid=1"));
    assert_eq!(lines.next(), Some("husk-test"));
    // Exactly one mount at / (the old root was detached), and it is the
    // bundle's rootfs (its root in its filesystem is the rootfs directory).
    let roots: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("root-of-/:"))
        .collect();
    assert_eq!(roots.len(), 1, "{out}");
    let rootfs = bundle.rootfs().to_string_lossy().into_owned();
    assert!(
        roots[0].ends_with("/rootfs") && rootfs.ends_with(roots[0]),
        "/ is {} in its filesystem, not the rootfs {rootfs}",
        roots[0]
    );
    let mounts: Vec<&str> = lines.filter(|l| !l.starts_with("root-of-/:")).collect();
    assert!(mounts.contains(&"/") && mounts.contains(&"/proc") && mounts.contains(&"/dev/pts"));
    for m in &mounts {
        let allowed = ["/", "/proc", "/dev", "/sys"]
            .iter()
            .any(|p| m == p || m.starts_with(&format!("{p}/")));
        assert!(allowed, "unexpected mount {m} in {mounts:?}");
    }
    // Nothing of the host's other mounts (e.g. where the bundle lives) is visible.
    assert!(
        !mounts
            .iter()
            .any(|m| m.starts_with("/tmp") || m.starts_with("/run") || m.starts_with("/work"))
    );
}

#[test]
fn masked_and_readonly_paths() {
    require_root!();
    let (code, out, err) = run_sh(
        "test -z \"$(cat /proc/kcore 2>/dev/null | head -c1)\" && echo kcore-empty; \
             ls /sys/firmware | wc -l; \
             echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable || echo sys-readonly; \
             echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-readonly; \
             touch /rootfs-writable && echo root-writable",
        |_| {},
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "kcore-empty",
            "0",
            "sys-readonly",
            "sysrq-readonly",
            "root-writable"
        ],
        "{err}"
    );
}

#[test]
fn readonly_root() {
    require_root!();
    let (code, out, err) = run_sh(
        "touch /x 2>/dev/null && echo writable || echo readonly; touch /dev/shm/y && echo shm-ok",
        |c| c["root"]["readonly"] = true.into(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "readonly\nshm-ok\n");
}

#[test]
fn capabilities_rlimits_user() {
    require_root!();
    let (code, out, err) = run_sh(
        "grep -E '^Cap(Eff|Prm|Bnd|Inh)' /proc/self/status; ulimit -n; ulimit -Hn; id -u; id -g; id -G; \
             grep NoNewPrivs /proc/self/status",
        |c| {
            let caps = serde_json::json!(["CAP_KILL", "CAP_CHOWN"]);
            c["process"]["capabilities"] = serde_json::json!({
                "bounding": caps, "effective": ["CAP_KILL"], "permitted": caps, "inheritable": []
            });
            c["process"]["rlimits"] =
                serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]);
            c["process"]["user"] =
                serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [1002]});
        },
    );
    assert_eq!(code, 0, "{err}");
    // CAP_CHOWN = bit 0, CAP_KILL = bit 5.
    let field = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|v| u64::from_str_radix(v, 16).unwrap())
            .unwrap_or_else(|| panic!("{name} missing: {out}"))
    };
    // A non-root user keeps only ambient capabilities across exec: none here.
    assert_eq!(field("CapEff:"), 0, "{out}");
    assert_eq!(field("CapBnd:"), (1 << 5) | 1, "{out}");
    let tail: Vec<&str> = out.lines().filter(|l| !l.starts_with("Cap")).collect();
    assert_eq!(
        tail,
        ["123", "456", "1000", "1001", "1001 1002", "NoNewPrivs:\t1"],
        "{out}"
    );
}

#[test]
fn root_capabilities_as_configured() {
    require_root!();
    let (code, out, err) = run_sh("grep -E '^Cap(Eff|Bnd)' /proc/self/status", |c| {
        c["process"]["capabilities"] = serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_KILL", "CAP_NET_RAW"]
        });
    });
    assert_eq!(code, 0, "{err}");
    let want = (1u64 << 5) | (1 << 13);
    for l in out.lines() {
        let v = u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(v, want, "{l}");
    }
}
