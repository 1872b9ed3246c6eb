//! The streaming server over WebSocket (a Rust client following
//! `v5.channel.k8s.io` and `v4.channel.k8s.io` port-forward; crictl 1.26
//! has no WebSocket transport), and bad requests: used and unknown tokens,
//! unknown subprotocols, a container stopped after its token was issued, a
//! client that hangs up mid-exec. Nothing may hang or be left behind.

mod cri_stream_support;

use std::time::Duration;

use cri_stream_support::{exec_shim_pids, grpc, no_exec_sessions_left, rt, run_pod};
use futures::{SinkExt, StreamExt};
use husk_tests::cri::CriNode;
use k8s_cri::v1 as cri;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = WebSocketStream<TcpStream>;

/// Open `url` (http://…) as a WebSocket offering `protocols`.
async fn ws_connect(url: &str, protocols: &str) -> Result<(Ws, String), String> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().expect("header"));
    let host = ws_url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .expect("host:port");
    let tcp = TcpStream::connect(host).await.expect("connect");
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, resp)) => {
            let chosen = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            Ok((ws, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Messages until the server closes, by channel (0-4).
async fn collect(ws: &mut Ws) -> [Vec<u8>; 5] {
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
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server finished the exec in time");
    out
}

fn status(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn exec_req(ctr: &str, cmd: &[&str], stdin: bool, tty: bool) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: ctr.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    }
}

/// Whether `pid` runs (a zombie, waiting for the test to reap it, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn sleeper(node: &CriNode, pod: &str) -> (String, String) {
    run_pod(
        node,
        pod,
        "main",
        serde_json::json!({"command": ["sh", "-c", "while true; do sleep 1; done"]}),
    )
}

#[test]
fn websocket_v5_exec_stdin_close_exit_code_and_tty_resize() {
    require_crictl!();
    let node = CriNode::start();
    let (_pod, ctr) = sleeper(&node, "ws");
    rt().block_on(async {
        let mut c = grpc(&node).await;
        let url = c
            .exec(exec_req(
                &ctr,
                &["sh", "-c", "cat; echo err >&2; exit 3"],
                true,
                false,
            ))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let (mut ws, proto) = ws_connect(&url, "v5.channel.k8s.io, v4.channel.k8s.io")
            .await
            .expect("upgrade");
        assert_eq!(proto, "v5.channel.k8s.io");
        ws.send(Message::Binary(b"\x00hello over v5".to_vec().into()))
            .await
            .expect("stdin");
        // v5's close signal for stdin: without it `cat` never ends.
        ws.send(Message::Binary(vec![255, 0].into()))
            .await
            .expect("close stdin");
        let out = collect(&mut ws).await;
        assert_eq!(out[1], b"hello over v5");
        assert_eq!(out[2], b"err\n");
        let st = status(&out[3]);
        assert_eq!(st["status"], "Failure", "{st}");
        assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
        assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode", "{st}");
        assert_eq!(st["details"]["causes"][0]["message"], "3", "{st}");

        // A tty: the resize message reaches the process's terminal.
        let script = r#"while [ "$(stty size)" != "30 100" ]; do sleep 0.1; done; echo resized"#;
        let url = c
            .exec(exec_req(&ctr, &["sh", "-c", script], false, true))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
            .await
            .expect("upgrade");
        ws.send(Message::Binary(
            b"\x04{\"Width\":100,\"Height\":30}".to_vec().into(),
        ))
        .await
        .expect("resize");
        let out = collect(&mut ws).await;
        assert!(
            String::from_utf8_lossy(&out[1]).contains("resized"),
            "{}",
            String::from_utf8_lossy(&out[1])
        );
        assert_eq!(status(&out[3])["status"], "Success");
    });
    no_exec_sessions_left(&node);
}

#[test]
fn websocket_v4_port_forward_reaches_the_pod() {
    require_crictl!();
    let node = CriNode::start();
    let (pod, _ctr) = run_pod(
        &node,
        "wspf",
        "httpd",
        serde_json::json!({"command": ["sh", "-c",
            "mkdir -p /www && echo over-websocket > /www/index.html && exec httpd -f -p 8080 -h /www"]}),
    );
    rt().block_on(async {
        let mut c = grpc(&node).await;
        let mut body = Vec::new();
        // httpd may take a moment to listen: retry with fresh tokens.
        for _ in 0..50 {
            let url = c
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: pod.clone(),
                    port: vec![8080],
                })
                .await
                .expect("PortForward")
                .into_inner()
                .url;
            let (mut ws, proto) = ws_connect(&format!("{url}?port=8080"), "v4.channel.k8s.io")
                .await
                .expect("upgrade");
            assert_eq!(proto, "v4.channel.k8s.io");
            let req = b"\x00GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n".to_vec();
            ws.send(Message::Binary(req.into())).await.expect("send");
            let out = collect(&mut ws).await;
            // Each channel starts with its port, little-endian.
            assert_eq!(out[0][..2], 8080u16.to_le_bytes());
            body = out[0][2..].to_vec();
            if String::from_utf8_lossy(&body).contains("over-websocket") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with("HTTP/1.") && text.contains("over-websocket"),
            "{text}"
        );
    });
}

