//! Bad configs get the spec's error JSON with the right code and change
//! nothing in the node.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use husk_tests::cni::{CniLab, husk_plugin_dir, ipam_allocations, link_view, result_ip};
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
    plugin_run(lab, plugin, "ADD", "bad1", pod, conf)
}

/// Run a plugin directly in the node; returns (exit ok, stdout JSON).
fn plugin_run(
    lab: &CniLab,
    plugin: &str,
    command: &str,
    container_id: &str,
    pod: &TestNetns,
    conf: &str,
) -> (bool, serde_json::Value) {
    let mut child = lab
        .node
        .command(husk_tests::bins::bin(plugin).to_str().unwrap())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
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

/// Every file and directory under `dir` with its contents.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.push((format!("{}/", p.display()), Vec::new()));
                out.extend(tree(&p));
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn cni_error(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "no CNI error JSON ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const TRAVERSAL: &str = "../../x/y";

#[test]
fn traversal_container_id_is_refused_and_writes_nothing() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.85.0.0/24"));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    // Links, nat rules, and every file of the lab: IPAM store and result
    // cache (the traversal would land inside the lab's dir).
    let before = (names_snapshot(&lab), tree(lab.dir.path()));
    let pm = r#"[{"hostPort":8092,"containerPort":80}]"#;

    // husk's invocation library refuses before running any plugin.
    for verb in ["add", "check", "del"] {
        let out = lab.tool(&conf, &dirs, &[verb, TRAVERSAL, &ns, "--port-mappings", pm]);
        assert!(!out.status.success(), "{verb} of {TRAVERSAL:?} succeeded");
        let err = cni_error(&out);
        assert_eq!(err["code"], 4, "{verb}: {err}");
        assert_eq!(
            err["msg"], "invalid characters in containerID",
            "{verb}: {err}"
        );
    }

    // So do the plugins, whoever runs them.
    let bridge = bridge_conf(
        &lab,
        "1.0.0",
        r#"{"type":"host-local","subnet":"10.85.0.0/24","dataDir":"DATADIR"}"#,
    );
    let portmap = r#"{"cniVersion":"1.0.0","name":"badnet","type":"husk-portmap",
        "runtimeConfig":{"portMappings":[{"hostPort":8093,"containerPort":80}]},
        "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.85.0.2/24"}]}}"#;
    for (plugin, conf) in [("husk-bridge", bridge.as_str()), ("husk-portmap", portmap)] {
        for cmd in ["ADD", "CHECK", "DEL"] {
            let (ok, err) = plugin_run(&lab, plugin, cmd, TRAVERSAL, &pod, conf);
            assert!(!ok, "{plugin} {cmd} of {TRAVERSAL:?} succeeded");
            assert_eq!(err["code"], 4, "{plugin} {cmd}: {err}");
            assert_eq!(err["details"], TRAVERSAL, "{plugin} {cmd}: {err}");
        }
    }

    let after = (names_snapshot(&lab), tree(lab.dir.path()));
    assert_eq!(
        after, before,
        "a refused id changed the node or wrote files"
    );
    assert!(
        link_view(&pod, "eth0").is_none(),
        "the pod got an interface"
    );
}

/// [`snapshot`] with links by name only: a bridge that had a port for a
/// moment may keep that port's MAC, and a fresh link's operstate settles
/// asynchronously (linkwatch).
fn names_snapshot(lab: &CniLab) -> (Vec<String>, String, Vec<String>) {
    let (links, nat, ipam) = snapshot(lab);
    let names = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    (names, nat, ipam)
}

#[test]
fn add_whose_result_cannot_be_cached_is_undone() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.0.0", "10.84.0.0/24"));
    let dirs = husk_plugin_dir();
    let pm = r#"[{"hostPort":8094,"containerPort":80}]"#;
    // One attachment added and deleted first: the bridge, the shared nat
    // chains and the store exist, as on any node that ran a pod.
    let warm = TestNetns::new();
    let warm_ns = warm.path().to_str().unwrap().to_string();
    lab.tool_ok(
        &conf,
        &dirs,
        &["add", "warm", &warm_ns, "--port-mappings", pm],
    );
    lab.tool_ok(&conf, &dirs, &["del", "warm", &warm_ns]);
    let cache = lab.dir.path().join("cache");
    std::fs::remove_dir_all(&cache).unwrap();

    let cases: [(&str, &dyn Fn()); 2] = [
        ("the cache dir is a file", &|| {
            std::fs::write(&cache, "not a directory").unwrap()
        }),
        ("the entry's path is a directory", &|| {
            let _ = std::fs::remove_file(&cache);
            std::fs::create_dir_all(cache.join("results/podnet-c1-eth0/taken")).unwrap();
        }),
    ];
    for (what, break_cache) in cases {
        break_cache();
        let pod = TestNetns::new();
        let ns = pod.path().to_str().unwrap().to_string();
        let before = names_snapshot(&lab);
        let out = lab.tool(&conf, &dirs, &["add", "c1", &ns, "--port-mappings", pm]);
        assert!(!out.status.success(), "{what}: ADD reported success");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("result cache"), "{what}: {stderr}");
        assert_eq!(
            names_snapshot(&lab),
            before,
            "{what}: the ADD was not undone"
        );
        assert!(
            ipam_allocations(&lab, "podnet").is_empty(),
            "{what}: allocation left"
        );
        assert!(link_view(&pod, "eth0").is_none(), "{what}: eth0 left");
        // libcni's cache writes `.tmp-<pid>-<n>` and renames it.
        let tmp: Vec<String> = tree(&cache)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(".tmp")))
            .collect();
        assert!(tmp.is_empty(), "{what}: temp files left: {tmp:?}");
    }
}

/// A config that cannot be read or parsed fails with its cause printed once
/// (anyhow prints the whole chain: a Display that repeated its source would
/// show "No such file or directory" twice).
#[test]
fn unreadable_config_prints_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.conflist");
    let garbled = dir.path().join("garbled.conflist");
    std::fs::write(&garbled, "{\"name\": ").expect("write config");
    let cases = [
        (&missing, "No such file or directory"),
        (&garbled, "EOF while parsing"),
    ];
    for (conf, cause) in cases {
        let out = std::process::Command::new(husk_tests::bins::bin("husk-cni-tool"))
            .arg("--conf")
            .arg(conf)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("status")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .expect("run husk-cni-tool");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&conf.display().to_string()), "{stderr}");
        assert_eq!(stderr.matches(cause).count(), 1, "{cause:?} in {stderr}");
    }
}
