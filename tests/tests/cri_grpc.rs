//! A tonic CRI client against `husklet serve`: every RPC husklet serves,
//! the ones it does not serve yet (Unimplemented, naming the RPC), and bad
//! requests, which get a gRPC error naming the field and change nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use husk_tests::cri::CriNode;
use husk_tests::require_root;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};

struct Client {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

async fn connect(node: &CriNode) -> Client {
    let path = node.socket();
    let ch = Endpoint::from_static("http://cri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to husklet");
    Client {
        rt: RuntimeServiceClient::new(ch.clone()),
        img: ImageServiceClient::new(ch),
    }
}

fn rt() -> tokio::runtime::Runtime {
    // One thread: the test thread, which is in the test's namespaces.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn pod_config(node: &CriNode, name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: node.logs().join(name).to_string_lossy().into_owned(),
        labels: HashMap::from([("pod".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: node.cgroup_parent(name),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ctr_config(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        labels: HashMap::from([("ctr".to_string(), name.to_string())]),
        ..Default::default()
    }
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, needle: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} naming {needle:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(needle),
                "{:?} does not name {needle:?}",
                s.message()
            );
        }
    }
}

#[test]
fn every_served_rpc_answers_over_grpc() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let v =
            c.rt.version(cri::VersionRequest::default())
                .await
                .unwrap()
                .into_inner();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("husk", "v1")
        );
        let st =
            c.rt.status(cri::StatusRequest { verbose: true })
                .await
                .unwrap()
                .into_inner();
        let conds = st.status.unwrap().conditions;
        assert!(conds.iter().all(|c| c.status), "{conds:?}");
        let rc =
            c.rt.runtime_config(cri::RuntimeConfigRequest {})
                .await
                .unwrap()
                .into_inner();
        assert_eq!(
            rc.linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );

        // Images.
        let imgs = c
            .img
            .list_images(cri::ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(imgs.images.len(), 1);
        let busybox = &imgs.images[0];
        assert!(
            busybox
                .repo_tags
                .contains(&"docker.io/library/busybox:latest".to_string())
        );
        let spec = |s: &str| {
            Some(cri::ImageSpec {
                image: s.into(),
                ..Default::default()
            })
        };
        let st = c
            .img
            .image_status(cri::ImageStatusRequest {
                image: spec("busybox"),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            st.image.as_ref().map(|i| i.id.clone()),
            Some(busybox.id.clone())
        );
        assert!(
            st.info["info"].contains("Cmd") || st.info["info"].contains("cmd"),
            "{:?}",
            st.info
        );
        let st = c
            .img
            .image_status(cri::ImageStatusRequest {
                image: spec("nosuch:v9"),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            st.image.is_none(),
            "an unknown image has no status, not an error"
        );
        let fs = c
            .img
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);
        // RemoveImage of what is not there is fine (idempotent).
        c.img
            .remove_image(cri::RemoveImageRequest {
                image: spec("nosuch:v9"),
            })
            .await
            .unwrap();

        // A pod with two containers.
        let pod =
            c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config(&node, "g1")),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let ps =
            c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(ps.state, cri::PodSandboxState::SandboxReady as i32);
        assert!(!ps.network.unwrap().ip.is_empty());
        let create = |name: &str, script: &str| cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ctr_config(name, script)),
            sandbox_config: Some(pod_config(&node, "g1")),
        };
        let stubborn =
            c.rt.create_container(create("stubborn", "while true; do sleep 1; done"))
                .await
                .unwrap()
                .into_inner()
                .container_id;
        let polite =
            c.rt.create_container(create(
                "polite",
                "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            ))
            .await
            .unwrap()
            .into_inner()
            .container_id;
        for id in [&stubborn, &polite] {
            c.rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
        }
        let list = |f: cri::ContainerFilter| cri::ListContainersRequest { filter: Some(f) };
        let running =
            c.rt.list_containers(list(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(running.len(), 2);
        let by_label =
            c.rt.list_containers(list(cri::ContainerFilter {
                label_selector: HashMap::from([("ctr".to_string(), "polite".to_string())]),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(
            by_label.iter().map(|c| &c.id).collect::<Vec<_>>(),
            [&polite]
        );

        // ExecSync: both streams and the exit code; a timeout.
        let ex =
            c.rt.exec_sync(cri::ExecSyncRequest {
                container_id: stubborn.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 7".into(),
                ],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (ex.stdout.as_slice(), ex.stderr.as_slice(), ex.exit_code),
            (&b"out\n"[..], &b"err\n"[..], 7)
        );
        let t0 = Instant::now();
        let r =
            c.rt.exec_sync(cri::ExecSyncRequest {
                container_id: stubborn.clone(),
                cmd: vec!["sleep".into(), "30".into()],
                timeout: 1,
            })
            .await;
        expect_err(r, Code::DeadlineExceeded, "timed out");
        assert!(t0.elapsed() < Duration::from_secs(10));

        // Stop: a process that handles SIGTERM ends on it; PID 1 without a
        // handler ignores it and is killed when the timeout runs out.
        let t0 = Instant::now();
        c.rt.stop_container(cri::StopContainerRequest {
            container_id: polite.clone(),
            timeout: 20,
        })
        .await
        .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10), "SIGTERM was enough");
        let t0 = Instant::now();
        c.rt.stop_container(cri::StopContainerRequest {
            container_id: stubborn.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
        assert!(
            t0.elapsed() >= Duration::from_secs(1),
            "SIGKILL only after the timeout"
        );
        let status = |id: &String| cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        };
        let s =
            c.rt.container_status(status(&polite))
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
        assert_eq!(
            (s.state, s.exit_code, s.reason.as_str()),
            (cri::ContainerState::ContainerExited as i32, 0, "Completed")
        );
        assert!(s.finished_at >= s.started_at && s.started_at > 0);
        let s =
            c.rt.container_status(status(&stubborn))
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap();
        assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));
        assert!(s.log_path.ends_with("g1/stubborn.log"), "{}", s.log_path);

        // ReopenContainerLog: after a rotator renamed the file, new lines go to a new one.
        let ticker =
            c.rt.create_container(create(
                "ticker",
                "while true; do echo tick; sleep 0.2; done",
            ))
            .await
            .unwrap()
            .into_inner()
            .container_id;
        c.rt.start_container(cri::StartContainerRequest {
            container_id: ticker.clone(),
        })
        .await
        .unwrap();
        let log = node.logs().join("g1/ticker.log");
        husk_tests::wait_for("ticker's first line", 10, || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains("tick"))
        });
        let rotated = node.logs().join("g1/ticker.log.1");
        std::fs::rename(&log, &rotated).unwrap();
        c.rt.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await
        .unwrap();
        husk_tests::wait_for("a line in the reopened log", 10, || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains(" stdout F tick"))
        });
        c.rt.remove_container(cri::RemoveContainerRequest {
            container_id: ticker.clone(),
        })
        .await
        .unwrap();
        c.rt.update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: "10.88.0.0/16".into(),
                }),
            }),
        })
        .await
        .unwrap();

        // An attach that asks for no stream at all is refused, naming the fields.
        let r =
            c.rt.attach(cri::AttachRequest {
                container_id: stubborn.clone(),
                ..Default::default()
            })
            .await;
        expect_err(r, Code::InvalidArgument, "stdin/stdout/stderr");

        // Remove and stop are idempotent.
        for _ in 0..2 {
            c.rt.remove_container(cri::RemoveContainerRequest {
                container_id: polite.clone(),
            })
            .await
            .unwrap();
        }
        for _ in 0..2 {
            c.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        }
        for _ in 0..2 {
            c.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        }
        let left =
            c.rt.list_containers(cri::ListContainersRequest::default())
                .await
                .unwrap()
                .into_inner();
        assert!(
            left.containers.is_empty(),
            "removing the pod removes its containers"
        );
    });
}

