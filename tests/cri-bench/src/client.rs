//! The connection to a CRI endpoint: tonic over a unix socket, and one method
//! per RPC that names the RPC and the object in its error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// What can go wrong talking to a CRI endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--endpoint {0:?}: only unix:///path (or a plain socket path) is supported")]
    BadEndpoint(String),
    #[error("connect to {endpoint} (the path {state}): {detail}")]
    Connect {
        endpoint: String,
        state: &'static str,
        detail: String,
    },
    #[error(
        "{endpoint} does not answer the CRI v1 Version call (is it a CRI server?): {}",
        describe_status(.cause)
    )]
    NotCri {
        endpoint: String,
        cause: tonic::Status,
    },
    #[error("{rpc} {object}: {}", describe_status(.cause))]
    Rpc {
        rpc: &'static str,
        object: String,
        cause: tonic::Status,
    },
    #[error("{rpc} {object}: {reason}")]
    BadResponse {
        rpc: &'static str,
        object: String,
        reason: String,
    },
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !s.contains(&text) {
            s.push_str(&format!(": {text}"));
        }
        source = e.source();
    }
    s
}

/// A status with its code, message, and the transport error under it if any.
fn describe_status(status: &tonic::Status) -> String {
    let mut s = format!("{:?}: {}", status.code(), status.message());
    // A transport failure hides under the status; a server's own status repeats itself there.
    if let Some(e) = std::error::Error::source(status) {
        let chain = error_chain(e);
        if !chain.contains(status.message()) {
            s.push_str(&format!(" ({chain})"));
        }
    }
    s
}

