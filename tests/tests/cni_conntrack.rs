//! husk-portmap deletes stale UDP conntrack entries of the hostPorts it maps
//! (as the reference plugin does on ADD): a UDP flow that reached the node
//! while no pod held its hostPort must reach the next pod that maps it.

use std::net::UdpSocket;
use std::time::Duration;

use husk_cni::netlink::NetNs;
use husk_cni::netlink::conntrack::{Conntrack, is_udp_to};
use husk_tests::cni::{CniLab, NODE_IP, OUTSIDE_IP, husk_plugin_dir, result_ip};
use husk_tests::netns::TestNetns;
use husk_tests::require_root;

const HOST_PORT: u16 = 5300;
const CLIENT_PORT: u16 = 40000;

fn open(ns: &TestNetns) -> NetNs {
    NetNs::open(&ns.path()).expect("open netns")
}

/// The node's tracked UDP flows to the hostPort from the client's port, as
/// `/proc/net/nf_conntrack` shows them there (or, without that file, as
/// ctnetlink dumps them).
fn tracked(node: &TestNetns) -> Vec<String> {
    let want = format!("sport={CLIENT_PORT} dport={HOST_PORT} ");
    let out = node.exec("cat", &["/proc/net/nf_conntrack"]);
    if out.status.success() {
        return String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(" udp ") && l.contains(&want))
            .map(str::to_string)
            .collect();
    }
    open(node)
        .run_in(|| {
            let mut ct = Conntrack::open().expect("ctnetlink");
            ct.dump(nix::sys::socket::AddressFamily::Inet)
                .expect("dump")
                .into_iter()
                .filter(|f| is_udp_to(f, &[(HOST_PORT, None)]))
                .filter(|f| f.orig.ports.is_some_and(|(s, _)| s == CLIENT_PORT))
                .map(|f| format!("{f:?}"))
                .collect()
        })
        .expect("enter node netns")
}

/// Send `msg` to the node's hostPort from the outside's fixed client port
/// (the same 4-tuple each time, as a long-lived UDP client does).
fn send_from_outside(outside: &TestNetns, msg: &str) {
    open(outside)
        .run_in(|| {
            let s = UdpSocket::bind((OUTSIDE_IP, CLIENT_PORT)).expect("bind client");
            s.send_to(msg.as_bytes(), (NODE_IP, HOST_PORT))
                .expect("send");
        })
        .expect("enter outside netns");
}

#[test]
fn add_deletes_stale_udp_conntrack_entries_of_its_hostports() {
    require_root!();
    let lab = CniLab::new();
    let conf = lab.write_conf("net.conflist", &lab.husk_conflist("1.1.0", "10.101.0.0/24"));
    let dirs = husk_plugin_dir();
    let pm = format!(r#"[{{"hostPort":{HOST_PORT},"containerPort":53,"protocol":"udp"}}]"#);

    // The previous pod held the hostPort and went away; its rules are gone,
    // conntrack (enabled by the nat rules) stays on in the node.
    let old = TestNetns::new();
    let old_ns = old.path().to_str().unwrap().to_string();
    lab.tool_ok(
        &conf,
        &dirs,
        &["add", "old", &old_ns, "--port-mappings", &pm],
    );
    lab.tool_ok(&conf, &dirs, &["del", "old", &old_ns]);

    // Meanwhile the client keeps sending: the node tracks a NAT-less flow.
    send_from_outside(&lab.outside, "before");
    let before = tracked(&lab.node);
    assert!(
        !before.is_empty(),
        "no conntrack entry for udp {OUTSIDE_IP}:{CLIENT_PORT} -> {NODE_IP}:{HOST_PORT}"
    );

    let pod = TestNetns::new();
    let ns = pod.path().to_str().unwrap().to_string();
    let ip = result_ip(&lab.tool_ok(&conf, &dirs, &["add", "new", &ns, "--port-mappings", &pm]));
    let after = tracked(&lab.node);
    assert!(
        after.is_empty(),
        "stale entry left after ADD: {after:?} (was {before:?})"
    );

    // The same flow now reaches the pod.
    let pod_ns = open(&pod);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        pod_ns
            .run_in(|| {
                let s = UdpSocket::bind(("0.0.0.0", 53)).expect("bind in pod");
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 64];
                s.recv_from(&mut buf)
                    .ok()
                    .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
            })
            .expect("enter pod netns")
    });
    ready_rx.recv().expect("listener ready");
    for _ in 0..3 {
        send_from_outside(&lab.outside, "after");
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = listener.join().expect("listener thread");
    assert_eq!(
        got.as_deref(),
        Some("after"),
        "UDP to hostPort {HOST_PORT} did not reach the pod {ip}:53"
    );
    lab.tool_ok(&conf, &dirs, &["del", "new", &ns]);
}
