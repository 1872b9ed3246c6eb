//! Bad CRI requests against a node with a running pod and the full pod
//! network (husk-bridge with masquerade, husk-portmap): each gets a gRPC
//! error naming the field or object, and the node is left exactly as it was
//! (the same mounts, state, IPAM allocations, iptables rules, veths, cgroups
//! and shims), with the good pod still running.

mod cri_client;
mod cri_restart_support;

use cri_client::{connect, ctr_config, rt};
use cri_restart_support::{leftovers, pod_config, write_portmap_conflist};
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;
use tonic::Code;

fn expect_err<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) {
    match r {
        Ok(v) => panic!("{what}: expected {code:?} naming {needle:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            assert!(
                s.message().contains(needle),
                "{what}: {:?} does not name {needle:?}",
                s.message()
            );
        }
    }
}

fn snapshot(node: &CriNode) -> Vec<String> {
    let mut v = leftovers(node);
    v.sort();
    v
}

#[test]
fn bad_requests_leave_the_node_exactly_as_it_was() {
    require_root!();
    let node = CriNode::start();
    write_portmap_conflist(&node);
    rt().block_on(async {
        let mut c = connect(&node).await;
        let good = pod_config(&node, "good", 8080);
        let pod = c
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(good.clone()),
                runtime_handler: String::new(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        let ctr = c
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ctr_config("main", "while true; do sleep 1; done")),
                sandbox_config: Some(good.clone()),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        c.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .expect("StartContainer");
        let before = snapshot(&node);
        assert!(
            before.iter().any(|l| l.starts_with("IPAM"))
                && before.iter().any(|l| l.starts_with("iptables")),
            "the snapshot sees the pod's IP and chains: {before:#?}"
        );

        // RunPodSandbox: each would otherwise allocate an IP and chains.
        let runp = |config: cri::PodSandboxConfig| cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let mut no_md = pod_config(&node, "x1", 0);
        no_md.metadata = None;
        let mut big_label = pod_config(&node, "x2", 0);
        big_label
            .labels
            .insert("big".into(), "x".repeat(1024 * 1024));
        let mut bad_port = pod_config(&node, "x3", 70000);
        bad_port.port_mappings[0].container_port = 80;
        let mut bad_cport = pod_config(&node, "x4", 8081);
        bad_cport.port_mappings[0].container_port = 0;
        let mut bad_proto = pod_config(&node, "x5", 8082);
        bad_proto.port_mappings[0].protocol = 7;
        let mut bad_hostip = pod_config(&node, "x6", 8083);
        bad_hostip.port_mappings[0].host_ip = "not-an-ip".into();
        let cases = [
            (
                "missing metadata",
                runp(no_md),
                Code::InvalidArgument,
                "config.metadata",
            ),
            (
                "1 MiB label",
                runp(big_label),
                Code::InvalidArgument,
                "config.labels[\"big\"]",
            ),
            (
                "host port",
                runp(bad_port),
                Code::InvalidArgument,
                "config.port_mappings[0].host_port",
            ),
            (
                "container port",
                runp(bad_cport),
                Code::InvalidArgument,
                "config.port_mappings[0].container_port",
            ),
            (
                "protocol",
                runp(bad_proto),
                Code::InvalidArgument,
                "config.port_mappings[0].protocol",
            ),
            (
                "host ip",
                runp(bad_hostip),
                Code::InvalidArgument,
                "config.port_mappings[0].host_ip",
            ),
            (
                "duplicate name",
                runp(good.clone()),
                Code::AlreadyExists,
                "good",
            ),
        ];
        for (what, req, code, field) in cases {
            expect_err(what, c.run_pod_sandbox(req).await, code, field);
        }

        // CreateContainer: each would otherwise mount a rootfs and start a shim.
        let create = |sandbox: &str, config: cri::ContainerConfig| cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(config),
            sandbox_config: Some(good.clone()),
        };
        let mut unknown_image = ctr_config("y1", "true");
        unknown_image.image.as_mut().unwrap().image = "docker.io/library/nosuch:v1".into();
        let mut missing_src = ctr_config("y2", "true");
        missing_src.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/nonexistent/husk-test".into(),
            ..Default::default()
        }];
        let mut rel_dst = ctr_config("y3", "true");
        rel_dst.mounts = vec![cri::Mount {
            container_path: "data".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        }];
        let mut big_label = ctr_config("y4", "true");
        big_label
            .labels
            .insert("big".into(), "x".repeat(1024 * 1024));
        let cases = [
            (
                "unknown image",
                create(&pod, unknown_image),
                Code::NotFound,
                "config.image.image",
            ),
            (
                "missing mount source",
                create(&pod, missing_src),
                Code::InvalidArgument,
                "config.mounts[0].host_path",
            ),
            (
                "relative mount target",
                create(&pod, rel_dst),
                Code::InvalidArgument,
                "config.mounts[0].container_path",
            ),
            (
                "1 MiB label",
                create(&pod, big_label),
                Code::InvalidArgument,
                "config.labels[\"big\"]",
            ),
            (
                "unknown sandbox",
                create("0123456789abcdef", ctr_config("y5", "true")),
                Code::NotFound,
                "0123456789abcdef",
            ),
            (
                "duplicate name",
                create(&pod, ctr_config("main", "true")),
                Code::AlreadyExists,
                "main",
            ),
        ];
        for (what, req, code, field) in cases {
            expect_err(what, c.create_container(req).await, code, field);
        }

        // Unknown ids, on every call that takes one and is not idempotent.
        let id = "feedfacefeedface".to_string();
        expect_err(
            "StartContainer",
            c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "StopContainer",
            c.stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "ContainerStatus",
            c.container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "ContainerStats",
            c.container_stats(cri::ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "ExecSync",
            c.exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 5,
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "ReopenContainerLog",
            c.reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: id.clone(),
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "StopPodSandbox",
            c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "PodSandboxStatus",
            c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await,
            Code::NotFound,
            &id,
        );
        expect_err(
            "PodSandboxStats",
            c.pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: id.clone(),
            })
            .await,
            Code::NotFound,
            &id,
        );
        // Removing what does not exist succeeds (CRI: idempotent) and changes nothing.
        c.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer of an unknown id");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .expect("RemovePodSandbox of an unknown id");

        assert_eq!(snapshot(&node), before, "a bad request changed the node");
        let r = c
            .exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["echo".into(), "fine".into()],
                timeout: 10,
            })
            .await
            .expect("exec in the good pod")
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "fine");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .expect("RemovePodSandbox");
    });
    let left = leftovers(&node);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
