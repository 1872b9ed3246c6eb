//! husk-bridge + husk-portmap driven by husk's invocation library, in
//! network namespaces of the test's own.

use husk_tests::cni::{CniLab, connectivity_suite, husk_plugin_dir, result_ip};
use husk_tests::netns::TestNetns;
use husk_tests::require_root;

#[test]
fn pods_connect_masquerade_and_hostports_work() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.0.0", "10.88.0.0/24"));
    connectivity_suite(&lab, &conf, &husk_plugin_dir(), "10.88.0.1");
}

#[test]
fn del_removes_everything_and_check_sees_damage() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.89.0.0/24"));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    let pm = r#"[{"hostPort":8081,"containerPort":80},{"hostPort":5353,"containerPort":53,"protocol":"udp"}]"#;
    let r = lab.tool_ok(&conf, &dirs, &["add", "c1", &ns, "--port-mappings", pm]);
    let ip = result_ip(&r);
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    let host_veth = v["interfaces"][1]["name"].as_str().unwrap().to_string();
    assert!(lab.ipam_dir().join("podnet").join(&ip).exists());
    let nat = lab.nat();
    assert!(
        nat.contains("id: \\\"c1\\\""),
        "no per-container rules:\n{nat}"
    );
    assert!(
        nat.contains(&format!("--to-destination {ip}:53")),
        "no UDP DNAT:\n{nat}"
    );
    lab.tool_ok(&conf, &dirs, &["check", "c1", &ns]);

    // CHECK reports an address removed behind the plugin's back.
    pod.exec_ok("ip", &["addr", "del", &format!("{ip}/24"), "dev", "eth0"]);
    let out = lab.tool(&conf, &dirs, &["check", "c1", &ns]);
    assert!(!out.status.success(), "CHECK passed with the address gone");
    let err: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(err["code"], 101, "{err}");
    assert!(err["msg"].as_str().unwrap().contains(&ip), "{err}");

    lab.tool_ok(&conf, &dirs, &["del", "c1", &ns]);
    assert!(
        !lab.ipam_dir().join("podnet").join(&ip).exists(),
        "allocation left"
    );
    let links = lab.node.exec_ok("ip", &["-o", "link"]);
    assert!(!links.contains(&host_veth), "host veth left: {links}");
    assert!(
        !pod.exec_ok("ip", &["-o", "link"]).contains("eth0"),
        "container veth left"
    );
    let nat = lab.nat();
    assert!(!nat.contains("c1"), "rules left after DEL:\n{nat}");
    assert!(!nat.contains("CNI-DN-"), "DNAT chain left:\n{nat}");
    // A second DEL, and one without a netns, succeed.
    lab.tool_ok(&conf, &dirs, &["del", "c1", &ns]);
    lab.tool_ok(&conf, &dirs, &["del", "c1", ""]);
    // CHECK after DEL fails: nothing is cached.
    assert!(
        !lab.tool(&conf, &dirs, &["check", "c1", &ns])
            .status
            .success()
    );
}

#[test]
fn del_tolerates_a_deleted_netns() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.0.0", "10.90.0.0/24"));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    let r = lab.tool_ok(
        &conf,
        &dirs,
        &[
            "add",
            "gone",
            &ns,
            "--port-mappings",
            r#"[{"hostPort":8082,"containerPort":80}]"#,
        ],
    );
    let ip = result_ip(&r);
    drop(pod);
    lab.tool_ok(&conf, &dirs, &["del", "gone", &ns]);
    assert!(!lab.ipam_dir().join("podnet").join(&ip).exists());
    assert!(!lab.nat().contains("gone"));
    assert!(!lab.node.exec_ok("ip", &["-o", "link"]).contains("veth"));
}

#[test]
fn gc_frees_stale_attachments() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.91.0.0/24"));
    let dirs = husk_plugin_dir();
    let keep = TestNetns::new();
    let stale = TestNetns::new();
    let ip_keep = result_ip(&lab.tool_ok(
        &conf,
        &dirs,
        &["add", "keep", keep.path().to_str().unwrap()],
    ));
    let ip_stale = result_ip(&lab.tool_ok(
        &conf,
        &dirs,
        &[
            "add",
            "stale",
            stale.path().to_str().unwrap(),
            "--port-mappings",
            r#"[{"hostPort":8083,"containerPort":80}]"#,
        ],
    ));
    // Forget the stale one's cache entry, as if the runtime lost track of it.
    std::fs::remove_file(lab.dir.path().join("cache/results/podnet-stale-eth0")).unwrap();
    lab.tool_ok(&conf, &dirs, &["status"]);
    lab.tool_ok(&conf, &dirs, &["gc", "keep/eth0"]);
    let store = lab.ipam_dir().join("podnet");
    assert!(store.join(&ip_keep).exists(), "GC freed a valid address");
    assert!(!store.join(&ip_stale).exists(), "GC kept a stale address");
    let nat = lab.nat();
    assert!(
        nat.contains("id: \\\"keep\\\""),
        "GC removed a valid chain:\n{nat}"
    );
    assert!(!nat.contains("stale"), "GC left stale chains:\n{nat}");
}

#[test]
fn cni_0_4_0_results_and_version() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("0.4.0", "10.92.0.0/24"));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    let r = lab.tool_ok(&conf, &dirs, &["add", "old", &ns]);
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    lab.tool_ok(&conf, &dirs, &["check", "old", &ns]);
    lab.tool_ok(&conf, &dirs, &["del", "old", &ns]);
    // GC needs 1.1.0.
    assert!(!lab.tool(&conf, &dirs, &["gc"]).status.success());
    // VERSION straight from the plugin.
    let out = std::process::Command::new(husk_tests::bins::bin("husk-bridge"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(["0.4.0", "1.0.0", "1.1.0"])
    );
}
