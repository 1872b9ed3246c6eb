//! The tonic adapter: serves any [`RuntimeService`] + [`ImageService`] as
//! the CRI v1 gRPC services. Thin on purpose: unwrap the request, call the
//! trait, map the error once ([`CriError`] → `tonic::Status`).

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server as image_srv;
use k8s_cri::v1::runtime_service_server as runtime_srv;
use tonic::{Request, Response, Status};

use super::error::CriError;
use super::service::{ImageService, RuntimeService};

/// The gRPC face of one service implementation.
pub struct Grpc<T>(pub Arc<T>);

impl<T> Clone for Grpc<T> {
    fn clone(&self) -> Self {
        Grpc(self.0.clone())
    }
}

/// The `tonic` services for `svc`, ready to add to a server.
pub fn services<T: RuntimeService + ImageService>(
    svc: Arc<T>,
) -> (
    runtime_srv::RuntimeServiceServer<Grpc<T>>,
    image_srv::ImageServiceServer<Grpc<T>>,
) {
    (
        runtime_srv::RuntimeServiceServer::new(Grpc(svc.clone()))
            .max_decoding_message_size(MAX_MESSAGE),
        image_srv::ImageServiceServer::new(Grpc(svc)).max_decoding_message_size(MAX_MESSAGE),
    )
}

/// The largest request accepted: kubelet's own limit (16 MiB), so pods with
/// large annotations pass.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

fn reply<R>(r: Result<R, CriError>) -> Result<Response<R>, Status> {
    r.map(Response::new).map_err(Status::from)
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<T: RuntimeService + ImageService> runtime_srv::RuntimeService for Grpc<T> {
    type GetContainerEventsStream = EventStream;

    async fn version(
        &self,
        req: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        reply(RuntimeService::version(&*self.0, req.into_inner()).await)
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        reply(RuntimeService::run_pod_sandbox(&*self.0, req.into_inner()).await)
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        reply(RuntimeService::stop_pod_sandbox(&*self.0, req.into_inner()).await)
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        reply(RuntimeService::remove_pod_sandbox(&*self.0, req.into_inner()).await)
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        reply(RuntimeService::pod_sandbox_status(&*self.0, req.into_inner()).await)
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        reply(RuntimeService::list_pod_sandbox(&*self.0, req.into_inner()).await)
    }

    async fn create_container(
        &self,
        req: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        reply(RuntimeService::create_container(&*self.0, req.into_inner()).await)
    }

    async fn start_container(
        &self,
        req: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        reply(RuntimeService::start_container(&*self.0, req.into_inner()).await)
    }

    async fn stop_container(
        &self,
        req: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        reply(RuntimeService::stop_container(&*self.0, req.into_inner()).await)
    }

    async fn remove_container(
        &self,
        req: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        reply(RuntimeService::remove_container(&*self.0, req.into_inner()).await)
    }

    async fn list_containers(
        &self,
        req: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        reply(RuntimeService::list_containers(&*self.0, req.into_inner()).await)
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        reply(RuntimeService::container_status(&*self.0, req.into_inner()).await)
    }

    async fn update_container_resources(
        &self,
        req: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        reply(RuntimeService::update_container_resources(&*self.0, req.into_inner()).await)
    }

    async fn reopen_container_log(
        &self,
        req: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        reply(RuntimeService::reopen_container_log(&*self.0, req.into_inner()).await)
    }

    async fn exec_sync(
        &self,
        req: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        reply(RuntimeService::exec_sync(&*self.0, req.into_inner()).await)
    }

    async fn exec(
        &self,
        req: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        reply(RuntimeService::exec(&*self.0, req.into_inner()).await)
    }

    async fn attach(
        &self,
        req: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        reply(RuntimeService::attach(&*self.0, req.into_inner()).await)
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        reply(RuntimeService::port_forward(&*self.0, req.into_inner()).await)
    }

    async fn container_stats(
        &self,
        req: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        reply(RuntimeService::container_stats(&*self.0, req.into_inner()).await)
    }

    async fn list_container_stats(
        &self,
        req: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        reply(RuntimeService::list_container_stats(&*self.0, req.into_inner()).await)
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        reply(RuntimeService::pod_sandbox_stats(&*self.0, req.into_inner()).await)
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        reply(RuntimeService::list_pod_sandbox_stats(&*self.0, req.into_inner()).await)
    }

    async fn update_runtime_config(
        &self,
        req: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        reply(RuntimeService::update_runtime_config(&*self.0, req.into_inner()).await)
    }

    async fn status(
        &self,
        req: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        reply(RuntimeService::status(&*self.0, req.into_inner()).await)
    }

    async fn checkpoint_container(
        &self,
        req: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        reply(RuntimeService::checkpoint_container(&*self.0, req.into_inner()).await)
    }

    async fn get_container_events(
        &self,
        _req: Request<cri::GetEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        reply(RuntimeService::container_events(self.0.clone()))
    }

    async fn list_metric_descriptors(
        &self,
        req: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        reply(RuntimeService::list_metric_descriptors(&*self.0, req.into_inner()).await)
    }

    async fn list_pod_sandbox_metrics(
        &self,
        req: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        reply(RuntimeService::list_pod_sandbox_metrics(&*self.0, req.into_inner()).await)
    }

    async fn runtime_config(
        &self,
        req: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        reply(RuntimeService::runtime_config(&*self.0, req.into_inner()).await)
    }
}

#[tonic::async_trait]
impl<T: RuntimeService + ImageService> image_srv::ImageService for Grpc<T> {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        reply(ImageService::list_images(&*self.0, req.into_inner()).await)
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        reply(ImageService::image_status(&*self.0, req.into_inner()).await)
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        reply(ImageService::pull_image(&*self.0, req.into_inner()).await)
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        reply(ImageService::remove_image(&*self.0, req.into_inner()).await)
    }

    async fn image_fs_info(
        &self,
        req: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        reply(ImageService::image_fs_info(&*self.0, req.into_inner()).await)
    }
}
