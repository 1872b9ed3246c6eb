//! Pod namespaces and sysctls through a real `husklet serve`: a shared pid
//! namespace (shareProcessNamespace), host pid and ipc, pod sysctls in the
//! pod's own namespaces; non-namespaced or bad sysctls get an error naming
//! the field and leave no sandbox behind.

mod cri_client;

use std::collections::HashMap;

use cri_client::*;
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;
use tonic::Code;

fn ns_opts(
    network: cri::NamespaceMode,
    pid: cri::NamespaceMode,
    ipc: cri::NamespaceMode,
) -> Option<cri::NamespaceOption> {
    Some(cri::NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    })
}

/// Command lines of every process the container sees, one per line.
const PS: &str = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done";

async fn pid_ns(c: &mut Rt, id: &str) -> String {
    sh_ok(c, id, "readlink /proc/self/ns/pid").await
}

async fn pods(c: &mut Rt) -> usize {
    c.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .len()
}

#[test]
fn shared_host_and_private_pid_namespaces() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        use cri::NamespaceMode::{Node, Pod};

        // shareProcessNamespace: both containers in the pod's pinned pid ns.
        let mut pc = pod_config(&node, "shared");
        pod_sc(&mut pc).namespace_options = ns_opts(Pod, Pod, Pod);
        let pod = run_pod(&mut c, &pc).await;
        let mut a = ctr_config("a", "sleep 4242");
        ctr_sc(&mut a).namespace_options = ns_opts(Pod, Pod, Pod);
        let a = start(&mut c, &pod, &pc, a).await;
        let mut b = ctr_config("b", "sleep 1000");
        ctr_sc(&mut b).namespace_options = ns_opts(Pod, Pod, Pod);
        let b = start(&mut c, &pod, &pc, b).await;
        let seen = sh_ok(&mut c, &b, PS).await;
        assert!(seen.contains("sleep 4242"), "b does not see a: {seen}");
        // The first container is the namespace's init.
        assert_eq!(
            sh_ok(&mut c, &b, "tr '\\0' ' ' < /proc/1/cmdline").await,
            "sleep 4242"
        );
        let shared = pid_ns(&mut c, &a).await;
        assert_eq!(shared, pid_ns(&mut c, &b).await);
        // The init (the first container) exits: the kernel ends the other
        // members, and the pod's next container starts a fresh namespace.
        c.stop_container(cri::StopContainerRequest {
            container_id: a.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        husk_tests::wait_for("b to be ended with its pid namespace", 20, || {
            node.container_state(&b) == "CONTAINER_EXITED"
        });
        let mut d = ctr_config("d", "sleep 4444");
        ctr_sc(&mut d).namespace_options = ns_opts(Pod, Pod, Pod);
        let d = start(&mut c, &pod, &pc, d).await;
        assert_eq!(
            sh_ok(&mut c, &d, "tr '\\0' ' ' < /proc/1/cmdline").await,
            "sleep 4444"
        );
        // (Its inode number may be the old one's: the old namespace is freed.)
        let mut e = ctr_config("e", "sleep 1000");
        ctr_sc(&mut e).namespace_options = ns_opts(Pod, Pod, Pod);
        let e = start(&mut c, &pod, &pc, e).await;
        assert_eq!(pid_ns(&mut c, &e).await, pid_ns(&mut c, &d).await);

        // Without sharing: each container its own pid namespace.
        let pc2 = pod_config(&node, "private");
        let pod2 = run_pod(&mut c, &pc2).await;
        let x = start(&mut c, &pod2, &pc2, ctr_config("x", "sleep 4343")).await;
        let y = start(&mut c, &pod2, &pc2, ctr_config("y", "sleep 1000")).await;
        let seen = sh_ok(&mut c, &y, PS).await;
        assert!(!seen.contains("sleep 4343"), "y sees x: {seen}");
        assert_ne!(pid_ns(&mut c, &x).await, pid_ns(&mut c, &y).await);
        // TARGET (an ephemeral container's debug target): x's pid namespace.
        let mut t = ctr_config("t", "sleep 1000");
        ctr_sc(&mut t).namespace_options = Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Target as i32,
            target_id: x.clone(),
            ..Default::default()
        });
        let t = start(&mut c, &pod2, &pc2, t).await;
        assert_eq!(pid_ns(&mut c, &t).await, pid_ns(&mut c, &x).await);
        assert!(sh_ok(&mut c, &t, PS).await.contains("sleep 4343"));
        let mut bad = ctr_config("bad", "true");
        ctr_sc(&mut bad).namespace_options = Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Target as i32,
            target_id: "no-such-container".into(),
            ..Default::default()
        });
        let r = create(&mut c, &pod2, &pc2, bad).await;
        expect_err(r, Code::InvalidArgument, "namespace_options.target_id");

        // hostPID and hostIPC: the node's namespaces.
        let mut pc3 = pod_config(&node, "host");
        pod_sc(&mut pc3).namespace_options = ns_opts(Pod, Node, Node);
        let pod3 = run_pod(&mut c, &pc3).await;
        let mut h = ctr_config("h", "sleep 1000");
        ctr_sc(&mut h).namespace_options = ns_opts(Pod, Node, Node);
        let h = start(&mut c, &pod3, &pc3, h).await;
        let host_init = std::fs::read_to_string("/proc/1/cmdline")
            .unwrap()
            .replace('\0', " ");
        assert_eq!(
            sh_ok(&mut c, &h, "tr '\\0' ' ' < /proc/1/cmdline").await,
            host_init.trim()
        );
        let own = |kind: &str| {
            std::fs::read_link(format!("/proc/self/ns/{kind}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(
            sh_ok(&mut c, &h, "readlink /proc/self/ns/pid").await,
            own("pid")
        );
        assert_eq!(
            sh_ok(&mut c, &h, "readlink /proc/self/ns/ipc").await,
            own("ipc")
        );
        // The other pods have their own ipc namespace.
        assert_ne!(
            sh_ok(&mut c, &y, "readlink /proc/self/ns/ipc").await,
            own("ipc")
        );
    });
}

