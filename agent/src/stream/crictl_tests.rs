//! Interop with a real client: crictl 1.26.1 (client-go's SPDY executor and
//! port-forwarder) against the SPDY layer. A minimal fake CRI endpoint
//! answers Version, Exec, Attach and PortForward with URLs on the test
//! server of [`super::tests`], which runs commands with `sh -c` on the host.
//!
//! crictl is found in `$HUSK_K8S_BIN` (default `build/k8s`, where the
//! setup unpacks it); without it these tests skip visibly (`k8s-tools`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixListener};
use tonic::{Request, Response, Status};

use super::tests::{echo_server, escape, start_server};

struct FakeCri {
    base: String,
}

macro_rules! fake_runtime {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for FakeCri {
            async fn version(&self, _: Request<cri::VersionRequest>) -> Result<Response<cri::VersionResponse>, Status> {
                Ok(Response::new(cri::VersionResponse {
                    version: "0.1.0".into(),
                    runtime_name: "husk-stream-test".into(),
                    runtime_version: "0.1.0".into(),
                    runtime_api_version: "v1".into(),
                }))
            }

            async fn exec(&self, req: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
                let r = req.into_inner();
                // Only `sh -c SCRIPT` is served: the test server runs scripts.
                let [sh, dash_c, script] = r.cmd.as_slice() else {
                    return Err(Status::invalid_argument("cmd: want sh -c SCRIPT"));
                };
                if sh != "sh" || dash_c != "-c" {
                    return Err(Status::invalid_argument("cmd: want sh -c SCRIPT"));
                }
                let mut url = format!("{}/exec?cmd={}", self.base, escape(script));
                if r.stdin {
                    url.push_str("&stdin=1");
                }
                if r.tty {
                    url.push_str("&tty=1");
                }
                Ok(Response::new(cri::ExecResponse { url }))
            }

            async fn attach(&self, _: Request<cri::AttachRequest>) -> Result<Response<cri::AttachResponse>, Status> {
                Ok(Response::new(cri::AttachResponse { url: format!("{}/exec?stdin=1&cmd=cat", self.base) }))
            }

            async fn port_forward(
                &self,
                _: Request<cri::PortForwardRequest>,
            ) -> Result<Response<cri::PortForwardResponse>, Status> {
                Ok(Response::new(cri::PortForwardResponse { url: format!("{}/portforward", self.base) }))
            }

            type GetContainerEventsStream =
                futures::stream::Empty<Result<cri::ContainerEventResponse, Status>>;

            async fn get_container_events(
                &self,
                _: Request<cri::GetEventsRequest>,
            ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
                Err(Status::unimplemented("get_container_events"))
            }

            $(
                async fn $name(&self, _: Request<cri::$req>) -> Result<Response<cri::$resp>, Status> {
                    Err(Status::unimplemented(stringify!($name)))
                }
            )*
        }
    };
}

fake_runtime! {
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

/// The real crictl (`$HUSK_K8S_BIN/crictl`, unpacked there by the setup), or
/// a visible skip of the calling test.
macro_rules! crictl_or_skip {
    () => {
        match husk_tests::cri::crictl_path() {
            Some(p) => p,
            None => husk_tests::skip!(
                "k8s-tools",
                "crictl not found in {} (set HUSK_K8S_BIN, or run the setup that unpacks it)",
                husk_tests::cri::k8s_bin_dir().display()
            ),
        }
    };
}

/// Starts the stream test server and a fake CRI on a unix socket; returns the endpoint.
async fn fake_cri(dir: &Path) -> String {
    let base = format!("http://{}", start_server().await);
    let sock = dir.join("cri.sock");
    // crictl 1.26 sends the socket path as :authority; the patched h2
    // (third_party/h2) lets that through, as husklet serve relies on too.
    let listener = UnixListener::bind(&sock).expect("bind cri socket");
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(FakeCri { base }))
            .serve_with_incoming(incoming),
    );
    format!("unix://{}", sock.display())
}