/// Everything a bad request could have changed.
fn snapshot(node: &CriNode) -> Vec<usize> {
    let mut v: Vec<usize> = ["sandboxes", "containers", "shim", "ns", "exec"]
        .iter()
        .map(|s| node.state_entries(s))
        .collect();
    v.push(husk_tests::husklet::entry_count(
        &node.root().join("containers"),
    ));
    v.push(husk_tests::husklet::entry_count(&node.logs()));
    v
}

#[test]
fn bad_requests_name_the_field_and_change_nothing() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let good = pod_config(&node, "b1");
        let pod =
            c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(good.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let ctr =
            c.rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ctr_config("c1", "sleep 100")),
                sandbox_config: Some(good.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        let before = snapshot(&node);

        let runp =
            |config: Option<cri::PodSandboxConfig>, handler: &str| cri::RunPodSandboxRequest {
                config,
                runtime_handler: handler.into(),
            };
        let mut no_md = pod_config(&node, "x");
        no_md.metadata = None;
        let mut no_name = pod_config(&node, "x");
        no_name.metadata.as_mut().unwrap().name.clear();
        let mut bad_cg = pod_config(&node, "x");
        bad_cg.linux.as_mut().unwrap().cgroup_parent = "../escape".into();
        let cases = [
            (runp(None, ""), Code::InvalidArgument, "config"),
            (
                runp(Some(no_md), ""),
                Code::InvalidArgument,
                "config.metadata",
            ),
            (
                runp(Some(no_name), ""),
                Code::InvalidArgument,
                "config.metadata.name",
            ),
            (
                runp(Some(bad_cg), ""),
                Code::InvalidArgument,
                "config.linux.cgroup_parent",
            ),
            (
                runp(Some(pod_config(&node, "y")), "kata"),
                Code::InvalidArgument,
                "runtime_handler",
            ),
            (runp(Some(good.clone()), ""), Code::AlreadyExists, "b1"),
        ];
        for (req, code, field) in cases {
            expect_err(c.rt.run_pod_sandbox(req).await, code, field);
        }

        let create = |sandbox: &str, config: cri::ContainerConfig| cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.into(),
            config: Some(config),
            sandbox_config: Some(good.clone()),
        };
        let mut no_md = ctr_config("x", "true");
        no_md.metadata = None;
        let mut unknown_image = ctr_config("x", "true");
        unknown_image.image.as_mut().unwrap().image = "nosuch:v1".into();
        let mut rel_mount = ctr_config("x", "true");
        rel_mount.mounts = vec![cri::Mount {
            container_path: "data".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        }];
        let mut missing_src = ctr_config("x", "true");
        missing_src.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/nonexistent/husk-test".into(),
            ..Default::default()
        }];
        let mut escape_log = ctr_config("x", "true");
        escape_log.log_path = "../../etc/x.log".into();
        let cases = [
            (
                create("nosuchpod", ctr_config("x", "true")),
                Code::NotFound,
                "pod_sandbox_id",
            ),
            (
                create(&pod, no_md),
                Code::InvalidArgument,
                "config.metadata",
            ),
            (
                create(&pod, unknown_image),
                Code::NotFound,
                "config.image.image",
            ),
            (
                create(&pod, rel_mount),
                Code::InvalidArgument,
                "config.mounts[0].container_path",
            ),
            (
                create(&pod, missing_src),
                Code::InvalidArgument,
                "config.mounts[0].host_path",
            ),
            (
                create(&pod, escape_log),
                Code::InvalidArgument,
                "config.log_path",
            ),
            (
                create(&pod, ctr_config("c1", "true")),
                Code::AlreadyExists,
                "c1",
            ),
        ];
        for (req, code, field) in cases {
            expect_err(c.rt.create_container(req).await, code, field);
        }

        let r =
            c.rt.container_status(cri::ContainerStatusRequest {
                container_id: "nosuch".into(),
                verbose: false,
            })
            .await;
        expect_err(r, Code::NotFound, "nosuch");
        let r =
            c.rt.start_container(cri::StartContainerRequest {
                container_id: "nosuch".into(),
            })
            .await;
        expect_err(r, Code::NotFound, "nosuch");
        let r =
            c.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: "nosuch".into(),
                verbose: false,
            })
            .await;
        expect_err(r, Code::NotFound, "nosuch");
        let r =
            c.rt.exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec![],
                timeout: 0,
            })
            .await;
        expect_err(r, Code::InvalidArgument, "cmd");
        let r =
            c.rt.exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["true".into()],
                timeout: 0,
            })
            .await;
        expect_err(r, Code::FailedPrecondition, "not running");
        let r = c.img.pull_image(cri::PullImageRequest::default()).await;
        expect_err(r, Code::InvalidArgument, "image.image");

        assert_eq!(
            snapshot(&node),
            before,
            "a bad request changed the node's state"
        );
        let s =
            c.rt.container_status(cri::ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            })
            .await
            .unwrap();
        assert_eq!(
            s.into_inner().status.unwrap().state,
            cri::ContainerState::ContainerCreated as i32
        );
    });
}

