//! The upgrade proxy to another runtime's streaming server: when the CRI
//! runtime is not husklet's own (`--container-runtime-endpoint`, e.g.
//! containerd), its `Exec`/`Attach`/`PortForward` URL points at its own
//! streaming server. kubelet does not redirect the client there; it proxies
//! (`proxyStream`, an `UpgradeAwareHandler` on the URL with upgrade
//! required): the client's upgrade request goes to the URL as it is (the
//! token in the path carries the request; the client's query is not
//! forwarded), the server's answer comes back, and after a 101 both
//! connections are spliced until either side closes.

use std::io;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONNECTION, HOST, UPGRADE};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Body, full, text};

/// Whether `req` asks for a connection upgrade (SPDY or WebSocket).
fn is_upgrade(req: &Request<Incoming>) -> bool {
    let connection_upgrade = req.headers().get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    connection_upgrade && req.headers().contains_key(UPGRADE)
}

/// Proxy the upgrade request `req` to the streaming URL `url`.
pub async fn upgrade(mut req: Request<Incoming>, url: &str) -> Response<Body> {
    if !is_upgrade(&req) {
        return text(StatusCode::BAD_REQUEST, "Upgrade request required");
    }
    let target: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(%url, "kubelet API: the runtime's streaming URL: {e}");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the runtime's streaming URL {url:?}: {e}"),
            );
        }
    };
    if target.scheme_str() != Some("http") {
        // A TLS streaming server (containerd's enable_tls_streaming) would
        // need its CA: not configured here.
        return text(
            StatusCode::NOT_IMPLEMENTED,
            &format!("streaming URL {url:?}: only http:// streaming servers are proxied"),
        );
    }
    let (Some(host), Some(authority)) = (target.host(), target.authority().cloned()) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the runtime's streaming URL {url:?} has no host"),
        );
    };
    // [::1] is a host, ::1 an address.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = target.port_u16().unwrap_or(80);
    let stream = match TcpStream::connect((host, port)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%url, "kubelet API: connect to the runtime's streaming server: {e}");
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("connect to the runtime's streaming server at {authority}: {e}"),
            );
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_GATEWAY, &format!("streaming server: {e}")),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("kubelet API: streaming proxy connection: {e}");
        }
    });

    // The client's request, headers and all (its upgrade, protocol
    // versions, WebSocket key), to the URL's path and host.
    let path = target
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = Request::builder().method(req.method().clone()).uri(path);
    for (k, v) in req.headers() {
        if k != HOST {
            out = out.header(k, v);
        }
    }
    let out = match out
        .header(HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let client_side = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("the runtime's streaming server at {authority}: {e}"),
            );
        }
    };
    let status = resp.status();
    let mut back = Response::builder().status(status);
    for (k, v) in resp.headers() {
        back = back.header(k, v);
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // Refused (bad token, unknown container…): its answer goes back.
        let body = resp.into_body().map_err(io::Error::other).boxed();
        return back
            .body(body)
            .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()));
    }
    let server_side = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, server) = match tokio::join!(client_side, server_side) {
            (Ok(c), Ok(s)) => (c, s),
            (c, s) => {
                tracing::warn!(
                    client = ?c.err(),
                    server = ?s.err(),
                    "kubelet API: streaming proxy upgrade failed"
                );
                return;
            }
        };
        let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
        match tokio::io::copy_bidirectional(&mut client, &mut server).await {
            Ok((up, down)) => tracing::debug!(up, down, "kubelet API: streaming proxy closed"),
            Err(e) => tracing::debug!("kubelet API: streaming proxy: {e}"),
        }
    });
    back.body(full(Bytes::new()))
        .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}
