//! End-to-end protocol tests: a small HTTP server (hyper) upgrades requests
//! and serves exec over the SPDY layer for a local `sh -c` (the protocol
//! only; real exec goes through husk-shim) and port-forward to a local TCP
//! echo server; clients built from this crate's own framing drive it the way
//! client-go does (stream order, headers, half-closes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use hyper::body::Incoming as Body;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::io::{Io, Options};
use super::negotiate;
use super::remotecommand::{self, Version};
use super::spdy::{Config, Headers, Role, Session, Stream};
use super::status::{Outcome, Status};

/// Runs `cmd` with `sh -c`, wired to `io`, and reports its exit code.
pub(super) async fn run_local(cmd: String, io: Io) {
    let Io {
        stdin,
        stdout,
        stderr,
        finish,
        ..
    } = io;
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = finish.finish(Outcome::Error(format!("spawn: {e}"))).await;
            return;
        }
    };
    let stdin_pump = match (stdin, child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
        })),
        _ => None,
    };
    let pump = |out: Option<super::io::BoxWrite>, src: Option<tokio::process::ChildStdout>| async move {
        if let (Some(mut w), Some(mut r)) = (out, src) {
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        }
    };
    let err_pump = async {
        if let (Some(mut w), Some(mut r)) = (stderr, child.stderr.take()) {
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        }
    };
    let out = child.stdout.take();
    tokio::join!(pump(stdout, out), err_pump);
    let code = match child.wait().await {
        Ok(s) => s.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
        }),
        Err(e) => {
            let _ = finish.finish(Outcome::Error(format!("wait: {e}"))).await;
            return;
        }
    };
    if let Some(p) = stdin_pump {
        p.abort();
    }
    let _ = finish.finish(Outcome::Exited(code)).await;
}

pub(super) fn query(req: &Request<Body>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| unescape(v))
    })
}

pub(super) fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            s.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(mut req: Request<Body>) -> Result<Response<String>, Infallible> {
    if negotiate::is_websocket(req.headers()) {
        return Ok(super::ws_tests::handle(req));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    if req.uri().path() == "/portforward" {
        let protocol = match negotiate::spdy(req.headers(), negotiate::PORTFORWARD_SPDY) {
            Ok(p) => p,
            Err(e) => return Ok(e.response()),
        };
        tokio::spawn(async move {
            let Ok(up) = on_upgrade.await else { return };
            let (_session, incoming) =
                Session::new(TokioIo::new(up), Role::Server, Config::kubernetes());
            let dial = |port: u16| TcpStream::connect(("127.0.0.1", port));
            super::portforward::serve(incoming, dial, Duration::from_secs(2)).await;
        });
        return Ok(upgrade_response(negotiate::spdy_response(protocol)));
    }
    let opts = Options {
        stdin: query(&req, "stdin").is_some(),
        stdout: true,
        stderr: true,
        tty: query(&req, "tty").is_some(),
    };
    let cmd = query(&req, "cmd").unwrap_or_default();
    let protocol = match negotiate::spdy(req.headers(), negotiate::REMOTECOMMAND_SPDY) {
        Ok(p) => p,
        Err(e) => return Ok(e.response()),
    };
    let version = match Version::from_protocol(protocol) {
        Ok(v) => v,
        Err(e) => {
            let mut r = Response::new(e.to_string());
            *r.status_mut() = http::StatusCode::FORBIDDEN;
            return Ok(r);
        }
    };
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let (session, incoming) =
            Session::new(TokioIo::new(up), Role::Server, Config::kubernetes());
        let timeout = Duration::from_secs(2);
        if let Ok(io) = remotecommand::accept(session, incoming, version, opts, timeout).await {
            run_local(cmd, io).await;
        }
    });
    Ok(upgrade_response(negotiate::spdy_response(protocol)))
}

fn upgrade_response(r: Response<()>) -> Response<String> {
    r.map(|()| String::new())
}

pub(super) async fn start_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends an upgrade request; returns the status line, headers and the socket.
pub(super) async fn upgrade(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("send request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            tcp.read(&mut b).await.expect("response"),
            1,
            "server closed mid-response"
        );
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, headers, tcp)
}

struct ExecResult {
    protocol: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    error: Vec<u8>,
}

pub(super) async fn open(session: &Session, kind: &str) -> Stream {
    let s = session
        .open(Headers::new().with("streamType", kind), false)
        .expect("open stream");
    s.wait_reply().await.expect("SYN_REPLY");
    s
}