async fn run_crictl(
    crictl: &Path,
    endpoint: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (i32, Vec<u8>, Vec<u8>) {
    let mut child = tokio::process::Command::new(crictl)
        .args([
            "--runtime-endpoint",
            endpoint,
            "--image-endpoint",
            endpoint,
            "--timeout",
            "10s",
        ])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crictl");
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(data).await.expect("crictl stdin");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("crictl finished")
        .expect("crictl output");
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_exec_over_spdy_exit_codes_and_stdin() {
    let crictl = crictl_or_skip!();
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = fake_cri(dir.path()).await;
    let (code, out, err) = run_crictl(
        &crictl,
        &ep,
        &["exec", "c1", "sh", "-c", "echo hello; echo oops >&2"],
        None,
    )
    .await;
    assert_eq!(code, 0, "stderr: {}", String::from_utf8_lossy(&err));
    assert_eq!(out, b"hello\n");
    assert!(String::from_utf8_lossy(&err).contains("oops"));
    for want in [1, 137] {
        let script = if want == 137 {
            "kill -9 $$".to_string()
        } else {
            format!("exit {want}")
        };
        let (code, _, err) =
            run_crictl(&crictl, &ep, &["exec", "c1", "sh", "-c", &script], None).await;
        // crictl 1.26 exits 1 on any failure but names the code client-go
        // decoded from the v4 status (NonZeroExitCode / ExitCode cause).
        let err = String::from_utf8_lossy(&err);
        assert_ne!(code, 0, "stderr: {err}");
        assert!(
            err.contains(&format!("command terminated with exit code {want}")),
            "stderr: {err}"
        );
    }
    // stdin from a pipe, larger than any SPDY window, back intact.
    let data: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let (code, out, err) = run_crictl(
        &crictl,
        &ep,
        &["exec", "-i", "c1", "sh", "-c", "cat"],
        Some(&data),
    )
    .await;
    assert_eq!(code, 0, "stderr: {}", String::from_utf8_lossy(&err));
    assert!(out == data, "{} bytes back of {}", out.len(), data.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_attach_over_spdy() {
    let crictl = crictl_or_skip!();
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = fake_cri(dir.path()).await;
    // The fake Attach URL serves `cat` with stdin, standing in for a container's console.
    let (code, out, err) =
        run_crictl(&crictl, &ep, &["attach", "-i", "c1"], Some(b"attached\n")).await;
    assert_eq!(code, 0, "stderr: {}", String::from_utf8_lossy(&err));
    assert_eq!(out, b"attached\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_port_forward_over_spdy() {
    let crictl = crictl_or_skip!();
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = fake_cri(dir.path()).await;
    let target = echo_server().await;
    let mut child = tokio::process::Command::new(&crictl)
        .args([
            "--runtime-endpoint",
            &ep,
            "--image-endpoint",
            &ep,
            "--timeout",
            "10s",
        ])
        .args(["port-forward", "pod1", &format!(":{target}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn crictl");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let local = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(l)) = lines.next_line().await {
            // "Forwarding from 127.0.0.1:PORT -> TARGET"
            if let Some(p) = l
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|r| r.split(' ').next())
            {
                return p.parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .expect("crictl announced its port")
    .expect("a local port");
    // Several connections at once, each echoed back intact.
    let conns = (0..3u8).map(|n| async move {
        let mut c = TcpStream::connect(("127.0.0.1", local))
            .await
            .expect("connect local port");
        let payload: Vec<u8> = (0..256 * 1024u32)
            .map(|i| (i as u8).wrapping_add(n))
            .collect();
        let (mut r, mut w) = c.split();
        let send = async {
            w.write_all(&payload).await.expect("send");
            w.shutdown().await.expect("half-close");
        };
        let mut back = Vec::new();
        let recv = r.read_to_end(&mut back);
        let (_, got) = tokio::join!(send, recv);
        got.expect("read back");
        assert!(back == payload, "connection {n}: {} bytes back", back.len());
    });
    tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(conns))
        .await
        .expect("transfers");
    let _ = child.kill().await;
}
