//! WebSocket protocol tests: exec over v5/v4 channels, port-forward over v4
//! channels and over SPDY-in-WebSocket, with tokio-tungstenite as the client.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper::body::Incoming as Body;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use super::io::Options;
use super::negotiate;
use super::spdy::{Config, Role, Session};
use super::status::Status;
use super::tests::{echo_server, escape, forward_once, query, run_local, start_server};
use super::websocket::{self, Version};

/// The test server's WebSocket routes: /ws/exec and /ws/portforward.
pub(super) fn handle(mut req: Request<Body>) -> Response<String> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let is_pf = req.uri().path() == "/ws/portforward";
    let offered = if is_pf {
        negotiate::PORTFORWARD_WEBSOCKET
    } else {
        negotiate::REMOTECOMMAND_WEBSOCKET
    };
    let up = match negotiate::websocket(req.headers(), offered) {
        Ok(u) => u,
        Err(e) => return e.response(),
    };
    let cmd = query(&req, "cmd").unwrap_or_default();
    let opts = Options {
        stdin: query(&req, "stdin").is_some(),
        stdout: true,
        stderr: true,
        tty: false,
    };
    let ports = websocket::ports_from_query(req.uri().query().unwrap_or(""));
    let protocol = up.protocol;
    tokio::spawn(async move {
        let Ok(raw) = on_upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(raw), WsRole::Server, None).await;
        let dial = |port: u16| TcpStream::connect(("127.0.0.1", port));
        match (is_pf, protocol) {
            (true, "SPDY/3.1+portforward.k8s.io") => {
                let (_session, incoming) =
                    Session::new(websocket::tunnel(ws), Role::Server, Config::kubernetes());
                super::portforward::serve(incoming, dial, Duration::from_secs(2)).await;
            }
            (true, _) => {
                if let Ok(ports) = ports {
                    websocket::port_forward(ws, ports, dial).await;
                }
            }
            (false, p) => {
                let Ok(version) = Version::from_protocol(p) else {
                    return;
                };
                run_local(cmd, websocket::exec(ws, version, opts)).await;
            }
        }
    });
    negotiate::websocket_response(&up).map(|()| String::new())
}

type Client = WebSocketStream<TcpStream>;

async fn connect(path: &str, protocols: &str) -> (Client, String) {
    let addr = start_server().await;
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().expect("header"));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("websocket handshake");
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (ws, chosen)
}

/// Reads messages until the server closes; returns the bytes per channel.
async fn collect(ws: &mut Client) -> [Vec<u8>; 5] {
    let mut out: [Vec<u8>; 5] = Default::default();
    let read = async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(d) = msg
                && let Some((&ch, rest)) = d.split_first()
                && usize::from(ch) < out.len()
            {
                out[usize::from(ch)].extend_from_slice(rest);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("server finished");
    out
}

#[tokio::test]
async fn v5_exec_gets_stdin_eof_from_the_close_signal_and_the_exit_code() {
    let (mut ws, proto) = connect(
        &format!("/ws/exec?stdin=1&cmd={}", escape("cat; exit 4")),
        "v5.channel.k8s.io, v4.channel.k8s.io",
    )
    .await;
    assert_eq!(proto, "v5.channel.k8s.io");
    ws.send(Message::Binary(b"\x00hello".to_vec().into()))
        .await
        .expect("stdin");
    // Without this close signal `cat` would never end.
    ws.send(Message::Binary(vec![255, 0].into()))
        .await
        .expect("close stdin");
    let out = collect(&mut ws).await;
    assert_eq!(out[1], b"hello");
    let st: Status = serde_json::from_slice(&out[3]).expect("status");
    assert_eq!(st.exit_code(), Some(4));
}

#[tokio::test]
async fn v4_exec_separates_stdout_and_stderr_and_reports_success() {
    let (mut ws, proto) = connect(
        &format!("/ws/exec?cmd={}", escape("echo a; echo b >&2")),
        "v4.channel.k8s.io",
    )
    .await;
    assert_eq!(proto, "v4.channel.k8s.io");
    let out = collect(&mut ws).await;
    assert_eq!(
        (out[1].as_slice(), out[2].as_slice()),
        (&b"a\n"[..], &b"b\n"[..])
    );
    let st: Status = serde_json::from_slice(&out[3]).expect("status");
    assert_eq!(st.status, "Success");
}

#[tokio::test]
async fn unsupported_websocket_subprotocol_fails_the_handshake() {
    let addr = start_server().await;
    let mut req = format!("ws://{addr}/ws/exec?cmd=true")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "base64.channel.k8s.io".parse().expect("header"),
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    assert!(tokio_tungstenite::client_async(req, tcp).await.is_err());
}

#[tokio::test]
async fn v4_port_forward_announces_ports_and_carries_data() {
    let port = echo_server().await;
    let (mut ws, proto) =
        connect(&format!("/ws/portforward?port={port}"), "v4.channel.k8s.io").await;
    assert_eq!(proto, "v4.channel.k8s.io");
    let le = port.to_le_bytes();
    for ch in [0u8, 1] {
        let Some(Ok(Message::Binary(first))) = ws.next().await else {
            panic!("no port announcement")
        };
        assert_eq!(&first[..], &[ch, le[0], le[1]]);
    }
    ws.send(Message::Binary(b"\x00over websocket".to_vec().into()))
        .await
        .expect("send");
    let mut got = Vec::new();
    while got.len() < 14 {
        match ws.next().await {
            Some(Ok(Message::Binary(d))) if d.first() == Some(&0) => got.extend_from_slice(&d[1..]),
            Some(Ok(_)) => {}
            other => panic!("stream ended early: {other:?}"),
        }
    }
    assert_eq!(got, b"over websocket");
}

#[tokio::test]
async fn spdy_tunnelled_in_websocket_port_forward() {
    let port = echo_server().await;
    let (ws, proto) = connect("/ws/portforward", "SPDY/3.1+portforward.k8s.io").await;
    assert_eq!(proto, "SPDY/3.1+portforward.k8s.io");
    let (session, _incoming) =
        Session::new(websocket::tunnel(ws), Role::Client, Config::kubernetes());
    let payload: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 241) as u8).collect();
    let (back, err) = forward_once(&session, port, 0, &payload).await;
    assert!(back.expect("data back") == payload);
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
}
