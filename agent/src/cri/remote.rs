//! A remote CRI runtime (containerd, CRI-O, another husklet) behind the
//! same [`RuntimeService`]/[`ImageService`] traits, so the pod layer runs
//! unchanged on any runtime (`--container-runtime-endpoint`).

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::error::CriError;
use super::server::socket_path;
use super::service::{CriResult, ImageService, RuntimeService};

/// A CRI client on a unix socket.
#[derive(Clone)]
pub struct RemoteCri {
    rt: RuntimeServiceClient<Channel>,
    img: ImageServiceClient<Channel>,
}

/// 16 MiB, as kubelet's CRI client allows (large ListContainers answers).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

impl RemoteCri {
    /// Connect to `unix:///path`.
    pub async fn connect(endpoint: &str) -> CriResult<RemoteCri> {
        let path: PathBuf = socket_path(endpoint)?.to_path_buf();
        let ch = Endpoint::from_static("http://cri.invalid")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| CriError::internal(format!("connect to {endpoint}"), e))?;
        Ok(RemoteCri {
            rt: RuntimeServiceClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            img: ImageServiceClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        })
    }
}

fn remote(s: tonic::Status) -> CriError {
    match s.code() {
        tonic::Code::NotFound => CriError::NotFound {
            kind: "object",
            id: s.message().to_string(),
        },
        code => CriError::Remote {
            code,
            message: s.message().to_string(),
        },
    }
}

macro_rules! forward {
    ($trait:ident, $client:ident; $($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl $trait for RemoteCri {
            $(
                async fn $name(&self, req: cri::$req) -> CriResult<cri::$resp> {
                    self.$client.clone().$name(req).await.map(|r| r.into_inner()).map_err(remote)
                }
            )*
        }
    };
}

forward! { RuntimeService, rt;
        version(VersionRequest) -> VersionResponse;
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
        create_container(CreateContainerRequest) -> CreateContainerResponse;
        start_container(StartContainerRequest) -> StartContainerResponse;
        stop_container(StopContainerRequest) -> StopContainerResponse;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
        list_containers(ListContainersRequest) -> ListContainersResponse;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse;
        exec(ExecRequest) -> ExecResponse;
        attach(AttachRequest) -> AttachResponse;
        port_forward(PortForwardRequest) -> PortForwardResponse;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        status(StatusRequest) -> StatusResponse;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
}

forward! { ImageService, img;
        list_images(ListImagesRequest) -> ListImagesResponse;
        image_status(ImageStatusRequest) -> ImageStatusResponse;
        pull_image(PullImageRequest) -> PullImageResponse;
        remove_image(RemoveImageRequest) -> RemoveImageResponse;
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse;
}

/// `ExecSync` on a CRI endpoint (`husklet exec`).
pub async fn exec_sync(
    endpoint: &str,
    container_id: &str,
    cmd: Vec<String>,
    timeout: i64,
) -> CriResult<cri::ExecSyncResponse> {
    RemoteCri::connect(endpoint)
        .await?
        .exec_sync(cri::ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd,
            timeout,
        })
        .await
}