#[test]
fn concurrent_stops_and_removes_of_one_pod_all_succeed_and_leave_nothing() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let c = connect(&node).await;
        let mut rt = c.rt.clone();
        let pod = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config(&node, "race")),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mut ids = vec![];
        for name in ["r1", "r2"] {
            let id = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(ctr_config(name, "while true; do sleep 1; done")),
                    sandbox_config: Some(pod_config(&node, "race")),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            ids.push(id);
        }
        // kubelet-style overlap: the pod and its containers stopped and
        // removed from several calls at once.
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..6 {
            let mut rt = c.rt.clone();
            let (pod, ctr) = (pod.clone(), ids[i % 2].clone());
            calls.spawn(async move {
                let r = match i % 3 {
                    0 => rt
                        .stop_container(cri::StopContainerRequest {
                            container_id: ctr,
                            timeout: 0,
                        })
                        .await
                        .map(drop),
                    1 => rt
                        .remove_container(cri::RemoveContainerRequest { container_id: ctr })
                        .await
                        .map(drop),
                    _ => rt
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                            pod_sandbox_id: pod,
                        })
                        .await
                        .map(drop),
                };
                (i, r)
            });
        }
        while let Some(joined) = calls.join_next().await {
            let (i, r) = joined.expect("call task");
            if let Err(s) = r {
                // A stop that lost the race to a remove finds nothing: NotFound is fine there.
                assert!(i % 3 == 0 && s.code() == Code::NotFound, "call {i}: {s:?}");
            }
        }
        let left = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(left.items.is_empty());
    });
    for sub in ["sandboxes", "containers", "shim", "ns"] {
        assert_eq!(node.state_entries(sub), 0, "{sub} left behind");
    }
    assert_eq!(
        husk_tests::husklet::entry_count(&node.root().join("containers")),
        0
    );
}