/// Exec the way client-go's v2+ protocols do: error, stdin, stdout, stderr, then copy.
async fn spdy_exec(
    addr: SocketAddr,
    cmd: &str,
    protocols: &[&str],
    stdin: Option<Vec<u8>>,
) -> ExecResult {
    let mut path = format!("/exec?cmd={}", escape(cmd));
    if stdin.is_some() {
        path.push_str("&stdin=1");
    }
    let offers: Vec<_> = protocols
        .iter()
        .map(|p| ("X-Stream-Protocol-Version", *p))
        .collect();
    let (status, headers, tcp) = upgrade(addr, &path, &offers).await;
    assert_eq!(status, 101, "upgrade refused: {headers:?}");
    let protocol = headers
        .iter()
        .find(|(k, _)| k == "x-stream-protocol-version")
        .map(|(_, v)| v.clone());
    let (session, _incoming) = Session::new(tcp, Role::Client, Config::kubernetes());
    let mut error = open(&session, "error").await;
    let stdin_stream = match stdin {
        Some(_) => Some(open(&session, "stdin").await),
        None => None,
    };
    let mut stdout = open(&session, "stdout").await;
    let mut stderr = open(&session, "stderr").await;
    if let (Some(mut s), Some(data)) = (stdin_stream, stdin) {
        tokio::spawn(async move {
            s.write_all(&data).await.expect("stdin");
            s.shutdown().await.expect("stdin EOF");
            // Keep the stream until the server is done with it.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
    }
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
    let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    a.expect("stdout");
    b.expect("stderr");
    error.read_to_end(&mut status).await.expect("error stream");
    ExecResult {
        protocol: protocol.unwrap_or_default(),
        stdout: out,
        stderr: err,
        error: status,
    }
}

const ALL: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

#[tokio::test]
async fn exec_v4_reports_success_and_exit_codes_as_status() {
    let addr = start_server().await;
    let ok = spdy_exec(addr, "echo out; echo err >&2", ALL, None).await;
    assert_eq!(ok.protocol, "v4.channel.k8s.io");
    assert_eq!(ok.stdout, b"out\n");
    assert_eq!(ok.stderr, b"err\n");
    let st: Status = serde_json::from_slice(&ok.error).expect("status json");
    assert_eq!(st.status, "Success");
    for code in [1, 137] {
        let r = spdy_exec(addr, &format!("exit {code}"), ALL, None).await;
        let st: Status = serde_json::from_slice(&r.error).expect("status json");
        assert_eq!(
            st.exit_code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&r.error)
        );
    }
}

#[tokio::test]
async fn exec_v2_uses_text_errors_and_stdin_reaches_the_process() {
    let addr = start_server().await;
    let r = spdy_exec(
        addr,
        "cat; exit 3",
        &["v2.channel.k8s.io"],
        Some(b"from stdin".to_vec()),
    )
    .await;
    assert_eq!(r.protocol, "v2.channel.k8s.io");
    assert_eq!(r.stdout, b"from stdin");
    assert!(String::from_utf8_lossy(&r.error).contains("exit status 3"));
    let ok = spdy_exec(addr, "true", &["v2.channel.k8s.io"], None).await;
    assert!(ok.error.is_empty(), "v2 success writes nothing");
}

#[tokio::test]
async fn exec_moves_large_output_and_input_intact() {
    // More than any SPDY window: spdystream peers never send WINDOW_UPDATE.
    let addr = start_server().await;
    let data: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let r = spdy_exec(addr, "cat", ALL, Some(data.clone())).await;
    assert!(
        r.stdout == data,
        "{} bytes back of {}",
        r.stdout.len(),
        data.len()
    );
    let st: Status = serde_json::from_slice(&r.error).expect("status");
    assert_eq!(st.exit_code(), Some(0));
}

#[tokio::test]
async fn unknown_subprotocol_is_refused_before_the_upgrade() {
    let addr = start_server().await;
    let (status, headers, _tcp) = upgrade(
        addr,
        "/exec?cmd=true",
        &[("X-Stream-Protocol-Version", "v9.channel.k8s.io")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-accepted-stream-protocol-versions" && v == "v4.channel.k8s.io")
    );
}

#[tokio::test]
async fn missing_streams_time_out_with_a_message_on_the_error_stream() {
    let addr = start_server().await;
    let (status, _h, tcp) = upgrade(
        addr,
        "/exec?cmd=true",
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await;
    assert_eq!(status, 101);
    let (session, _incoming) = Session::new(tcp, Role::Client, Config::kubernetes());
    // Only the error stream: stdout and stderr never come.
    let mut error = open(&session, "error").await;
    let mut msg = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), error.read_to_end(&mut msg))
        .await
        .expect("server gave up")
        .expect("read");
    let st: Status = serde_json::from_slice(&msg).expect("status");
    assert_eq!(st.status, "Failure");
    assert!(st.message.contains("timed out"), "{}", st.message);
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("server closed the session");
}

pub(super) async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// One port-forward connection the way kubectl makes it: error stream
/// (half-closed at once), then the data stream, same requestID.
pub(super) async fn forward_once(
    session: &Session,
    port: u16,
    request: u32,
    payload: &[u8],
) -> (std::io::Result<Vec<u8>>, Vec<u8>) {
    let h = |kind: &str| {
        Headers::new()
            .with("streamType", kind)
            .with("port", &port.to_string())
            .with("requestID", &request.to_string())
    };
    let mut error = session.open(h("error"), false).expect("error stream");
    error.wait_reply().await.expect("reply");
    error.shutdown().await.expect("half-close error stream");
    let mut data = session.open(h("data"), false).expect("data stream");
    data.wait_reply().await.expect("reply");
    data.write_all(payload).await.expect("send");
    data.shutdown().await.expect("fin");
    let (mut back, mut err) = (Vec::new(), Vec::new());
    let (a, b) = tokio::join!(data.read_to_end(&mut back), error.read_to_end(&mut err));
    b.expect("error stream");
    (a.map(|_| back), err)
}

#[tokio::test]
async fn port_forward_pairs_run_concurrently_and_report_dial_errors() {
    let addr = start_server().await;
    let port = echo_server().await;
    let (status, headers, tcp) = upgrade(
        addr,
        "/portforward",
        &[("X-Stream-Protocol-Version", "portforward.k8s.io")],
    )
    .await;
    assert_eq!(status, 101);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "x-stream-protocol-version" && v == "portforward.k8s.io")
    );
    let (session, _incoming) = Session::new(tcp, Role::Client, Config::kubernetes());
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let (r1, r2) = tokio::join!(
        forward_once(&session, port, 0, &big),
        forward_once(&session, port, 1, b"small")
    );
    let back = r1.0.expect("first pair");
    assert!(
        back == big && r1.1.is_empty(),
        "first pair: {} bytes, error {:?}",
        back.len(),
        r1.1
    );
    assert_eq!(r2.0.expect("second pair"), b"small");
    assert!(r2.1.is_empty());

    // A port nobody listens on: the failure arrives as text on the error stream.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (back, err) = forward_once(&session, dead_port, 2, b"x").await;
    assert!(
        back.map(|b| b.is_empty()).unwrap_or(true),
        "no data from a failed dial"
    );
    assert!(String::from_utf8_lossy(&err).contains(&format!("error forwarding port {dead_port}")));
}

