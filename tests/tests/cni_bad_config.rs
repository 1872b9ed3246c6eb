//! Bad configs get the spec's error JSON with the right code and change
//! nothing in the node.

use std::io::Write;
use std::process::Stdio;

use husk_tests::cni::{CniLab, husk_plugin_dir, result_ip};
use husk_tests::netns::TestNetns;
use husk_tests::require_root;

/// Node state that a failed ADD must leave alone.
fn snapshot(lab: &CniLab) -> (String, String, Vec<String>) {
    let links = lab.node.exec_ok("ip", &["-o", "link"]);
    let nat: String = lab
        .nat()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut ipam: Vec<String> = walk(&lab.ipam_dir());
    ipam.sort();
    (links, nat, ipam)
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if !p.ends_with("lock") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Run a plugin ADD directly in the node; returns (exit ok, stdout JSON).
fn plugin_add(
    lab: &CniLab,
    plugin: &str,
    pod: &TestNetns,
    conf: &str,
) -> (bool, serde_json::Value) {
    let mut child = lab
        .node
        .command(husk_tests::bins::bin(plugin).to_str().unwrap())
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "bad1")
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", husk_plugin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.success(), v)
}

fn bridge_conf(lab: &CniLab, version: &str, ipam: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"badnet","type":"husk-bridge","bridge":"cni-bad","isGateway":true,"ipMasq":true,
            "ipam":{ipam}}}"#
    )
    .replace("DATADIR", lab.ipam_dir().to_str().unwrap())
}

#[test]
fn bad_configs_get_spec_errors_and_change_nothing() {
    require_root!();
    let lab = CniLab::new();
    let pod = TestNetns::new();
    let before = snapshot(&lab);
    let good_ipam = r#"{"type":"host-local","subnet":"10.97.0.0/24","dataDir":"DATADIR"}"#;
    let cases: Vec<(&str, String, u64, &str)> = vec![
        (
            "invalid subnet",
            bridge_conf(
                &lab,
                "1.0.0",
                r#"{"type":"host-local","subnet":"10.97.0.0/33","dataDir":"DATADIR"}"#,
            ),
            7,
            "ipam.subnet",
        ),
        (
            "subnet with host bits",
            bridge_conf(
                &lab,
                "1.0.0",
                r#"{"type":"host-local","subnet":"10.97.0.9/24","dataDir":"DATADIR"}"#,
            ),
            7,
            "host bits",
        ),
        (
            "missing ipam",
            bridge_conf(&lab, "1.0.0", "null"),
            7,
            "ipam",
        ),
        (
            "missing name",
            bridge_conf(&lab, "1.0.0", good_ipam).replace(r#""name":"badnet","#, ""),
            7,
            "name",
        ),
        (
            "unsupported cniVersion",
            bridge_conf(&lab, "0.3.1", good_ipam),
            1,
            "0.3.1",
        ),
        (
            "not JSON",
            "{\"cniVersion\":".to_string(),
            6,
            "network config",
        ),
        (
            "mistyped field",
            bridge_conf(&lab, "1.0.0", good_ipam).replace(r#""ipMasq":true"#, r#""ipMasq":"yes""#),
            7,
            "bool",
        ),
        (
            "unsupported field",
            bridge_conf(&lab, "1.0.0", good_ipam).replace(r#""ipMasq":true"#, r#""vlan":7"#),
            2,
            "vlan",
        ),
        (
            "missing IPAM plugin",
            bridge_conf(&lab, "1.0.0", r#"{"type":"no-such-ipam"}"#),
            7,
            "ipam.type",
        ),
    ];
    for (what, conf, code, needle) in cases {
        let (ok, err) = plugin_add(&lab, "husk-bridge", &pod, &conf);
        assert!(!ok, "{what}: ADD succeeded");
        assert_eq!(err["code"], code, "{what}: {err}");
        assert!(
            err["msg"].as_str().unwrap_or_default().contains(needle),
            "{what}: {err}"
        );
        assert_eq!(snapshot(&lab), before, "{what}: the node changed");
        assert!(
            !pod.exec_ok("ip", &["-o", "link"]).contains("eth0"),
            "{what}: pod changed"
        );
    }

    // portmap: a bad mapping is code 7.
    let pm = r#"{"cniVersion":"1.0.0","name":"badnet","type":"husk-portmap",
        "runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"sctp"}]},
        "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.97.0.2/24"}]}}"#;
    let (ok, err) = plugin_add(&lab, "husk-portmap", &pod, pm);
    assert!(!ok);
    assert_eq!(err["code"], 7, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("protocol"), "{err}");
    assert_eq!(snapshot(&lab), before, "portmap: the node changed");
}

#[test]
fn hostport_clash_is_an_error_and_rolls_back() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.0.0", "10.98.0.0/24"));
    let dirs = husk_plugin_dir();
    let p1 = TestNetns::new();
    let p2 = TestNetns::new();
    let pm = r#"[{"hostPort":8090,"containerPort":80}]"#;
    let ip1 = result_ip(&lab.tool_ok(
        &conf,
        &dirs,
        &[
            "add",
            "first",
            p1.path().to_str().unwrap(),
            "--port-mappings",
            pm,
        ],
    ));
    let before = snapshot(&lab);
    let out = lab.tool(
        &conf,
        &dirs,
        &[
            "add",
            "second",
            p2.path().to_str().unwrap(),
            "--port-mappings",
            pm,
        ],
    );
    assert!(!out.status.success(), "clashing hostPort accepted");
    let err: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(err["code"], 103, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("8090"), "{err}");
    // The chain's bridge step was undone: same links, rules and allocations.
    assert_eq!(snapshot(&lab), before, "failed ADD left changes");
    assert!(!p2.exec_ok("ip", &["-o", "link"]).contains("eth0"));
    assert!(lab.ipam_dir().join("podnet").join(&ip1).exists());
    lab.tool_ok(&conf, &dirs, &["del", "first", p1.path().to_str().unwrap()]);
}
