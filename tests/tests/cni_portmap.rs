//! husk-portmap specifics: a pod reaching its own hostPort (hairpin to
//! self), the nat registry following changes made by others, GC of the
//! registries of deleted network namespaces, and CHECK with the mappings
//! cached at ADD.

use husk_tests::cni::{CniLab, NODE_IP, curl, httpd, husk_plugin_dir, result_ip};
use husk_tests::netns::TestNetns;
use husk_tests::require_root;

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("netns").ino()
}

/// Whether some process or /run/netns mount has a netns with this inode.
fn netns_inode_in_use(ino: u64) -> bool {
    let want = format!("net:[{ino}]");
    let procs = std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read_link(p.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == want)
    });
    let mounts = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::metadata(e.path()).is_ok_and(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.ino() == ino
                })
            })
        })
        .unwrap_or(false);
    procs || mounts
}

fn hairpin_to_self(bridge_nf: &str, subnet: &str, gw_prefix: &str) {
    let lab = CniLab::new();
    // Per-netns sysctl: only the lab's node namespace changes.
    lab.node.exec_ok(
        "sysctl",
        &[
            "-w",
            &format!("net.bridge.bridge-nf-call-iptables={bridge_nf}"),
        ],
    );
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.0.0", subnet));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    // Another pod first, so that the bridge's masquerade rules precede
    // portmap's in POSTROUTING as they do on a busy node.
    let other = TestNetns::new();
    lab.tool_ok(
        &conf,
        &dirs,
        &["add", "other", other.path().to_str().unwrap()],
    );
    let pm = r#"[{"hostPort":8088,"containerPort":80}]"#;
    let ip = result_ip(&lab.tool_ok(&conf, &dirs, &["add", "self", &ns, "--port-mappings", pm]));
    assert!(ip.starts_with(gw_prefix), "{ip}");
    let _h = httpd(&pod, &lab.dir.path().join("www"), 80, "me\n");
    assert_eq!(
        curl(&pod, &format!("http://{NODE_IP}:8088/")),
        Some("me\n".to_string()),
        "pod cannot reach its own hostPort (bridge-nf-call-iptables={bridge_nf})"
    );
    assert_eq!(
        curl(&other, &format!("http://{NODE_IP}:8088/")),
        Some("me\n".to_string()),
        "another pod cannot reach the hostPort (bridge-nf-call-iptables={bridge_nf})"
    );
    lab.tool_ok(&conf, &dirs, &["del", "self", &ns]);
    lab.tool_ok(
        &conf,
        &dirs,
        &["del", "other", other.path().to_str().unwrap()],
    );
}

#[test]
fn pod_reaches_its_own_hostport_with_bridge_nf_call_iptables() {
    require_root!();
    hairpin_to_self("1", "10.93.0.0/24", "10.93.0.");
}

#[test]
fn pod_reaches_its_own_hostport_without_bridge_nf_call_iptables() {
    require_root!();
    hairpin_to_self("0", "10.94.0.0/24", "10.94.0.");
}

