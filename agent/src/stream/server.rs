//! The streaming HTTP server: CRI `Exec`, `Attach` and `PortForward` hand
//! out `http://<addr>/{exec,attach,portforward}/<token>`; a request there
//! redeems the token (once, within [`TOKEN_TTL`](super::token::TOKEN_TTL)),
//! negotiates SPDY or WebSocket and runs what the token was issued for.
//! An unknown, used or expired token is a 404; a failed negotiation is the
//! 400/403 of [`negotiate`]. The path names only the token: everything
//! else (container, command, ports) stays in husklet.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use hyper::body::Incoming as Body;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use super::io::{Io, Options};
use super::negotiate;
use super::portforward::{self, PAIR_TIMEOUT};
use super::remotecommand::{self, STREAM_CREATION_TIMEOUT, Version};
use super::spdy::{Config, Role, Session};
use super::token::{MAX_IN_FLIGHT, TOKEN_TTL, TokenError, Tokens};
use super::websocket;

/// A boxed future of nothing.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Runs an exec or attach once the client's streams are there.
pub type Runner = Box<dyn FnOnce(Io) -> Task + Send>;
/// Connects to a port of the pod.
pub type Dialer =
    Arc<dyn Fn(u16) -> Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>> + Send + Sync>;

/// Which endpoint a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Attach => "attach",
            Kind::PortForward => "portforward",
        }
    }
}

/// What a token was issued for.
pub enum Pending {
    /// Exec or attach: the streams the CRI request asked for and the runner.
    Command {
        kind: Kind,
        opts: Options,
        run: Runner,
    },
    /// Port-forward: the request's ports (used by WebSocket clients that
    /// name none in the query) and how to reach the pod.
    PortForward { ports: Vec<u16>, dial: Dialer },
}

impl Pending {
    fn kind(&self) -> Kind {
        match self {
            Pending::Command { kind, .. } => *kind,
            Pending::PortForward { .. } => Kind::PortForward,
        }
    }
}

/// The streaming server: its address and the tokens it honours.
pub struct Server {
    base: String,
    tokens: Mutex<Tokens<Pending>>,
}

