//! The kubelet HTTPS API (kubelet's `:10250`), as the apiserver, kubectl
//! (through the apiserver) and metrics-server call it:
//!
//! - `/healthz`; `/pods` (the node's pods as a `PodList`);
//! - `/containerLogs/{ns}/{pod}/{container}` ([`logs`]);
//! - `/exec`, `/attach` and `/portForward` ([`streaming`]): the SPDY or
//!   WebSocket upgrade served here by the streaming protocol handlers, or
//!   proxied to another CRI runtime's streaming server ([`proxy`]);
//! - `/stats/summary`, `/metrics`, `/metrics/resource` ([`stats`]).
//!
//! Every request is authenticated and authorized first ([`auth`]), over
//! TLS ([`tls`]).

pub mod args;
pub mod auth;
pub mod logs;
pub mod proxy;
pub mod stats;
pub mod streaming;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cri::RuntimeService;
use crate::pod::manager::PodManager;
use crate::pod::worker::Report;
use crate::stream::server::Server as StreamServer;
use auth::{Auth, AuthzMode, User};

/// A response body: whole, or streamed (logs).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's settings (from [`args::ApiArgs`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's name: the `nodes/<name>` that requests are authorized on.
    pub node_name: String,
    pub addr: SocketAddr,
    /// The serving certificate.
    pub serving: tls::Serving,
    /// CA bundle for client certificates.
    pub client_ca: Option<PathBuf>,
    pub anonymous: bool,
    pub token_webhook: bool,
    pub authorization: AuthzMode,
}

/// What the API serves from.
#[derive(Clone, Default)]
pub struct Deps {
    /// The apiserver client for TokenReview and SubjectAccessReview.
    pub client: Option<kube::Client>,
    /// The node's pods.
    pub pods: Option<Arc<PodManager>>,
    /// The CRI runtime the pods run on.
    pub runtime: Option<Arc<dyn RuntimeService>>,
    /// husklet's own streaming server: exec/attach/port-forward URLs it
    /// issued are served in-process.
    pub streams: Option<Arc<StreamServer>>,
    /// The filesystem reported as the node's (`/stats/summary` fs).
    pub fs_root: PathBuf,
}

