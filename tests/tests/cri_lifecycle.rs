//! How a container's work is split over the CRI calls, as containerd splits
//! it: CreateContainer only records it (no rootfs, no shim, no runtime
//! container), StartContainer mounts and launches, the shim releases the
//! container (`husk delete`, rootfs unmounted) as soon as it exits, and
//! RemoveContainer moves the rest aside.

mod cri_client;

use std::path::Path;
use std::time::{Duration, Instant};

use cri_client::*;
use husk_tests::cri::CriNode;
use husk_tests::require_root;
use k8s_cri::v1 as cri;
use tonic::Code;

/// Whether the rootfs is mounted, in husklet's mount namespace.
fn mounted(node: &CriNode, id: &str) -> bool {
    let pid = node.husklet_pid().expect("husklet runs");
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .any(|l| l.contains(&format!("/containers/{id}/rootfs")))
}

/// The store's dir for the container's rootfs.
fn rootfs_dir(node: &CriNode, id: &str) -> std::path::PathBuf {
    node.root().join("containers").join(id)
}

/// husk's state dir of the container.
fn runtime_dir(node: &CriNode, id: &str) -> std::path::PathBuf {
    node.state().join("runtime").join(id)
}

fn shim_dir(node: &CriNode, id: &str) -> std::path::PathBuf {
    node.state().join("shim").join(&id[..32])
}

async fn status(c: &mut Rt, id: &str) -> cri::ContainerStatus {
    c.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .expect("status")
}

async fn wait_exited(c: &mut Rt, id: &str) -> cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(c, id).await;
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return st;
        }
        assert!(Instant::now() < deadline, "{id} did not exit: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exit_record(node: &CriNode, id: &str) -> serde_json::Value {
    let p = shim_dir(node, id).join("exit.json");
    serde_json::from_slice(&std::fs::read(&p).expect("exit.json")).expect("exit.json is JSON")
}

fn wait_gone(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.exists() {
        assert!(Instant::now() < deadline, "{} is still there", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn create_records_start_launches_the_exit_releases_and_remove_clears() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "split");
        let pod = run_pod(&mut c, &pc).await;
        let mut cfg = ctr_config("s", "sleep 1000");
        cfg.linux.get_or_insert_default().resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        });
        // The user is resolved in the image's layers at create.
        ctr_sc(&mut cfg).run_as_username = "nobody".into();
        let id = create(&mut c, &pod, &pc, cfg)
            .await
            .expect("CreateContainer");
        let st = status(&mut c, &id).await;
        assert_eq!(st.state, cri::ContainerState::ContainerCreated as i32);
        let user = st.user.and_then(|u| u.linux).expect("user");
        assert_eq!((user.uid, user.gid), (65534, 65534));
        assert!(!rootfs_dir(&node, &id).exists(), "a rootfs before start");
        assert!(!shim_dir(&node, &id).exists(), "a shim before start");
        assert!(
            !runtime_dir(&node, &id).exists(),
            "husk create before start"
        );

        // Resources updated before the start are what it starts with.
        c.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 96 << 20,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("UpdateContainerResources on a created container");
        c.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("StartContainer");
        assert!(mounted(&node, &id), "no rootfs mount after start");
        assert!(runtime_dir(&node, &id).exists());
        let name = if husk_tests::cgroup::is_v2() {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        let limit = node
            .cgroup
            .leaf_dirs(&format!("split/{id}"))
            .into_iter()
            .map(|d| d.join(name))
            .find(|p| p.exists())
            .map(|p| husk_tests::cgroup::read(&p))
            .expect("the container's memory cgroup");
        assert_eq!(limit, (96u64 << 20).to_string());
        assert_eq!(sh_ok(&mut c, &id, "id -u").await.trim(), "65534");

        c.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
        let st = status(&mut c, &id).await;
        assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!(st.exit_code, 137);
        // Released by the shim before it recorded the exit.
        assert_eq!(exit_record(&node, &id)["released"], true);
        assert!(
            !mounted(&node, &id),
            "the rootfs is still mounted after the exit"
        );
        assert!(
            !runtime_dir(&node, &id).exists(),
            "husk state left after the exit"
        );

        c.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
        assert!(!rootfs_dir(&node, &id).exists());
        assert!(!shim_dir(&node, &id).exists());
        // The upper dir is deleted in the background.
        let trash = node.root().join("trash");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some()) {
            assert!(Instant::now() < deadline, "the rootfs trash is not emptied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn a_container_that_exits_on_its_own_is_released_by_its_shim() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "own");
        let pod = run_pod(&mut c, &pc).await;
        let id = start(&mut c, &pod, &pc, ctr_config("e", "echo bye; exit 3")).await;
        let st = wait_exited(&mut c, &id).await;
        assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
        wait_gone(&runtime_dir(&node, &id));
        assert!(!mounted(&node, &id));
        assert_eq!(exit_record(&node, &id)["released"], true);
        // The log is kept until the container is removed.
        let log = std::fs::read_to_string(&st.log_path).expect("the log");
        assert!(log.contains(" stdout F bye"), "{log}");
        c.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
        assert!(!rootfs_dir(&node, &id).exists());
    });
}

#[test]
fn created_containers_hold_their_image_and_can_be_removed_unstarted() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "hold");
        let pod = run_pod(&mut c, &pc).await;
        let id = create(&mut c, &pod, &pc, ctr_config("h", "true"))
            .await
            .expect("CreateContainer");
        let mut img = connect_images(&node).await;
        let r = img
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: "busybox:latest".into(),
                    ..Default::default()
                }),
            })
            .await;
        expect_err(r, Code::FailedPrecondition, &id);
        // Stopping a container that never started is a no-op.
        c.stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 5,
        })
        .await
        .expect("StopContainer of a created container");
        c.remove_container(cri::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer of a created container");
        img.remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: "busybox:latest".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("RemoveImage once the container is gone");
    });
}