/// The socket path of `unix:///path` or `/path`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ClientError> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(p) => p,
        None if endpoint.starts_with('/') => endpoint,
        None => return Err(ClientError::BadEndpoint(endpoint.to_string())),
    };
    if !path.starts_with('/') {
        return Err(ClientError::BadEndpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// Both CRI services over one channel. Cheap to clone (one per task).
#[derive(Clone)]
pub struct CriClient {
    endpoint: String,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// The runtime's answer to Version.
pub struct RuntimeVersion {
    pub name: String,
    pub version: String,
    pub api_version: String,
}

fn rpc_err(
    rpc: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(tonic::Status) -> ClientError {
    let object = object.into();
    move |cause| ClientError::Rpc { rpc, object, cause }
}

impl CriClient {
    /// Connects to `endpoint` and checks that it speaks CRI v1 (Version).
    pub async fn connect(
        endpoint: &str,
        call_timeout: Duration,
    ) -> Result<(Self, RuntimeVersion), ClientError> {
        let path = socket_path(endpoint)?;
        let socket = path.clone();
        // The URI is a placeholder: the connector ignores it and dials the socket.
        let channel =
            Endpoint::from_static("http://cri.invalid")
                .connect_timeout(Duration::from_secs(5))
                .timeout(call_timeout)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .map_err(|source| ClientError::Connect {
                    endpoint: endpoint.to_string(),
                    state: describe_socket(&socket),
                    detail: error_chain(&source),
                })?;
        let mut client = CriClient {
            endpoint: endpoint.to_string(),
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        };
        let v = client
            .runtime
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|cause| ClientError::NotCri {
                endpoint: endpoint.to_string(),
                cause,
            })?
            .into_inner();
        let version = RuntimeVersion {
            name: v.runtime_name,
            version: v.runtime_version,
            api_version: v.runtime_api_version,
        };
        Ok((client, version))
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn run_pod_sandbox(
        &mut self,
        config: cri::PodSandboxConfig,
    ) -> Result<String, ClientError> {
        let name = pod_name(&config);
        let r = self
            .runtime
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map_err(rpc_err("RunPodSandbox", format!("pod {name}")))?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), ClientError> {
        self.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(rpc_err("StopPodSandbox", format!("sandbox {id}")))?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), ClientError> {
        self.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(rpc_err("RemovePodSandbox", format!("sandbox {id}")))?;
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, ClientError> {
        let r = self
            .runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose,
            })
            .await
            .map_err(rpc_err("PodSandboxStatus", format!("sandbox {id}")))?;
        Ok(r.into_inner())
    }

    pub async fn list_pod_sandbox(
        &mut self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>, ClientError> {
        let r = self
            .runtime
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter })
            .await
            .map_err(rpc_err("ListPodSandbox", "(all)"))?;
        Ok(r.into_inner().items)
    }

    pub async fn create_container(
        &mut self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String, ClientError> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let r = self
            .runtime
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map_err(rpc_err(
                "CreateContainer",
                format!("container {name} in sandbox {sandbox_id}"),
            ))?;
        Ok(r.into_inner().container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> Result<(), ClientError> {
        self.runtime
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(rpc_err("StartContainer", format!("container {id}")))?;
        Ok(())
    }

    /// Version: the CRI round trip with no work behind it.
    pub async fn version(&mut self) -> Result<(), ClientError> {
        self.runtime
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(rpc_err("Version", "the runtime"))?;
        Ok(())
    }

    pub async fn container_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse, ClientError> {
        let r = self
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose,
            })
            .await
            .map_err(rpc_err("ContainerStatus", format!("container {id}")))?;
        Ok(r.into_inner())
    }

    pub async fn stop_container(&mut self, id: &str, timeout_s: i64) -> Result<(), ClientError> {
        self.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_s,
            })
            .await
            .map_err(rpc_err("StopContainer", format!("container {id}")))?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> Result<(), ClientError> {
        self.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(rpc_err("RemoveContainer", format!("container {id}")))?;
        Ok(())
    }

    pub async fn list_containers(
        &mut self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>, ClientError> {
        let r = self
            .runtime
            .list_containers(cri::ListContainersRequest { filter })
            .await
            .map_err(rpc_err("ListContainers", "(all)"))?;
        Ok(r.into_inner().containers)
    }

    pub async fn pull_image(&mut self, image: &str) -> Result<String, ClientError> {
        let r = self
            .images
            .pull_image(cri::PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map_err(rpc_err("PullImage", format!("image {image}")))?;
        Ok(r.into_inner().image_ref)
    }

    /// The image, or None when the runtime does not have it.
    pub async fn image_status(&mut self, image: &str) -> Result<Option<cri::Image>, ClientError> {
        let r = self
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .map_err(rpc_err("ImageStatus", format!("image {image}")))?;
        Ok(r.into_inner().image)
    }

    pub async fn list_images(&mut self) -> Result<Vec<cri::Image>, ClientError> {
        let r = self
            .images
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .map_err(rpc_err("ListImages", "(all)"))?;
        Ok(r.into_inner().images)
    }

    pub async fn remove_image(&mut self, image: &str) -> Result<(), ClientError> {
        self.images
            .remove_image(cri::RemoveImageRequest {
                image: Some(image_spec(image)),
            })
            .await
            .map_err(rpc_err("RemoveImage", format!("image {image}")))?;
        Ok(())
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

fn pod_name(config: &cri::PodSandboxConfig) -> String {
    config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// The pid of the process serving `endpoint`'s socket (SO_PEERCRED of a fresh
/// connection: the process that called listen()).
pub async fn server_pid(endpoint: &str) -> anyhow::Result<i32> {
    use anyhow::Context;
    let path = socket_path(endpoint)?;
    let stream = UnixStream::connect(&path)
        .await
        .with_context(|| format!("connect to {}", path.display()))?;
    let cred = stream
        .peer_cred()
        .with_context(|| format!("SO_PEERCRED on {}", path.display()))?;
    cred.pid()
        .with_context(|| format!("{}: the kernel reported no peer pid", path.display()))
}

/// Whether the path exists as a socket (used for a clearer connect error).
pub fn describe_socket(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Err(_) => "does not exist",
        Ok(m) if m.file_type().is_socket() => "is a socket",
        Ok(_) => "is not a socket",
    }
}
