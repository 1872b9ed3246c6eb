//! The CRI v1 service as two traits on the `k8s-cri` message types: what
//! the kubelet layer calls in process and what the gRPC adapter
//! ([`super::grpc`]) serves. Every method has a default that answers
//! `Unimplemented` naming the RPC, so an implementation grows RPC by RPC.
//!
//! `GetContainerEvents` is a server stream: [`RuntimeService::container_events`]
//! takes the shared service (the stream outlives the call).

use k8s_cri::v1 as cri;

use super::error::CriError;

/// The result of a CRI call.
pub type CriResult<T> = Result<T, CriError>;
/// CRI v1 `RuntimeService`.
#[tonic::async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    /// `Version`.
    async fn version(&self, req: cri::VersionRequest) -> CriResult<cri::VersionResponse> {
        let _ = req;
        Err(CriError::Unimplemented("Version"))
    }
    /// `RunPodSandbox`.
    async fn run_pod_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> CriResult<cri::RunPodSandboxResponse> {
        let _ = req;
        Err(CriError::Unimplemented("RunPodSandbox"))
    }
    /// `StopPodSandbox`.
    async fn stop_pod_sandbox(
        &self,
        req: cri::StopPodSandboxRequest,
    ) -> CriResult<cri::StopPodSandboxResponse> {
        let _ = req;
        Err(CriError::Unimplemented("StopPodSandbox"))
    }
    /// `RemovePodSandbox`.
    async fn remove_pod_sandbox(
        &self,
        req: cri::RemovePodSandboxRequest,
    ) -> CriResult<cri::RemovePodSandboxResponse> {
        let _ = req;
        Err(CriError::Unimplemented("RemovePodSandbox"))
    }
    /// `PodSandboxStatus`.
    async fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> CriResult<cri::PodSandboxStatusResponse> {
        let _ = req;
        Err(CriError::Unimplemented("PodSandboxStatus"))
    }
    /// `ListPodSandbox`.
    async fn list_pod_sandbox(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> CriResult<cri::ListPodSandboxResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListPodSandbox"))
    }
    /// `CreateContainer`.
    async fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> CriResult<cri::CreateContainerResponse> {
        let _ = req;
        Err(CriError::Unimplemented("CreateContainer"))
    }
    /// `StartContainer`.
    async fn start_container(
        &self,
        req: cri::StartContainerRequest,
    ) -> CriResult<cri::StartContainerResponse> {
        let _ = req;
        Err(CriError::Unimplemented("StartContainer"))
    }
    /// `StopContainer`.
    async fn stop_container(
        &self,
        req: cri::StopContainerRequest,
    ) -> CriResult<cri::StopContainerResponse> {
        let _ = req;
        Err(CriError::Unimplemented("StopContainer"))
    }
    /// `RemoveContainer`.
    async fn remove_container(
        &self,
        req: cri::RemoveContainerRequest,
    ) -> CriResult<cri::RemoveContainerResponse> {
        let _ = req;
        Err(CriError::Unimplemented("RemoveContainer"))
    }
    /// `ListContainers`.
    async fn list_containers(
        &self,
        req: cri::ListContainersRequest,
    ) -> CriResult<cri::ListContainersResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListContainers"))
    }
    /// `ContainerStatus`.
    async fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> CriResult<cri::ContainerStatusResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ContainerStatus"))
    }
    /// `UpdateContainerResources`.
    async fn update_container_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> CriResult<cri::UpdateContainerResourcesResponse> {
        let _ = req;
        Err(CriError::Unimplemented("UpdateContainerResources"))
    }
    /// `ReopenContainerLog`.
    async fn reopen_container_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> CriResult<cri::ReopenContainerLogResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ReopenContainerLog"))
    }
    /// `ExecSync`.
    async fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriResult<cri::ExecSyncResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ExecSync"))
    }
    /// `Exec`.
    async fn exec(&self, req: cri::ExecRequest) -> CriResult<cri::ExecResponse> {
        let _ = req;
        Err(CriError::Unimplemented("Exec"))
    }
    /// `Attach`.
    async fn attach(&self, req: cri::AttachRequest) -> CriResult<cri::AttachResponse> {
        let _ = req;
        Err(CriError::Unimplemented("Attach"))
    }
    /// `PortForward`.
    async fn port_forward(
        &self,
        req: cri::PortForwardRequest,
    ) -> CriResult<cri::PortForwardResponse> {
        let _ = req;
        Err(CriError::Unimplemented("PortForward"))
    }
    /// `ContainerStats`.
    async fn container_stats(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> CriResult<cri::ContainerStatsResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ContainerStats"))
    }
    /// `ListContainerStats`.
    async fn list_container_stats(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> CriResult<cri::ListContainerStatsResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListContainerStats"))
    }
    /// `PodSandboxStats`.
    async fn pod_sandbox_stats(
        &self,
        req: cri::PodSandboxStatsRequest,
    ) -> CriResult<cri::PodSandboxStatsResponse> {
        let _ = req;
        Err(CriError::Unimplemented("PodSandboxStats"))
    }
    /// `ListPodSandboxStats`.
    async fn list_pod_sandbox_stats(
        &self,
        req: cri::ListPodSandboxStatsRequest,
    ) -> CriResult<cri::ListPodSandboxStatsResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListPodSandboxStats"))
    }
    /// `UpdateRuntimeConfig`.
    async fn update_runtime_config(
        &self,
        req: cri::UpdateRuntimeConfigRequest,
    ) -> CriResult<cri::UpdateRuntimeConfigResponse> {
        let _ = req;
        Err(CriError::Unimplemented("UpdateRuntimeConfig"))
    }
    /// `Status`.
    async fn status(&self, req: cri::StatusRequest) -> CriResult<cri::StatusResponse> {
        let _ = req;
        Err(CriError::Unimplemented("Status"))
    }
    /// `CheckpointContainer`.
    async fn checkpoint_container(
        &self,
        req: cri::CheckpointContainerRequest,
    ) -> CriResult<cri::CheckpointContainerResponse> {
        let _ = req;
        Err(CriError::Unimplemented("CheckpointContainer"))
    }
    /// `GetContainerEvents`: every container event from now on.
    fn container_events(self: std::sync::Arc<Self>) -> CriResult<super::events::EventStream> {
        Err(CriError::Unimplemented("GetContainerEvents"))
    }
    /// `ListMetricDescriptors`.
    async fn list_metric_descriptors(
        &self,
        req: cri::ListMetricDescriptorsRequest,
    ) -> CriResult<cri::ListMetricDescriptorsResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListMetricDescriptors"))
    }
    /// `ListPodSandboxMetrics`.
    async fn list_pod_sandbox_metrics(
        &self,
        req: cri::ListPodSandboxMetricsRequest,
    ) -> CriResult<cri::ListPodSandboxMetricsResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListPodSandboxMetrics"))
    }
    /// `RuntimeConfig`.
    async fn runtime_config(
        &self,
        req: cri::RuntimeConfigRequest,
    ) -> CriResult<cri::RuntimeConfigResponse> {
        let _ = req;
        Err(CriError::Unimplemented("RuntimeConfig"))
    }
}

/// CRI v1 `ImageService`.
#[tonic::async_trait]
pub trait ImageService: Send + Sync + 'static {
    /// `ListImages`.
    async fn list_images(&self, req: cri::ListImagesRequest) -> CriResult<cri::ListImagesResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ListImages"))
    }
    /// `ImageStatus`.
    async fn image_status(
        &self,
        req: cri::ImageStatusRequest,
    ) -> CriResult<cri::ImageStatusResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ImageStatus"))
    }
    /// `PullImage`.
    async fn pull_image(&self, req: cri::PullImageRequest) -> CriResult<cri::PullImageResponse> {
        let _ = req;
        Err(CriError::Unimplemented("PullImage"))
    }
    /// `RemoveImage`.
    async fn remove_image(
        &self,
        req: cri::RemoveImageRequest,
    ) -> CriResult<cri::RemoveImageResponse> {
        let _ = req;
        Err(CriError::Unimplemented("RemoveImage"))
    }
    /// `ImageFsInfo`.
    async fn image_fs_info(
        &self,
        req: cri::ImageFsInfoRequest,
    ) -> CriResult<cri::ImageFsInfoResponse> {
        let _ = req;
        Err(CriError::Unimplemented("ImageFsInfo"))
    }
}