#[test]
fn bad_tokens_protocols_and_stopped_containers_fail_cleanly() {
    require_crictl!();
    let node = CriNode::start();
    let (_pod, ctr) = sleeper(&node, "bad");
    rt().block_on(async {
        let mut c = grpc(&node).await;
        let exec = |cmd: &[&str]| exec_req(&ctr, cmd, false, false);

        // A token works once; then, and for a made-up one, 404.
        let url = c
            .exec(exec(&["true"]))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
            .await
            .expect("first use");
        assert_eq!(status(&collect(&mut ws).await[3])["status"], "Success");
        assert_eq!(
            ws_connect(&url, "v5.channel.k8s.io").await.err().as_deref(),
            Some("HTTP 404")
        );
        let base = url.rsplit_once('/').expect("token").0;
        let bogus = format!("{base}/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(
            ws_connect(&bogus, "v5.channel.k8s.io")
                .await
                .err()
                .as_deref(),
            Some("HTTP 404")
        );
        // The token of an exec is no attach token.
        let url = c
            .exec(exec(&["true"]))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let as_attach = url.replacen("/exec/", "/attach/", 1);
        assert_eq!(
            ws_connect(&as_attach, "v5.channel.k8s.io")
                .await
                .err()
                .as_deref(),
            Some("HTTP 404")
        );

        // An unknown subprotocol: the upgrade is refused (403), nothing runs.
        let url = c
            .exec(exec(&["touch", "/ran"]))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        assert_eq!(
            ws_connect(&url, "base64.channel.k8s.io")
                .await
                .err()
                .as_deref(),
            Some("HTTP 403")
        );
        let ran = c
            .exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["ls".into(), "/ran".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        assert_ne!(ran.exit_code, 0, "the refused exec ran anyway");

        // A client that hangs up mid-exec: the session is killed and removed.
        let url = c
            .exec(exec(&["sleep", "1000"]))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        let (ws, _) = ws_connect(&url, "v5.channel.k8s.io")
            .await
            .expect("upgrade");
        let t0 = std::time::Instant::now();
        let shim = loop {
            if let Some(p) = exec_shim_pids(&node).first() {
                break *p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no exec session started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        drop(ws);
        let t0 = std::time::Instant::now();
        while alive(shim) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "exec shim {shim} outlived its client"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A token issued, then the container stops: the client is told why.
        let url = c
            .exec(exec(&["true"]))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        node.crictl_ok(&["stop", "--timeout", "0", &ctr]);
        let (mut ws, _) = ws_connect(&url, "v5.channel.k8s.io")
            .await
            .expect("upgrade");
        let st = status(&collect(&mut ws).await[3]);
        assert_eq!(st["status"], "Failure", "{st}");
        assert!(
            st["message"]
                .as_str()
                .unwrap_or("")
                .contains("is not running"),
            "{st}"
        );
        // And Exec itself now refuses, naming the state.
        let err = c
            .exec(exec(&["true"]))
            .await
            .expect_err("stopped container");
        assert_eq!(
            err.code(),
            tonic::Code::FailedPrecondition,
            "{}",
            err.message()
        );
    });
    no_exec_sessions_left(&node);
}
