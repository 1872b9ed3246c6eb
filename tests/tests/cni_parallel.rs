//! 100 attachments added and deleted concurrently: no address handed out
//! twice, nothing leaked.

use std::collections::HashSet;

use husk_tests::cni::{CniLab, husk_plugin_dir, result_ip};
use husk_tests::netns::TestNetns;
use husk_tests::require_root;

const PODS: usize = 100;

#[test]
fn hundred_parallel_add_del() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.99.0.0/24"));
    let dirs = husk_plugin_dir();
    let pods: Vec<TestNetns> = (0..PODS).map(|_| TestNetns::new()).collect();

    let run_all = |verb: &str| -> Vec<String> {
        std::thread::scope(|s| {
            let handles: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (lab, conf, dirs) = (&lab, &conf, &dirs);
                    let verb = verb.to_string();
                    s.spawn(move || {
                        let id = format!("par{i}");
                        let pm = format!(r#"[{{"hostPort":{},"containerPort":80}}]"#, 20000 + i);
                        let ns = p.path();
                        let mut args = vec![verb.as_str(), id.as_str(), ns.to_str().unwrap()];
                        if verb == "add" {
                            args.extend(["--port-mappings", pm.as_str()]);
                        }
                        lab.tool_ok(conf, dirs, &args)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker"))
                .collect()
        })
    };

    let results = run_all("add");
    let ips: Vec<String> = results.iter().map(|r| result_ip(r)).collect();
    let uniq: HashSet<&String> = ips.iter().collect();
    assert_eq!(uniq.len(), PODS, "an address was handed out twice: {ips:?}");
    let store = lab.ipam_dir().join("podnet");
    let files = std::fs::read_dir(&store).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .parse::<std::net::IpAddr>()
            .is_ok()
    });
    assert_eq!(files.count(), PODS);
    let nat = lab.nat();
    assert_eq!(
        nat.matches("-j CNI-DN-").count(),
        PODS,
        "portmap rules missing"
    );
    for (p, ip) in pods.iter().zip(&ips) {
        let addrs = p.exec_ok("ip", &["-o", "addr", "show", "eth0"]);
        assert!(
            addrs.contains(&format!("{ip}/24")),
            "pod lacks {ip}: {addrs}"
        );
    }

    run_all("del");
    let left: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .parse::<std::net::IpAddr>()
                .ok()
        })
        .collect();
    assert!(left.is_empty(), "leaked allocations: {left:?}");
    let nat = lab.nat();
    assert!(!nat.contains("id: \\\"par"), "leaked rules:\n{nat}");
    assert!(!nat.contains(":CNI-DN-"), "leaked DNAT chains:\n{nat}");
    let links = lab.node.exec_ok("ip", &["-o", "link"]);
    assert!(!links.contains("veth"), "leaked veths: {links}");
}
