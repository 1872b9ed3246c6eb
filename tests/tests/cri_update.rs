//! UpdateContainerResources over gRPC against a real `husklet serve`: the
//! new limits reach the container's cgroup and ContainerStatus; a bad
//! request names the field and changes nothing.

mod cri_client;

use std::path::PathBuf;

use cri_client::*;
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;
use tonic::Code;

/// The container's cgroup file `v1` (or `v2` on a unified host).
fn cgroup_file(node: &CriNode, leaf: &str, v1: &str, v2: &str) -> PathBuf {
    let name = if husk_tests::cgroup::is_v2() { v2 } else { v1 };
    node.cgroup
        .leaf_dirs(leaf)
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {name} for {leaf}"))
}

fn memory_limit(node: &CriNode, leaf: &str) -> String {
    husk_tests::cgroup::read(&cgroup_file(
        node,
        leaf,
        "memory.limit_in_bytes",
        "memory.max",
    ))
}

async fn status_resources(c: &mut Rt, id: &str) -> cri::LinuxContainerResources {
    c.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
    .resources
    .and_then(|r| r.linux)
    .unwrap_or_default()
}

#[test]
fn updates_reach_the_cgroup_and_the_status() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "upd");
        let pod = run_pod(&mut c, &pc).await;
        let mut cfg = ctr_config("u", "sleep 1000");
        cfg.linux.get_or_insert_default().resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_shares: 256,
            ..Default::default()
        });
        let id = start(&mut c, &pod, &pc, cfg).await;
        let leaf = format!("upd/{id}");
        assert_eq!(memory_limit(&node, &leaf), (64u64 << 20).to_string());

        c.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                cpu_shares: 512,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources");
        assert_eq!(memory_limit(&node, &leaf), (96u64 << 20).to_string());
        let shares =
            husk_tests::cgroup::read(&cgroup_file(&node, &leaf, "cpu.shares", "cpu.weight"));
        let want = if husk_tests::cgroup::is_v2() {
            // runc's conversion of 512 shares.
            "20"
        } else {
            "512"
        };
        assert_eq!(shares, want);
        let r = status_resources(&mut c, &id).await;
        assert_eq!((r.memory_limit_in_bytes, r.cpu_shares), (96 << 20, 512));

        // Bad requests: the field is named, nothing changes.
        let r = c
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 32 << 20,
                    cpu_period: 5,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::InvalidArgument, "linux.cpu_period");
        // A CPU the node does not have: refused before the cgroup is touched.
        let r = c
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 32 << 20,
                    cpuset_cpus: "4095".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::InvalidArgument, "linux.cpuset_cpus");
        let r = c
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: None,
                ..Default::default()
            })
            .await;
        expect_err(r, Code::InvalidArgument, "linux");
        let r = c
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: "no-such-container".into(),
                linux: Some(cri::LinuxContainerResources::default()),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::NotFound, "no-such-container");
        assert_eq!(memory_limit(&node, &leaf), (96u64 << 20).to_string());
        assert_eq!(
            status_resources(&mut c, &id).await.memory_limit_in_bytes,
            96 << 20
        );

        // An exited container keeps the new values in its record only.
        c.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        c.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("update an exited container");
        let r = status_resources(&mut c, &id).await;
        assert_eq!((r.memory_limit_in_bytes, r.cpu_shares), (128 << 20, 512));
    });
}

#[test]
fn unified_and_hugepages_follow_the_node() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "node");
        let pod = run_pod(&mut c, &pc).await;
        let mut cfg = ctr_config("uni", "sleep 1000");
        cfg.linux.get_or_insert_default().resources = Some(cri::LinuxContainerResources {
            unified: [("memory.high".to_string(), "50000000".to_string())].into(),
            ..Default::default()
        });
        let before = node.state_entries("containers");
        let r = create(&mut c, &pod, &pc, cfg).await;
        if husk_tests::cgroup::is_v2() {
            let id = r.expect("unified on cgroup v2");
            let f = cgroup_file(&node, &format!("node/{id}"), "memory.high", "memory.high");
            assert_eq!(husk_tests::cgroup::read(&f), "49999872");
        } else {
            expect_err(r, Code::InvalidArgument, "config.linux.resources.unified");
            assert_eq!(node.state_entries("containers"), before);
        }
        let mut cfg = ctr_config("huge", "sleep 1000");
        cfg.linux.get_or_insert_default().resources = Some(cri::LinuxContainerResources {
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "3MB".into(),
                limit: 0,
            }],
            ..Default::default()
        });
        let r = create(&mut c, &pod, &pc, cfg).await;
        expect_err(r, Code::InvalidArgument, "hugepage_limits[0].page_size");
    });
}