/// The registry spares ADD an iptables-save, but anything committed by
/// someone else is seen: a hostPort mapped by another program clashes, and
/// shared jumps flushed by an admin are reported by CHECK and put back by
/// the next ADD.
#[test]
fn registry_follows_changes_made_by_others() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.95.0.0/24"));
    let dirs = husk_plugin_dir();
    let pods: Vec<TestNetns> = (0..3).map(|_| TestNetns::new()).collect();
    let ns: Vec<String> = pods
        .iter()
        .map(|p| p.path().to_str().unwrap().to_string())
        .collect();
    let pm = |p: u16| format!(r#"[{{"hostPort":{p},"containerPort":80}}]"#);
    lab.tool_ok(
        &conf,
        &dirs,
        &["add", "a", &ns[0], "--port-mappings", &pm(8090)],
    );
    // A clash with husk's own mapping, answered from the registry.
    let out = lab.tool(
        &conf,
        &dirs,
        &["add", "b", &ns[1], "--port-mappings", &pm(8090)],
    );
    assert!(!out.status.success(), "hostPort 8090 mapped twice");
    let err: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(err["code"], 103, "{err}");

    // Another program maps 9090 the reference plugin's way.
    let foreign = "*nat\n:CNI-DN-foreign - [0:0]\n\
        -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"othernet\\\" id: \\\"x\\\"\" -m multiport --dports 9090 -j CNI-DN-foreign\n\
        -A CNI-DN-foreign -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.1.2.3:80\n\
        COMMIT\n";
    let mut child = lab
        .node
        .command("iptables-restore")
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(foreign.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let out = lab.tool(
        &conf,
        &dirs,
        &["add", "b", &ns[1], "--port-mappings", &pm(9090)],
    );
    assert!(
        !out.status.success(),
        "hostPort 9090 of another program not seen"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("9090"));

    // An admin flushes PREROUTING: CHECK sees it, the next ADD repairs it.
    lab.node
        .exec_ok("iptables", &["-t", "nat", "-F", "PREROUTING"]);
    let out = lab.tool(
        &conf,
        &dirs,
        &["check", "a", &ns[0], "--port-mappings", &pm(8090)],
    );
    assert!(
        !out.status.success(),
        "CHECK passed without PREROUTING jump"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PREROUTING"));
    lab.tool_ok(
        &conf,
        &dirs,
        &["add", "c", &ns[2], "--port-mappings", &pm(8091)],
    );
    lab.tool_ok(
        &conf,
        &dirs,
        &["check", "a", &ns[0], "--port-mappings", &pm(8090)],
    );
    assert_eq!(
        lab.nat()
            .matches("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT")
            .count(),
        1
    );

    // DEL keeps it exact: the freed port can be taken by another pod.
    lab.tool_ok(&conf, &dirs, &["del", "a", &ns[0]]);
    lab.tool_ok(
        &conf,
        &dirs,
        &["add", "b", &ns[1], "--port-mappings", &pm(8090)],
    );
    for (id, n) in [("b", &ns[1]), ("c", &ns[2])] {
        lab.tool_ok(&conf, &dirs, &["del", id, n]);
    }
    let nat = lab.nat();
    assert!(!nat.contains("id: \\\"b\\\""), "{nat}");
    assert!(!nat.contains("id: \\\"c\\\""), "{nat}");
}

/// Lock and registry files under /run/husk-cni of a node netns that was
/// deleted are removed by the next GC; those of live ones stay.
#[test]
fn gc_removes_registries_of_deleted_netns() {
    require_root!();
    let dirs = husk_plugin_dir();
    let live = CniLab::new();
    let conf = live.write_conf("net.conflist", &live.husk_conflist("1.1.0", "10.96.0.0/24"));
    let pod = TestNetns::new();
    let pm = r#"[{"hostPort":8092,"containerPort":80}]"#;
    let (gone_ino, live_ino) = {
        let gone = CniLab::new();
        let gconf = gone.write_conf("net.conflist", &gone.husk_conflist("1.1.0", "10.97.0.0/24"));
        let gpod = TestNetns::new();
        let gns = gpod.path().to_str().unwrap().to_string();
        gone.tool_ok(&gconf, &dirs, &["add", "g", &gns, "--port-mappings", pm]);
        gone.tool_ok(&gconf, &dirs, &["del", "g", &gns]);
        let ns = pod.path().to_str().unwrap().to_string();
        live.tool_ok(&conf, &dirs, &["add", "l", &ns, "--port-mappings", pm]);
        (inode(&gone.node.path()), inode(&live.node.path()))
        // `gone` (its node netns) is deleted here.
    };
    let file = |ino: u64, ext: &str| {
        std::path::PathBuf::from(format!("/run/husk-cni/portmap-{ino}.{ext}"))
    };
    assert!(file(gone_ino, "lock").exists());
    assert!(file(live_ino, "lock").exists());
    live.tool_ok(&conf, &dirs, &["gc", "l/eth0"]);
    // nsfs inode numbers are reused at once: a netns another test created
    // meanwhile may own it now, and then the file is rightly kept.
    if file(gone_ino, "lock").exists() && netns_inode_in_use(gone_ino) {
        eprintln!("inode {gone_ino} was reused by another netns: not checked");
    } else {
        assert!(
            !file(gone_ino, "lock").exists(),
            "lock of a deleted netns left"
        );
        assert!(
            !file(gone_ino, "json").exists(),
            "registry of a deleted netns left"
        );
    }
    assert!(file(live_ino, "lock").exists(), "GC removed a live lock");
    live.tool_ok(&conf, &dirs, &["del", "l", pod.path().to_str().unwrap()]);
}

/// CHECK without the mappings uses the ones cached at ADD (libcni's cached
/// runtime config): it passes while the pod's DNAT rules are there and
/// fails once they are removed behind husk's back.
#[test]
fn check_uses_the_port_mappings_cached_at_add() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.102.0.0/24"));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    let pm = r#"[{"hostPort":8094,"containerPort":80,"protocol":"tcp"}]"#;
    lab.tool_ok(&conf, &dirs, &["add", "cc", &ns, "--port-mappings", pm]);
    lab.tool_ok(&conf, &dirs, &["check", "cc", &ns]);

    // Flush the pod's own chain (found through its jump's owner comment).
    let nat = lab.nat();
    let chain = nat
        .lines()
        .find(|l| l.starts_with("-A CNI-HOSTPORT-DNAT") && l.contains("id: \\\"cc\\\""))
        .and_then(|l| l.rsplit_once("-j "))
        .map(|(_, c)| c.trim().to_string())
        .unwrap_or_else(|| panic!("no DNAT jump of pod cc in:\n{nat}"));
    lab.node.exec_ok("iptables", &["-t", "nat", "-F", &chain]);
    let out = lab.tool(&conf, &dirs, &["check", "cc", &ns]);
    assert!(
        !out.status.success(),
        "CHECK passed with the DNAT rule of hostPort 8094 gone"
    );
    let err: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(
        err["msg"].as_str().is_some_and(|m| m.contains("8094")),
        "{err}"
    );

    // DEL, also without the mappings, removes the pod's chain and jump.
    lab.tool_ok(&conf, &dirs, &["del", "cc", &ns]);
    let nat = lab.nat();
    assert!(!nat.contains(&chain), "{nat}");
}