#[test]
fn oversized_labels_and_annotations_are_refused_and_change_nothing() {
    require_root!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let good = pod_config(&node, "l1");
        let before = snapshot(&node);

        // 1 MiB in one label value; 300 KiB of annotations (over Kubernetes' 256 KiB).
        let mut big_label = pod_config(&node, "l2");
        big_label
            .labels
            .insert("big".into(), "x".repeat(1024 * 1024));
        let big_annotations: HashMap<String, String> = (0..3)
            .map(|i| (format!("example.com/a{i}"), "y".repeat(100 * 1024)))
            .collect();
        let mut big_ann = pod_config(&node, "l3");
        big_ann.annotations = big_annotations.clone();
        for (config, field) in [
            (big_label, "config.labels[\"big\"]: value is 1048576 bytes"),
            (big_ann, "config.annotations: 307242 bytes"),
        ] {
            let r =
                c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await;
            expect_err(r, Code::InvalidArgument, field);
        }
        assert_eq!(
            snapshot(&node),
            before,
            "a refused sandbox changed the node"
        );

        // The same limits on CreateContainer, in a pod that is fine.
        let pod =
            c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(good.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let before = snapshot(&node);
        let mut big_label = ctr_config("c2", "sleep 100");
        big_label
            .labels
            .insert("big".into(), "x".repeat(1024 * 1024));
        let mut big_ann = ctr_config("c3", "sleep 100");
        big_ann.annotations = big_annotations;
        for (config, field) in [
            (big_label, "config.labels[\"big\"]: value is 1048576 bytes"),
            (big_ann, "config.annotations: 307242 bytes"),
        ] {
            let r =
                c.rt.create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(config),
                    sandbox_config: Some(good.clone()),
                })
                .await;
            expect_err(r, Code::InvalidArgument, field);
        }
        assert_eq!(
            snapshot(&node),
            before,
            "a refused container changed the node"
        );

        // 100 KiB of annotations is within the limit, end to end.
        let mut fine = ctr_config("c4", "sleep 100");
        fine.annotations = HashMap::from([("example.com/big".to_string(), "z".repeat(100 * 1024))]);
        let ctr =
            c.rt.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(fine),
                sandbox_config: Some(good.clone()),
            })
            .await
            .unwrap()
            .into_inner()
            .container_id;
        c.rt.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .unwrap();
        let st =
            c.rt.container_status(cri::ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
        assert_eq!(st.annotations["example.com/big"].len(), 100 * 1024);
        // The runtime has them too: husk's state carries the OCI annotations.
        let out = std::process::Command::new(husk_tests::bins::bin("husk"))
            .arg("--root")
            .arg(node.state().join("runtime"))
            .args(["state", &ctr])
            .output()
            .expect("run husk state");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state json");
        assert_eq!(
            state["annotations"]["example.com/big"]
                .as_str()
                .map(str::len),
            Some(100 * 1024),
            "husk state has no example.com/big annotation"
        );
    });
}