fn session_pair() -> (
    (Session, super::spdy::Incoming),
    (Session, super::spdy::Incoming),
) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (
        Session::new(a, Role::Client, Config::kubernetes()),
        Session::new(b, Role::Server, Config::kubernetes()),
    )
}

#[tokio::test]
async fn tty_exec_takes_resize_events_and_no_stderr_stream() {
    let ((client, _ci), (server, incoming)) = session_pair();
    let opts = Options {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
    };
    let accept = tokio::spawn(remotecommand::accept(
        server,
        incoming,
        Version::V4,
        opts,
        Duration::from_secs(5),
    ));
    // client-go with a TTY: error, stdin, stdout, resize; no stderr.
    let _error = open(&client, "error").await;
    let _stdin = open(&client, "stdin").await;
    let _stdout = open(&client, "stdout").await;
    let mut resize = open(&client, "resize").await;
    let io = accept.await.expect("task").expect("streams accepted");
    assert!(io.stderr.is_none(), "a TTY merges stderr into stdout");
    resize
        .write_all(br#"{"Width":100,"Height":30}"#)
        .await
        .expect("resize");
    let mut sizes = io.resize.expect("resize channel");
    let got = tokio::time::timeout(Duration::from_secs(5), sizes.recv())
        .await
        .expect("event");
    assert_eq!(
        got,
        Some(super::io::TermSize {
            width: 100,
            height: 30
        })
    );
}

#[tokio::test]
async fn unknown_stream_type_fails_the_exec_with_a_message() {
    let ((client, _ci), (server, incoming)) = session_pair();
    let opts = Options {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: false,
    };
    let accept = tokio::spawn(remotecommand::accept(
        server,
        incoming,
        Version::V4,
        opts,
        Duration::from_secs(5),
    ));
    let mut error = open(&client, "error").await;
    // Its SYN_REPLY may be overtaken by the RST that refuses it: don't wait for it.
    let _bogus = client
        .open(Headers::new().with("streamType", "stdhuh"), false)
        .expect("open");
    let res = accept.await.expect("task");
    assert!(
        matches!(res, Err(remotecommand::RemoteCommandError::UnknownStreamType(ref t)) if t == "stdhuh")
    );
    let mut msg = Vec::new();
    error.read_to_end(&mut msg).await.expect("error stream");
    let st: Status = serde_json::from_slice(&msg).expect("status");
    assert!(st.message.contains("stdhuh"), "{}", st.message);
}

#[tokio::test]
async fn half_open_port_forward_pair_times_out_on_its_error_stream() {
    let addr = start_server().await;
    let (status, _h, tcp) = upgrade(
        addr,
        "/portforward",
        &[("X-Stream-Protocol-Version", "portforward.k8s.io")],
    )
    .await;
    assert_eq!(status, 101);
    let (session, _incoming) = Session::new(tcp, Role::Client, Config::kubernetes());
    let h = Headers::new()
        .with("streamType", "error")
        .with("port", "80")
        .with("requestID", "9");
    let mut error = session.open(h, false).expect("error stream");
    error.wait_reply().await.expect("reply");
    error.shutdown().await.expect("half-close");
    // No data stream follows: the server (2 s pair timeout here) says so and closes.
    let mut msg = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), error.read_to_end(&mut msg))
        .await
        .expect("timed out in time")
        .expect("read");
    assert!(
        String::from_utf8_lossy(&msg).contains("timed out"),
        "{}",
        String::from_utf8_lossy(&msg)
    );
}
