//! Pod networking through husklet: a hostPort answers on the node's address,
//! from the node itself and from another host, through husk-portmap; and
//! once the pod is removed the port is closed and its chains are gone.

mod cri_client;
mod cri_restart_support;

use cri_restart_support::{leftovers, run, write_portmap_conflist};
use husk_tests::cri::{CriNode, crictl_path};
use husk_tests::netns::TestNetns;
use husk_tests::{require_root, skip, wait_for};

/// The node's address, on a link to the "outside" netns.
const NODE_IP: &str = "192.168.77.1";
const OUTSIDE_IP: &str = "192.168.77.2";
const HOST_PORT: u16 = 18080;

macro_rules! require_crictl {
    () => {
        require_root!();
        if crictl_path().is_none() {
            skip!(
                "k8s-tools",
                "crictl not found in {} (set HUSK_K8S_BIN, or run the setup that unpacks it)",
                husk_tests::cri::k8s_bin_dir().display()
            );
        }
    };
}

fn curl(cmd: &mut std::process::Command, url: &str) -> Option<String> {
    let out = cmd
        .args(["-sS", "-m", "3", url])
        .output()
        .expect("run curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_host_port_answers_on_the_node_until_the_pod_is_removed() {
    require_crictl!();
    let node = CriNode::start();
    write_portmap_conflist(&node);
    // The node's own address, on a veth to another host's namespace.
    let outside = TestNetns::new();
    run(
        "ip",
        &[
            "link",
            "add",
            "vout",
            "type",
            "veth",
            "peer",
            "name",
            "vin",
            "netns",
            outside.name(),
        ],
    );
    run(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/24"), "dev", "vout"],
    );
    run("ip", &["link", "set", "vout", "up"]);
    outside.exec_ok(
        "ip",
        &["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "vin"],
    );
    outside.exec_ok("ip", &["link", "set", "vin", "up"]);

    let cfg = serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "attempt": 0},
        "hostname": "web",
        "log_directory": node.logs().join("web"),
        "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": HOST_PORT}],
        "linux": {"cgroup_parent": node.cgroup_parent("web")},
    });
    let pc = node.dir.path().join("pod-web.json");
    std::fs::write(&pc, cfg.to_string()).expect("pod config");
    let pod = node
        .crictl_ok(&["runp", pc.to_str().unwrap()])
        .trim()
        .to_string();
    let ctr = node.create(&pod, &pc, "httpd", "httpd -f -p 80 -h /etc");
    node.crictl_ok(&["start", &ctr]);

    let url = format!("http://{NODE_IP}:{HOST_PORT}/hostname");
    let mut page = None;
    wait_for("the hostPort to answer on the node", 10, || {
        page = curl(&mut std::process::Command::new("curl"), &url);
        page.is_some()
    });
    assert_eq!(page.as_deref().map(str::trim), Some("web"));
    let from_outside = curl(&mut outside.command("curl"), &url);
    assert_eq!(
        from_outside.as_deref().map(str::trim),
        Some("web"),
        "the hostPort does not answer another host"
    );
    // The pod's own port is not the node's: nothing listens there.
    assert_eq!(
        curl(
            &mut std::process::Command::new("curl"),
            &format!("http://{NODE_IP}:80/hostname")
        ),
        None
    );

    node.crictl_ok(&["rmp", "--force", &pod]);
    assert_eq!(
        curl(&mut outside.command("curl"), &url),
        None,
        "the hostPort still answers after the pod was removed"
    );
    let left = leftovers(&node);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
