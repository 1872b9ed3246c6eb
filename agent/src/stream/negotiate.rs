//! HTTP upgrade handshakes for the streaming endpoints.
//!
//! SPDY: the client sends `Connection: Upgrade`, `Upgrade: SPDY/3.1` and one
//! `X-Stream-Protocol-Version` per subprotocol it speaks, best first; the
//! server picks the first one it also speaks and answers `101` with it. With
//! no common protocol the answer is `403` with `X-Accepted-Stream-Protocol-Versions`
//! listing ours (as k8s.io/apimachinery's httpstream does).
//!
//! WebSocket: the subprotocols travel in `Sec-WebSocket-Protocol`; the
//! server picks the first of the client's that it supports.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// The header naming stream subprotocols (request: offered, response: chosen).
pub const PROTOCOL_VERSION_HEADER: &str = "x-stream-protocol-version";
/// The header listing our subprotocols when negotiation fails.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";
/// The SPDY upgrade token.
pub const SPDY_31: &str = "SPDY/3.1";

/// Remote command subprotocols over SPDY, best first.
pub const REMOTECOMMAND_SPDY: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
/// Remote command subprotocols over WebSocket, best first.
pub const REMOTECOMMAND_WEBSOCKET: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// Port-forward over SPDY.
pub const PORTFORWARD_SPDY: &[&str] = &["portforward.k8s.io"];
/// Port-forward over WebSocket: the channel protocol, or SPDY tunnelled in WebSocket.
pub const PORTFORWARD_WEBSOCKET: &[&str] = &["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"];

/// Why an upgrade request was refused.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    #[error("request is not an upgrade to {0} (Connection: Upgrade and Upgrade: {0} required)")]
    NotUpgrade(&'static str),
    #[error("unable to negotiate protocol: client supports {client:?}, server supports {server:?}")]
    NoCommonProtocol {
        client: Vec<String>,
        server: Vec<String>,
    },
    #[error("websocket request lacks {0}")]
    MissingHeader(&'static str),
    #[error("websocket version {0:?} is not 13")]
    WebSocketVersion(String),
}

impl NegotiateError {
    /// The HTTP response the client should get.
    pub fn response(&self) -> Response<String> {
        let status = match self {
            NegotiateError::NoCommonProtocol { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut resp = Response::new(format!("unable to upgrade: {self}"));
        *resp.status_mut() = status;
        if let NegotiateError::NoCommonProtocol { server, .. } = self {
            for p in server {
                if let Ok(v) = HeaderValue::from_str(p) {
                    resp.headers_mut().append(ACCEPTED_PROTOCOLS_HEADER, v);
                }
            }
        }
        resp
    }
}

/// Every value of `name`, split at commas and trimmed.
fn values(headers: &HeaderMap, name: impl header::AsHeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    values(headers, name)
        .iter()
        .any(|v| v.eq_ignore_ascii_case(token))
}

fn pick(client: Vec<String>, server: &[&'static str]) -> Result<&'static str, NegotiateError> {
    client
        .iter()
        .find_map(|c| server.iter().copied().find(|s| s == c))
        .ok_or_else(|| NegotiateError::NoCommonProtocol {
            client,
            server: server.iter().map(|s| s.to_string()).collect(),
        })
}

/// Checks a SPDY upgrade and picks the subprotocol. `Ok(None)`: the client
/// named none (pre-v2 clients); callers decide whether they allow that.
pub fn spdy(
    headers: &HeaderMap,
    server: &[&'static str],
) -> Result<Option<&'static str>, NegotiateError> {
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, SPDY_31)
    {
        return Err(NegotiateError::NotUpgrade(SPDY_31));
    }
    let client = values(headers, PROTOCOL_VERSION_HEADER);
    if client.is_empty() {
        return Ok(None);
    }
    pick(client, server).map(Some)
}

/// The `101 Switching Protocols` answer to a SPDY upgrade.
pub fn spdy_response(protocol: Option<&str>) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_31));
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(PROTOCOL_VERSION_HEADER, v);
    }
    resp
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// A negotiated WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketUpgrade {
    pub protocol: &'static str,
    pub accept: String,
}

/// Checks a WebSocket upgrade (RFC 6455) and picks the subprotocol.
pub fn websocket(
    headers: &HeaderMap,
    server: &[&'static str],
) -> Result<WebSocketUpgrade, NegotiateError> {
    if !has_token(headers, header::CONNECTION, "upgrade") || !is_websocket(headers) {
        return Err(NegotiateError::NotUpgrade("websocket"));
    }
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    match version {
        Some("13") => {}
        Some(other) => return Err(NegotiateError::WebSocketVersion(other.to_string())),
        None => return Err(NegotiateError::MissingHeader("Sec-WebSocket-Version")),
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(NegotiateError::MissingHeader("Sec-WebSocket-Key"))?;
    let protocol = pick(values(headers, header::SEC_WEBSOCKET_PROTOCOL), server)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Ok(WebSocketUpgrade { protocol, accept })
}

/// The `101 Switching Protocols` answer to a WebSocket upgrade.
pub fn websocket_response(upgrade: &WebSocketUpgrade) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&upgrade.accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(upgrade.protocol),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spdy_request(protocols: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        for p in protocols {
            h.append(
                PROTOCOL_VERSION_HEADER,
                HeaderValue::from_str(p).expect("value"),
            );
        }
        h
    }

    #[test]
    fn spdy_picks_the_clients_first_common_protocol() {
        // kubectl/crictl offer v4, v3, v2, v1 in that order.
        let h = spdy_request(&[
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io",
        ]);
        assert_eq!(
            spdy(&h, REMOTECOMMAND_SPDY).expect("negotiated"),
            Some("v4.channel.k8s.io")
        );
        let old = spdy_request(&["v2.channel.k8s.io", "channel.k8s.io"]);
        assert_eq!(
            spdy(&old, REMOTECOMMAND_SPDY).expect("negotiated"),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(
            spdy(&spdy_request(&[]), PORTFORWARD_SPDY).expect("none"),
            None
        );
        let resp = spdy_response(Some("v4.channel.k8s.io"));
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(resp.headers()[PROTOCOL_VERSION_HEADER], "v4.channel.k8s.io");
        assert_eq!(resp.headers()[header::UPGRADE], "SPDY/3.1");
    }

    #[test]
    fn no_common_protocol_is_a_403_listing_ours() {
        let err =
            spdy(&spdy_request(&["v9.channel.k8s.io"]), REMOTECOMMAND_SPDY).expect_err("no match");
        let resp = err.response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let listed: Vec<_> = resp
            .headers()
            .get_all(ACCEPTED_PROTOCOLS_HEADER)
            .iter()
            .collect();
        assert_eq!(listed.len(), REMOTECOMMAND_SPDY.len());
        assert!(resp.body().contains("v9.channel.k8s.io"));
        let mut plain = HeaderMap::new();
        plain.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert_eq!(
            spdy(&plain, REMOTECOMMAND_SPDY)
                .expect_err("no upgrade")
                .response()
                .status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn websocket_accept_key_and_protocol() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        // The sample key and accept value of RFC 6455 section 1.3.
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        let up = websocket(&h, REMOTECOMMAND_WEBSOCKET).expect("upgrade");
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(up.protocol, "v4.channel.k8s.io", "the client's order wins");
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io"),
        );
        assert!(matches!(
            websocket(&h, REMOTECOMMAND_WEBSOCKET),
            Err(NegotiateError::NoCommonProtocol { .. })
        ));
    }
}