impl Server {
    /// Bind `addr` (port 0: any free port). Serve with [`Server::serve`].
    pub async fn bind(addr: SocketAddr) -> io::Result<(Arc<Server>, TcpListener)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let server = Server {
            base: format!("http://{local}"),
            tokens: Mutex::new(Tokens::new(TOKEN_TTL, MAX_IN_FLIGHT)),
        };
        Ok((Arc::new(server), listener))
    }

    /// `http://ip:port`, as URLs are built.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Issue a token for `pending`; returns the URL to hand the client.
    pub fn url(&self, pending: Pending) -> Result<String, TokenError> {
        let kind = pending.kind();
        let token = self.lock().insert(pending)?;
        Ok(format!("{}/{}/{token}", self.base, kind.path()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens<Pending>> {
        // Token maps are left consistent by every operation: ignore poisoning.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accept connections until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        loop {
            let tcp = tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, "streaming server: accept");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            // Small frames (a stream's reply, the exit status, a FIN) must
            // not wait for the peer's delayed ACK.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "streaming server: TCP_NODELAY");
            }
            let me = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, std::convert::Infallible>(me.handle(req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }

    /// Serve one request: `/{exec,attach,portforward}/<token>` (also called
    /// by the kubelet API with a URL this server issued).
    pub fn handle(&self, mut req: Request<Body>) -> Response<String> {
        let Some((kind, token)) = route(req.uri().path()) else {
            return text(StatusCode::NOT_FOUND, "not found".into());
        };
        let pending = {
            let mut tokens = self.lock();
            tokens.take(token)
        };
        let Some(pending) = pending.filter(|p| p.kind() == kind) else {
            return text(
                StatusCode::NOT_FOUND,
                "unknown, used or expired streaming token".into(),
            );
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let ws = negotiate::is_websocket(req.headers());
        match (pending, ws) {
            (Pending::Command { opts, run, .. }, false) => {
                let protocol = match negotiate::spdy(req.headers(), negotiate::REMOTECOMMAND_SPDY) {
                    Ok(p) => p,
                    Err(e) => return e.response(),
                };
                let version = match Version::from_protocol(protocol) {
                    Ok(v) => v,
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                tokio::spawn(async move {
                    let Ok(up) = on_upgrade.await else { return };
                    let (session, incoming) =
                        Session::new(TokioIo::new(up), Role::Server, Config::kubernetes());
                    match remotecommand::accept(
                        session,
                        incoming,
                        version,
                        opts,
                        STREAM_CREATION_TIMEOUT,
                    )
                    .await
                    {
                        Ok(io) => run(io).await,
                        Err(e) => tracing::info!(error = %e, "stream setup failed"),
                    }
                });
                upgraded(negotiate::spdy_response(protocol))
            }
            (Pending::Command { opts, run, .. }, true) => {
                let up =
                    match negotiate::websocket(req.headers(), negotiate::REMOTECOMMAND_WEBSOCKET) {
                        Ok(u) => u,
                        Err(e) => return e.response(),
                    };
                let version = match websocket::Version::from_protocol(up.protocol) {
                    Ok(v) => v,
                    Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                };
                tokio::spawn(async move {
                    let Ok(raw) = on_upgrade.await else { return };
                    let ws =
                        WebSocketStream::from_raw_socket(TokioIo::new(raw), WsRole::Server, None)
                            .await;
                    run(websocket::exec(ws, version, opts)).await;
                });
                upgraded(negotiate::websocket_response(&up))
            }
            (Pending::PortForward { dial, .. }, false) => {
                let protocol = match negotiate::spdy(req.headers(), negotiate::PORTFORWARD_SPDY) {
                    Ok(p) => p,
                    Err(e) => return e.response(),
                };
                tokio::spawn(async move {
                    let Ok(up) = on_upgrade.await else { return };
                    let (_session, incoming) =
                        Session::new(TokioIo::new(up), Role::Server, Config::kubernetes());
                    portforward::serve(incoming, move |p| dial(p), PAIR_TIMEOUT).await;
                });
                upgraded(negotiate::spdy_response(protocol))
            }
            (Pending::PortForward { ports, dial }, true) => {
                let up = match negotiate::websocket(req.headers(), negotiate::PORTFORWARD_WEBSOCKET)
                {
                    Ok(u) => u,
                    Err(e) => return e.response(),
                };
                let ports = match up.protocol {
                    "v4.channel.k8s.io" => {
                        let q = req.uri().query().unwrap_or("");
                        match websocket::ports_from_query(q) {
                            Ok(p) => p,
                            Err(websocket::WebSocketError::NoPort) if !ports.is_empty() => ports,
                            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
                        }
                    }
                    _ => Vec::new(),
                };
                tokio::spawn(async move {
                    let Ok(raw) = on_upgrade.await else { return };
                    let ws =
                        WebSocketStream::from_raw_socket(TokioIo::new(raw), WsRole::Server, None)
                            .await;
                    if ports.is_empty() {
                        // SPDY/3.1+portforward.k8s.io: a SPDY session inside the WebSocket.
                        let (_session, incoming) =
                            Session::new(websocket::tunnel(ws), Role::Server, Config::kubernetes());
                        portforward::serve(incoming, move |p| dial(p), PAIR_TIMEOUT).await;
                    } else {
                        websocket::port_forward(ws, ports, move |p| dial(p)).await;
                    }
                });
                upgraded(negotiate::websocket_response(&up))
            }
        }
    }
}

/// `/exec/<token>` and friends.
fn route(path: &str) -> Option<(Kind, &str)> {
    let (kind, token) = path.strip_prefix('/')?.split_once('/')?;
    let kind = match kind {
        "exec" => Kind::Exec,
        "attach" => Kind::Attach,
        "portforward" => Kind::PortForward,
        _ => return None,
    };
    (!token.is_empty() && !token.contains('/')).then_some((kind, token))
}

fn text(status: StatusCode, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn upgraded(r: Response<()>) -> Response<String> {
    r.map(|()| String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_endpoint_and_token_only() {
        assert_eq!(route("/exec/abc"), Some((Kind::Exec, "abc")));
        assert_eq!(
            route("/portforward/x-_Y"),
            Some((Kind::PortForward, "x-_Y"))
        );
        assert_eq!(route("/exec/"), None);
        assert_eq!(route("/exec/a/b"), None);
        assert_eq!(route("/logs/abc"), None);
        assert_eq!(route("/"), None);
    }
}
