//! A tonic CRI client for the CRI tests: connect to a [`CriNode`], build
//! pod and container configs, run commands in containers.

#![allow(dead_code)]

use std::collections::HashMap;

use husk_tests::cri::CriNode;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Rt = RuntimeServiceClient<Channel>;

/// Connect to `node`'s socket.
pub async fn connect(node: &CriNode) -> Rt {
    RuntimeServiceClient::new(channel(node).await)
}

/// An image service client on `node`'s socket.
pub async fn connect_images(node: &CriNode) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(channel(node).await)
}

async fn channel(node: &CriNode) -> Channel {
    let path = node.socket();
    Endpoint::from_static("http://cri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to husklet")
}

/// A current-thread runtime: the test thread is in the test's namespaces.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A pod config with its cgroup parent in the test's subtree.
pub fn pod_config(node: &CriNode, name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: node.logs().join(name).to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: node.cgroup_parent(name),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's security context (created if missing).
pub fn pod_sc(p: &mut cri::PodSandboxConfig) -> &mut cri::LinuxSandboxSecurityContext {
    p.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}

/// A busybox container running `sh -c script`.
pub fn ctr_config(name: &str, script: &str) -> cri::ContainerConfig {
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
        ..Default::default()
    }
}

/// The container's security context (created if missing).
pub fn ctr_sc(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}

/// RunPodSandbox; the pod id.
pub async fn run_pod(c: &mut Rt, config: &cri::PodSandboxConfig) -> String {
    c.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        ..Default::default()
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

/// CreateContainer; the container id or the error.
pub async fn create(
    c: &mut Rt,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Result<String, tonic::Status> {
    c.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(config),
        sandbox_config: Some(pod_config.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

/// CreateContainer + StartContainer; the container id.
pub async fn start(
    c: &mut Rt,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = create(c, pod, pod_config, config)
        .await
        .expect("CreateContainer");
    c.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("StartContainer");
    id
}

/// ExecSync `sh -c script`: (exit code, stdout, stderr).
pub async fn sh(c: &mut Rt, id: &str, script: &str) -> (i32, String, String) {
    let r = c
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

/// ExecSync that must succeed; its stdout, trimmed.
pub async fn sh_ok(c: &mut Rt, id: &str, script: &str) -> String {
    let (code, out, err) = sh(c, id, script).await;
    assert_eq!(code, 0, "{script:?} failed: {out}{err}");
    out.trim().to_string()
}

/// The `Key:` line of /proc/self/status inside the container.
pub async fn status_field(c: &mut Rt, id: &str, key: &str) -> String {
    sh_ok(
        c,
        id,
        &format!("grep '^{key}:' /proc/self/status | cut -f2"),
    )
    .await
    .trim()
    .to_string()
}

/// Assert a gRPC error of `code` whose message names `needle`.
pub fn expect_err<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: tonic::Code,
    needle: &str,
) {
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

/// Labels for a config.
pub fn labels(k: &str, v: &str) -> HashMap<String, String> {
    HashMap::from([(k.to_string(), v.to_string())])
}