#[test]
fn pod_sysctls_land_in_the_pod_namespaces_and_bad_ones_are_refused() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let host_shm = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
        let mut pc = pod_config(&node, "sysctl");
        pc.linux.as_mut().unwrap().sysctls = HashMap::from([
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "123".to_string(),
            ),
            ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
        ]);
        let pod = run_pod(&mut c, &pc).await;
        let id = start(&mut c, &pod, &pc, ctr_config("s", "sleep 1000")).await;
        assert_eq!(
            sh_ok(
                &mut c,
                &id,
                "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"
            )
            .await,
            "123"
        );
        assert_eq!(
            sh_ok(&mut c, &id, "cat /proc/sys/kernel/shm_rmid_forced").await,
            "1"
        );
        // The node's ipc namespace is untouched.
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
            host_shm
        );

        let before = pods(&mut c).await;
        let ns_before = node.state_entries("ns");
        for (i, (k, v, needle)) in [
            (
                "vm.swappiness",
                "10",
                "config.linux.sysctls[\"vm.swappiness\"]",
            ),
            (
                "kernel.pid_max",
                "100000",
                "config.linux.sysctls[\"kernel.pid_max\"]",
            ),
            (
                "net.ipv4.ip_forward",
                "not-a-number",
                "config.linux.sysctls[\"net.ipv4.ip_forward\"]",
            ),
            (
                "net.no.such.key",
                "1",
                "config.linux.sysctls[\"net.no.such.key\"]",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let mut bad = pod_config(&node, &format!("bad{i}"));
            bad.linux.as_mut().unwrap().sysctls = HashMap::from([(k.to_string(), v.to_string())]);
            let r = c
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(bad),
                    ..Default::default()
                })
                .await;
            expect_err(r, Code::InvalidArgument, needle);
        }
        // A net.* sysctl with the node's network.
        let mut bad = pod_config(&node, "badnet");
        pod_sc(&mut bad).namespace_options = Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            ..Default::default()
        });
        bad.linux.as_mut().unwrap().sysctls =
            HashMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]);
        let r = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(bad),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::InvalidArgument, "net.ipv4.ip_forward");
        assert_eq!(pods(&mut c).await, before);
        assert_eq!(node.state_entries("ns"), ns_before);
    });
}
