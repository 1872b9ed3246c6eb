//! A failed ADD removes only what it created: never another attachment's
//! interface, veth or address, even when it names the same netns and
//! interface, or the same container id.

use husk_tests::cni::{
    CniLab, LinkView, husk_plugin_dir, ipam_allocations, link_view, ping, result_host_veth,
    result_ip,
};
use husk_tests::netns::TestNetns;
use husk_tests::require_root;

/// The pair of an attachment: its container end in `pod`, and the host end
/// `host_veth` in the node, which is that end's peer and on the bridge.
fn intact_pair(lab: &CniLab, pod: &TestNetns, host_veth: &str) -> Result<LinkView, String> {
    let cont = link_view(pod, "eth0").ok_or("eth0 is gone from the pod")?;
    let host = link_view(&lab.node, host_veth).ok_or(format!("host veth {host_veth} is gone"))?;
    if cont.peer != Some(host.index) {
        return Err(format!(
            "eth0's peer is {:?}, host veth {host_veth} is {}",
            cont.peer, host.index
        ));
    }
    if host.master.as_deref() != Some("cni-h0") {
        return Err(format!("host veth {host_veth} is on {:?}", host.master));
    }
    Ok(cont)
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

#[test]
fn second_add_on_a_held_interface_leaves_the_first_attachment_intact() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.0.0", "10.86.0.0/24"));
    let dirs = husk_plugin_dir();
    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    let r1 = lab.tool_ok(&conf, &dirs, &["add", "first", &ns]);
    let (ip1, hv1) = (result_ip(&r1), result_host_veth(&r1));
    let eth0 = intact_pair(&lab, &pod, &hv1).unwrap();
    assert!(ping(&pod, "10.86.0.1"), "the first pod has no connectivity");

    // Another container id claims the same netns and interface name.
    let out = lab.tool(&conf, &dirs, &["add", "second", &ns]);
    assert!(!out.status.success(), "a second eth0 was attached");
    let err = cni_error(&out);
    assert!(
        err["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("already exists"),
        "{err}"
    );

    // The first attachment is untouched: the same eth0 (index and MAC) with
    // its address, the same host veth on the bridge, its allocation, its
    // connectivity; the second left nothing.
    let after = intact_pair(&lab, &pod, &hv1).unwrap_or_else(|e| panic!("first attachment: {e}"));
    assert_eq!(after, eth0, "eth0 was replaced");
    let addrs = pod.exec_ok("ip", &["-o", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains(&format!("{ip1}/24")),
        "eth0 lost {ip1}: {addrs}"
    );
    assert_eq!(
        ipam_allocations(&lab, "podnet"),
        vec![(ip1.clone(), "first".to_string())],
        "allocations after the failed ADD"
    );
    assert!(ping(&pod, "10.86.0.1"), "the first pod lost connectivity");
    let nat = lab.nat();
    assert!(!nat.contains("second"), "the failed ADD left rules:\n{nat}");
    assert!(
        nat.contains("id: \\\"first\\\""),
        "the first's rules went:\n{nat}"
    );

    lab.tool_ok(&conf, &dirs, &["del", "first", &ns]);
    assert!(link_view(&pod, "eth0").is_none());
    assert!(link_view(&lab.node, &hv1).is_none());
    assert!(ipam_allocations(&lab, "podnet").is_empty());
}

const PODS: usize = 40;

#[test]
fn concurrent_adds_with_one_container_id_keep_every_success() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.87.0.0/24"));
    let dirs = husk_plugin_dir();
    let pods: Vec<TestNetns> = (0..PODS).map(|_| TestNetns::new()).collect();

    // One id for all: a runtime bug, but no ADD may undo another's work.
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|p| {
                let (lab, conf, dirs) = (&lab, &conf, &dirs);
                s.spawn(move || lab.tool(conf, dirs, &["add", "dup", p.path().to_str().unwrap()]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });

    let mut host_veths = Vec::new();
    for (i, (pod, out)) in pods.iter().zip(&outs).enumerate() {
        if out.status.success() {
            let hv = result_host_veth(&String::from_utf8_lossy(&out.stdout));
            host_veths.push((i, hv));
        } else {
            // A failure is clean: a CNI error and nothing in its pod.
            let err = cni_error(out);
            assert!(err["code"].as_u64().is_some(), "pod {i}: {err}");
            assert!(
                link_view(pod, "eth0").is_none(),
                "pod {i}: failed ADD left eth0 ({err})"
            );
        }
    }
    assert!(!host_veths.is_empty(), "every ADD failed");
    eprintln!("{} of {PODS} ADDs succeeded", host_veths.len());
    // Checked after all ADDs are done: no later ADD removed a success's pair.
    for (i, hv) in &host_veths {
        intact_pair(&lab, &pods[*i], hv).unwrap_or_else(|e| panic!("pod {i} ({hv}): {e}"));
    }
    let mut names: Vec<&String> = host_veths.iter().map(|(_, n)| n).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), host_veths.len(), "host veth names repeat");

    std::thread::scope(|s| {
        for p in &pods {
            let (lab, conf, dirs) = (&lab, &conf, &dirs);
            s.spawn(move || lab.tool_ok(conf, dirs, &["del", "dup", p.path().to_str().unwrap()]));
        }
    });
    for (i, p) in pods.iter().enumerate() {
        assert!(
            link_view(p, "eth0").is_none(),
            "pod {i} keeps eth0 after DEL"
        );
    }
    let links = lab.node.exec_ok("ip", &["-o", "link"]);
    assert!(!links.contains("veth"), "veths left: {links}");
    assert!(
        ipam_allocations(&lab, "podnet").is_empty(),
        "allocations left"
    );
    let nat = lab.nat();
    assert!(!nat.contains("dup"), "rules left:\n{nat}");
}
