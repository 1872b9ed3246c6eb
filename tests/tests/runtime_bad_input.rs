//! Bad input: a clear error naming the problem, a non-zero exit, and nothing
//! left behind (no state dir, cgroup, mount or process).

use husk_tests::oci::{Bundle, Runtime, host_mounts_under, is_husk};
use husk_tests::require_root;
use serde_json::Value;

/// Run create, expect failure, return stderr; check nothing was left.
fn create_fails(rt: &Runtime, b: &Bundle, id: &str) -> String {
    let o = rt.out(&["create", "--bundle", b.path_str(), id]);
    assert!(!o.status.success(), "create {id} succeeded");
    assert!(!rt.state_dir(id).exists() || !rt.state_dir(id).join("state.json").exists());
    assert!(rt.status(id).is_none(), "{id} exists after a failed create");
    let leftover = rt.cgroup().leaf_dirs("c");
    assert!(leftover.is_empty(), "cgroup left: {leftover:?}");
    assert!(host_mounts_under(b.path()).is_empty(), "mounts left");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// [`create_fails`] for a bundle running `true` whose default config `edit`
/// broke, in a runtime of its own.
fn broken_config_fails(id: &str, edit: impl FnOnce(&mut Value)) -> String {
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["true"]);
    b.edit(edit);
    create_fails(&rt, &b, id)
}

#[test]
fn unknown_namespace_names_the_field() {
    require_root!();
    let err = broken_config_fails("b1", |c| c["linux"]["namespaces"][2]["type"] = "foo".into());
    if is_husk() {
        assert!(
            err.contains(r#"config.json: linux.namespaces[2].type: unknown namespace "foo""#),
            "{err}"
        );
    }
}

#[test]
fn invalid_json_and_wrong_types() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["true"]);
    std::fs::write(b.path().join("config.json"), "{ not json").unwrap();
    let err = create_fails(&rt, &b, "b2");
    if is_husk() {
        assert!(err.contains("config.json"), "{err}");
    }
    let err = broken_config_fails("b3", |c| c["process"]["user"]["uid"] = "root".into());
    if is_husk() {
        assert!(err.contains("process.user.uid"), "{err}");
    }
}

#[test]
fn missing_rootfs() {
    require_root!();
    let err = broken_config_fails("b4", |c| c["root"]["path"] = "nope".into());
    if is_husk() {
        assert!(err.contains("root.path") && err.contains("nope"), "{err}");
    }
}

#[test]
fn missing_program_fails_create() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["/no/such/program"]);
    let err = create_fails(&rt, &b, "b5");
    assert!(err.contains("/no/such/program"), "{err}");
}

#[test]
fn bad_namespace_path() {
    require_root!();
    let err = broken_config_fails("b6", |c| {
        c["linux"]["namespaces"][1]["path"] = "/proc/nonexistent/ns/net".into()
    });
    if is_husk() {
        assert!(err.contains("linux.namespaces[1].path"), "{err}");
    }
}

#[test]
fn invalid_and_duplicate_ids() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    for bad in ["../x", "a/b", ".."] {
        let o = rt.out(&["create", "--bundle", b.path_str(), bad]);
        assert!(!o.status.success(), "id {bad:?} accepted");
    }
    assert!(!rt.root().parent().unwrap().join("x").exists());
    rt.ok(&["create", "--bundle", b.path_str(), "dup"]);
    let o = rt.out(&["create", "--bundle", b.path_str(), "dup"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        rt.state("dup")["status"],
        "created",
        "the first one is untouched"
    );
    rt.ok(&["delete", "--force", "dup"]);
}

#[test]
fn failing_hook_fails_create_and_cleans_up() {
    require_root!();
    let rt = Runtime::new();
    let mut b = Bundle::new(&rt, "c", &["sleep", "300"]);
    b.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]
        });
    });
    let o = rt.out(&["create", "--bundle", b.path_str(), "h1"]);
    assert!(!o.status.success());
    assert!(rt.status("h1").is_none());
    assert!(!rt.state_dir("h1").exists());
    // The init that was cloned before the hook ran is gone, and so is its cgroup.
    let leftover = rt.cgroup().leaf_dirs("c");
    assert!(leftover.is_empty(), "cgroup left: {leftover:?}");
}

#[test]
fn unknown_container_and_signal() {
    require_root!();
    let rt = Runtime::new();
    for args in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope", "KILL"],
        vec!["delete", "nope"],
    ] {
        let o = rt.out(&args);
        assert!(!o.status.success(), "{args:?}");
    }
    let b = Bundle::new(&rt, "c", &["sleep", "300"]);
    rt.ok(&["create", "--bundle", b.path_str(), "s1"]);
    let o = rt.out(&["kill", "s1", "NOTASIGNAL"]);
    assert!(!o.status.success());
    rt.ok(&["delete", "--force", "s1"]);
}
