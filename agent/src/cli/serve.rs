//! `husklet serve`: the CRI server on a unix socket, for a stock kubelet or crictl.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use husklet::cri::{Cri, CriConfig, server};
use husklet::stream::server::Server;

use super::Global;

#[derive(Args)]
pub struct ServeArgs {
    /// Where to serve CRI v1.
    #[arg(long, default_value = "unix:///run/husk/husklet.sock")]
    pub listen: String,
    /// Volatile state: sandbox and container records, pinned namespaces, shim dirs.
    #[arg(long, default_value = "/run/husk")]
    pub state: PathBuf,
    /// The OCI runtime [default: `husk` next to husklet, else on PATH].
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// The per-container shim [default: `husk-shim` next to husklet, else on PATH].
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// CNI network configs; the first (by file name) is the pod network.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// CNI plugin dirs, searched in order (repeat the option, or separate with ':').
    #[arg(long, value_delimiter = ':', default_values = ["/opt/cni/bin", "/usr/lib/cni"])]
    pub cni_bin_dir: Vec<PathBuf>,
    /// Where the exec/attach/port-forward streaming server listens (HTTP;
    /// port 0: a free port, named in the URLs that Exec, Attach and
    /// PortForward return). Keep it on loopback unless a proxy guards it.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub streaming_address: std::net::SocketAddr,
    #[command(flatten)]
    pub pods: super::node::PodArgs,
    #[command(flatten)]
    pub api: husklet::node::api::args::ApiArgs,
}

/// `name` next to the running husklet, else the bare name (looked up on PATH).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

pub fn run(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let store = super::open_store(g)?;
    let abs = |p: &PathBuf| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let cfg = CriConfig {
        root: g.root.clone(),
        state: abs(&a.state)?,
        runtime: a.runtime.unwrap_or_else(|| sibling("husk")),
        shim: a.shim.unwrap_or_else(|| sibling("husk-shim")),
        cni_conf_dir: abs(&a.cni_conf_dir)?,
        cni_bin_dirs: a
            .cni_bin_dir
            .iter()
            .map(abs)
            .collect::<anyhow::Result<_>>()?,
    };
    let path = server::socket_path(&a.listen)?.to_path_buf();
    let cfg_state = cfg.state.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        // The join (--kubeconfig, in PodArgs) also makes the kubelet API ask
        // its apiserver to review tokens and access, on --port (10250).
        let api_addr = a.api.listen(a.pods.kubeconfig.is_some());
        if api_addr.is_some() {
            a.api
                .check(a.pods.kubeconfig.is_some())
                .context("kubelet API")?;
        }
        let cri = Arc::new(Cri::new(cfg, store).context("open the CRI state")?);
        let (streams, stream_listener) = Server::bind(a.streaming_address)
            .await
            .with_context(|| format!("streaming server: listen on {}", a.streaming_address))?;
        tracing::info!(url = %streams.base_url(), "serving exec, attach and port-forward streams");
        cri.set_streaming(streams.clone());
        let api_streams = streams.clone();
        tokio::spawn(streams.serve(stream_listener, std::future::pending()));
        let listener = server::bind(&path)?;
        tracing::info!(socket = %path.display(), "serving CRI");
        // With --bootstrap-kubeconfig this waits for the client certificate.
        let cert_dir = a.api.cert_dir(&cfg_state);
        let client = match super::node::node_client(&a.pods, &cert_dir).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        // SIGTERM or SIGINT: stop serving and remove the socket. CRI
        // clients' containers live on under their shims; static pods are
        // terminated first (below).
        let closing = cri.clone();
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            // Event streams never end on their own.
            closing.close_events();
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let pods = if a.pods.pod_manifest_path.is_some() || a.pods.kubeconfig.is_some() {
            Some(
                super::node::start(&a.pods, &g.root, &cfg_state, cri.clone(), client.clone())
                    .await?,
            )
        } else {
            None
        };
        let _api = match api_addr {
            Some(addr) => {
                let node = super::node::node_name(&a.pods);
                let cluster_cert = super::node::serving_cert(&a.pods, client.as_ref(), &cert_dir)?;
                let cfg = a.api.config(addr, &node, &cfg_state, cluster_cert)?;
                let runtime: Arc<dyn husklet::cri::RuntimeService> = match &pods {
                    Some(p) => p.runtime(),
                    None => cri.clone(),
                };
                let deps = husklet::node::api::Deps {
                    client: client.clone(),
                    pods: pods.clone(),
                    runtime: Some(runtime),
                    streams: Some(api_streams),
                    fs_root: g.root.clone(),
                };
                Some(husklet::node::api::start(cfg, deps).await?)
            }
            None => None,
        };
        let serving = tokio::spawn(server::serve(cri, listener, async move {
            let _ = stop_rx.await;
        }));
        shutdown.await;
        // The node is going down: its pods are terminated with their grace
        // (a SIGKILL of husklet, by contrast, leaves them running).
        if let Some(p) = pods {
            p.shutdown().await;
        }
        let _ = stop_tx.send(());
        serving
            .await
            .context("CRI server task")?
            .context("CRI server")?;
        let _ = std::fs::remove_file(&path);
        Ok(())
    })
}
