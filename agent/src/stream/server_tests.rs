//! The streaming server itself (tokens, routes, both transports) with
//! stand-in runners: an exec that runs `sh -c` on the host and a dialer to
//! a local echo server. The CRI wiring is tested end to end in
//! tests/tests/cri_stream*.rs.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::io::Options;
use super::server::{Dialer, Kind, Pending, Server};
use super::spdy::{Config, Role, Session};
use super::status::Status;
use super::tests::{echo_server, forward_once, open, run_local, upgrade};
use super::websocket;

async fn start() -> Arc<Server> {
    let (server, listener) = Server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    tokio::spawn(server.clone().serve(listener, std::future::pending()));
    server
}

fn exec(server: &Server, script: &str) -> String {
    let opts = Options {
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let script = script.to_string();
    server
        .url(Pending::Command {
            kind: Kind::Exec,
            opts,
            run: Box::new(move |io| Box::pin(run_local(script, io))),
        })
        .expect("token")
}

fn echo_dialer() -> Dialer {
    Arc::new(|port| Box::pin(TcpStream::connect(("127.0.0.1", port))))
}

/// (host:port, path) of a URL the server issued.
fn split(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("path");
    (host.parse().expect("addr"), format!("/{path}"))
}

const V4: &[(&str, &str)] = &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")];

#[tokio::test]
async fn a_token_serves_one_spdy_exec_then_404() {
    let server = start().await;
    let url = exec(&server, "echo via-token; exit 5");
    assert!(
        url.starts_with(server.base_url()) && url.contains("/exec/"),
        "{url}"
    );
    let (addr, path) = split(&url);
    let (status, _h, tcp) = upgrade(addr, &path, V4).await;
    assert_eq!(status, 101);
    let (session, _incoming) = Session::new(tcp, Role::Client, Config::kubernetes());
    let mut error = open(&session, "error").await;
    let mut stdout = open(&session, "stdout").await;
    let _stderr = open(&session, "stderr").await;
    let (mut out, mut st) = (Vec::new(), Vec::new());
    stdout.read_to_end(&mut out).await.expect("stdout");
    error.read_to_end(&mut st).await.expect("error stream");
    assert_eq!(out, b"via-token\n");
    let st: Status = serde_json::from_slice(&st).expect("status");
    assert_eq!(st.exit_code(), Some(5));
    // Used: 404. Made up: 404. An exec token on the attach route: 404.
    assert_eq!(upgrade(addr, &path, V4).await.0, 404);
    assert_eq!(upgrade(addr, "/exec/nonsense", V4).await.0, 404);
    let other = split(&exec(&server, "true"))
        .1
        .replacen("/exec/", "/attach/", 1);
    assert_eq!(upgrade(addr, &other, V4).await.0, 404);
}

#[tokio::test]
async fn an_unknown_subprotocol_is_refused_and_nothing_runs() {
    let server = start().await;
    let marker = tempfile::NamedTempFile::new().expect("temp");
    let path = marker.path().to_path_buf();
    drop(marker);
    let url = exec(&server, &format!("touch {}", path.display()));
    let (addr, p) = split(&url);
    let (status, _h, _tcp) = upgrade(
        addr,
        &p,
        &[("X-Stream-Protocol-Version", "v9.channel.k8s.io")],
    )
    .await;
    assert_eq!(status, 403);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!path.exists(), "the refused exec ran");
    assert_eq!(upgrade(addr, &p, V4).await.0, 404, "the token is used up");
}

#[tokio::test]
async fn port_forward_over_spdy_tunnelled_in_a_websocket() {
    let server = start().await;
    let port = echo_server().await;
    let url = server
        .url(Pending::PortForward {
            ports: vec![port],
            dial: echo_dialer(),
        })
        .expect("token");
    let (addr, path) = split(&url);
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "SPDY/3.1+portforward.k8s.io".parse().expect("header"),
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (ws, _resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("handshake");
    let (session, _incoming) =
        Session::new(websocket::tunnel(ws), Role::Client, Config::kubernetes());
    let payload: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 253) as u8).collect();
    for request in 0..2 {
        let (back, err) = forward_once(&session, port, request, &payload).await;
        assert!(back.expect("data back") == payload);
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
    }
}