fn read_u64(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn container_stats_agree_with_the_cgroup() {
    husk_tests::require_cgroup_v1!();
    let node = CriNode::start();
    rt().block_on(async {
        let mut c = connect(&node).await;
        let pc = pod_config(&node, "s1");
        let parent = pc.linux.as_ref().unwrap().cgroup_parent.clone();
        let pod =
            c.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pc.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mut ids = vec![];
        // 32 MiB in the pod's shm tmpfs (charged to the container, not
        // reclaimable file cache), 1 MiB in the writable layer, then a busy loop.
        for (name, script) in [
            (
                "mem",
                "head -c 1048576 /dev/zero > /layer && head -c 33554432 /dev/zero > /dev/shm/fill \
                 && touch /dev/shm/done; while :; do :; done",
            ),
            ("idle", "sleep 1000"),
        ] {
            let id =
                c.rt.create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(ctr_config(name, script)),
                    sandbox_config: Some(pc.clone()),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            c.rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            ids.push(id);
        }
        let (mem, idle) = (ids[0].clone(), ids[1].clone());
        let memcg = std::path::PathBuf::from(format!("/sys/fs/cgroup/memory{parent}/{mem}"));
        let cpucg = std::path::PathBuf::from(format!("/sys/fs/cgroup/cpuacct{parent}/{mem}"));

        let t0 = Instant::now();
        loop {
            let r =
                c.rt.exec_sync(cri::ExecSyncRequest {
                    container_id: mem.clone(),
                    cmd: vec!["test".into(), "-e".into(), "/dev/shm/done".into()],
                    timeout: 10,
                })
                .await
                .unwrap()
                .into_inner();
            if r.exit_code == 0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the container never filled its shm"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let rt0 = c.rt.clone();
        let stats = |id: String| {
            let mut rt = rt0.clone();
            async move {
                rt.container_stats(cri::ContainerStatsRequest { container_id: id })
                    .await
                    .unwrap()
                    .into_inner()
                    .stats
                    .unwrap()
            }
        };
        let usage_lo = read_u64(&memcg.join("memory.usage_in_bytes"));
        let cpu_lo = read_u64(&cpucg.join("cpuacct.usage"));
        let s = stats(mem.clone()).await;
        let usage_hi = read_u64(&memcg.join("memory.usage_in_bytes"));
        let cpu_hi = read_u64(&cpucg.join("cpuacct.usage"));

        assert_eq!(s.attributes.as_ref().unwrap().id, mem);
        assert_eq!(s.attributes.as_ref().unwrap().labels["ctr"], "mem");
        let m = s.memory.unwrap();
        let usage = m.usage_bytes.unwrap().value;
        let slack = 1 << 20;
        assert!(
            usage + slack >= usage_lo.min(usage_hi) && usage <= usage_lo.max(usage_hi) + slack,
            "usage {usage} vs memory.usage_in_bytes {usage_lo}..{usage_hi}"
        );
        let ws = m.working_set_bytes.unwrap().value;
        assert!(ws <= usage, "working set {ws} > usage {usage}");
        assert!(ws >= 32 << 20, "working set {ws} misses the 32 MiB of shm");
        assert!(
            m.rss_bytes.is_some() && m.page_faults.unwrap().value > 0,
            "{m:?}"
        );
        let cpu = s.cpu.unwrap();
        let ns = cpu.usage_core_nano_seconds.unwrap().value;
        assert!(
            cpu_lo <= ns && ns <= cpu_hi,
            "cpu {ns} outside cpuacct.usage {cpu_lo}..{cpu_hi}"
        );
        let layer = s.writable_layer.unwrap();
        assert!(layer.used_bytes.unwrap().value >= 1 << 20, "{layer:?}");
        assert!(layer.inodes_used.unwrap().value >= 2, "{layer:?}");
        assert!(m.timestamp > 0 && cpu.timestamp > 0 && layer.timestamp > 0);

        // A busy container's cpu counter grows.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = stats(mem.clone()).await.cpu.unwrap();
        assert!(
            later.usage_core_nano_seconds.unwrap().value > ns,
            "the cpu counter of a busy container did not grow"
        );

        // Filters: id (or prefix), sandbox, labels.
        let list = |f: Option<cri::ContainerStatsFilter>| {
            let mut rt = rt0.clone();
            async move {
                let mut v: Vec<String> = rt
                    .list_container_stats(cri::ListContainerStatsRequest { filter: f })
                    .await
                    .unwrap()
                    .into_inner()
                    .stats
                    .into_iter()
                    .map(|s| s.attributes.unwrap().id)
                    .collect();
                v.sort();
                v
            }
        };
        let mut both = vec![mem.clone(), idle.clone()];
        both.sort();
        assert_eq!(list(None).await, both);
        let f = |id: &str, pod: &str, sel: &[(&str, &str)]| {
            Some(cri::ContainerStatsFilter {
                id: id.into(),
                pod_sandbox_id: pod.into(),
                label_selector: sel
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
        };
        assert_eq!(list(f(&idle[..12], "", &[])).await, vec![idle.clone()]);
        assert_eq!(list(f("", &pod, &[])).await, both);
        assert_eq!(list(f("", "nosuchpod", &[])).await, Vec::<String>::new());
        assert_eq!(list(f("", "", &[("ctr", "mem")])).await, vec![mem.clone()]);
        assert_eq!(
            list(f("", "", &[("ctr", "nosuch")])).await,
            Vec::<String>::new()
        );

        // The pod: the sum of its containers, and eth0's counters as the pod's
        // netns has them (read inside the container, which shares that netns).
        let counter = |name: &str| {
            let mut rt = rt0.clone();
            let (mem, name) = (mem.clone(), name.to_string());
            async move {
                let r = rt
                    .exec_sync(cri::ExecSyncRequest {
                        container_id: mem,
                        cmd: vec![
                            "cat".into(),
                            format!("/sys/class/net/eth0/statistics/{name}"),
                        ],
                        timeout: 10,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                String::from_utf8_lossy(&r.stdout)
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            }
        };
        let (rx_lo, tx_lo) = (counter("rx_bytes").await, counter("tx_bytes").await);
        let ps =
            c.rt.pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
        let (rx_hi, tx_hi) = (counter("rx_bytes").await, counter("tx_bytes").await);
        assert_eq!(ps.attributes.as_ref().unwrap().id, pod);
        let linux = ps.linux.unwrap();
        let mut in_pod: Vec<String> = linux
            .containers
            .iter()
            .map(|s| s.attributes.as_ref().unwrap().id.clone())
            .collect();
        in_pod.sort();
        assert_eq!(in_pod, both);
        let sum_usage: u64 = linux
            .containers
            .iter()
            .map(|s| {
                s.memory
                    .as_ref()
                    .unwrap()
                    .usage_bytes
                    .as_ref()
                    .unwrap()
                    .value
            })
            .sum();
        assert_eq!(linux.memory.unwrap().usage_bytes.unwrap().value, sum_usage);
        assert!(sum_usage >= 32 << 20);
        let eth0 = linux.network.unwrap().default_interface.unwrap();
        assert_eq!(eth0.name, "eth0");
        let (rx, tx) = (eth0.rx_bytes.unwrap().value, eth0.tx_bytes.unwrap().value);
        assert!(
            rx_lo <= rx && rx <= rx_hi,
            "rx {rx} outside {rx_lo}..{rx_hi}"
        );
        assert!(
            tx_lo <= tx && tx <= tx_hi,
            "tx {tx} outside {tx_lo}..{tx_hi}"
        );
        let listed =
            c.rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    id: String::new(),
                    label_selector: HashMap::from([("pod".to_string(), "s1".to_string())]),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert_eq!(listed.len(), 1);
        let none =
            c.rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    id: String::new(),
                    label_selector: HashMap::from([("pod".to_string(), "nosuch".to_string())]),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert!(none.is_empty());

        // An exited container is not listed; its stats have no cgroup numbers.
        c.rt.stop_container(cri::StopContainerRequest {
            container_id: idle.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        assert_eq!(list(None).await, vec![mem.clone()]);
        let s = stats(idle.clone()).await;
        assert!(s.cpu.is_none() && s.memory.is_none() && s.writable_layer.is_some());

        let r =
            c.rt.container_stats(cri::ContainerStatsRequest {
                container_id: "nosuch".into(),
            })
            .await;
        expect_err(r, Code::NotFound, "nosuch");
    });
}