/// Setting the API up failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("kubelet API TLS")]
    Tls(#[from] tls::TlsError),
    #[error("kubelet API authentication/authorization")]
    Auth(#[from] auth::AuthError),
    #[error("kubelet API: listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running API.
pub struct NodeApi {
    node: String,
    auth: Auth,
    deps: Deps,
    stats: stats::Sampler,
}

/// A started API: where it listens; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Check the configuration, bind, and serve in the background.
pub async fn start(cfg: Config, deps: Deps) -> Result<Running, ApiError> {
    let auth = Auth::new(
        deps.client.clone(),
        cfg.node_name.clone(),
        cfg.token_webhook,
        cfg.anonymous,
        cfg.authorization,
    )?;
    let tls = tls::server_config(&cfg.serving, cfg.client_ca.as_deref())?;
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| ApiError::Listen {
            addr: cfg.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ApiError::Listen {
        addr: cfg.addr,
        source,
    })?;
    let api = Arc::new(NodeApi {
        node: cfg.node_name,
        auth,
        deps,
        stats: stats::Sampler::default(),
    });
    let verify_certs = cfg.client_ca.is_some();
    let task = tokio::spawn(api.serve(listener, TlsAcceptor::from(tls), verify_certs));
    tracing::info!(%addr, "serving the kubelet API");
    Ok(Running { addr, task })
}

impl NodeApi {
    async fn serve(self: Arc<Self>, listener: TcpListener, tls: TlsAcceptor, verify_certs: bool) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (me, tls) = (self.clone(), tls.clone());
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "kubelet API: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                // Only a CA-verified certificate names a user.
                let cert = verify_certs
                    .then(|| stream.get_ref().1.peer_certificates())
                    .flatten()
                    .and_then(|c| c.first())
                    .and_then(tls::cert_user)
                    .map(|(name, groups)| User::new(name, groups));
                let svc = hyper::service::service_fn(move |req| {
                    let (me, cert) = (me.clone(), cert.clone());
                    async move { Ok::<_, Infallible>(me.handle(req, cert).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>, cert: Option<User>) -> Response<Body> {
        let user = match self.auth.authenticate(cert, req.headers()).await {
            Ok(Some(u)) => u,
            Ok(None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
            Err(e) => {
                tracing::warn!(error = %crate::cri::error::chain(&e), "kubelet API: authentication");
                return text(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
        };
        let attrs = auth::attributes(req.method(), req.uri().path());
        let describe = || {
            format!(
                "user={}, verb={}, resource=nodes, subresource={}",
                user.name, attrs.verb, attrs.subresource
            )
        };
        match self.auth.authorize(&user, &attrs).await {
            Ok(true) => {}
            Ok(false) => {
                return text(
                    StatusCode::FORBIDDEN,
                    &format!("Forbidden ({})", describe()),
                );
            }
            Err(e) => {
                tracing::warn!(error = %crate::cri::error::chain(&e), "kubelet API: authorization");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("Authorization error ({})", describe()),
                );
            }
        }
        tracing::debug!(user = %user.name, method = %req.method(), path = req.uri().path(), "kubelet API");
        self.route(req).await
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let get = matches!(*req.method(), Method::GET | Method::HEAD);
        let stream = matches!(*req.method(), Method::GET | Method::POST);
        match parts.as_slice() {
            ["healthz"] if get => text(StatusCode::OK, "ok"),
            ["pods"] | ["pods", ""] if get => self.pod_list(),
            ["containerLogs", ns, pod, container] if get => {
                logs::serve(self, ns, pod, container, req.uri().query().unwrap_or("")).await
            }
            [kind @ ("exec" | "attach"), ns, pod, container]
            | [kind @ ("exec" | "attach"), ns, pod, _, container]
                if stream =>
            {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                let kind = kind.to_string();
                streaming::command(self, req, &kind, &ns, &pod, &container).await
            }
            ["portForward", ns, pod] | ["portForward", ns, pod, _] if stream => {
                let (ns, pod) = (ns.to_string(), pod.to_string());
                streaming::port_forward(self, req, &ns, &pod).await
            }
            ["stats", "summary"] | ["stats", "summary", ""] if get => stats::summary(self).await,
            ["metrics"] if get => stats::metrics(self).await,
            ["metrics", "resource"] if get => stats::resource_metrics(self).await,
            _ => text(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }

    /// The live (not yet gone) pods' reports.
    fn reports(&self) -> Vec<Report> {
        self.deps
            .pods
            .as_ref()
            .map(|p| p.reports().into_iter().filter(|r| !r.gone).collect())
            .unwrap_or_default()
    }

    /// The report of pod `ns/name`.
    fn find_pod(&self, ns: &str, name: &str) -> Option<Report> {
        self.reports().into_iter().find(|r| {
            let m = &r.pod.metadata;
            m.namespace.as_deref() == Some(ns) && m.name.as_deref() == Some(name)
        })
    }

    /// `/pods`: each pod with its current status, as kubelet's pod manager
    /// lists them.
    fn pod_list(&self) -> Response<Body> {
        let mut items: Vec<Pod> = self
            .reports()
            .into_iter()
            .map(|r| {
                let mut p = (*r.pod).clone();
                p.status = Some(r.status);
                p
            })
            .collect();
        items.sort_by(|a, b| {
            let key = |p: &Pod| (p.metadata.namespace.clone(), p.metadata.name.clone());
            key(a).cmp(&key(b))
        });
        json(&serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": items,
        }))
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response.
pub fn json(v: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_string(v) {
        Ok(s) => {
            let mut r = Response::new(full(s));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A whole body.
pub fn full(s: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(s.into())
        .map_err(|never| match never {})
        .boxed()
}
