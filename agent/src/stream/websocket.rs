//! The WebSocket streaming protocols.
//!
//! Exec/attach (`v4.channel.k8s.io`, `v5.channel.k8s.io`): every binary
//! message starts with a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 error
//! (a `metav1.Status` JSON), 4 resize (`{"Width":..,"Height":..}`). v5 adds
//! channel 255: `[255, n]` means the client closed its channel `n` (stdin
//! EOF, which v4 cannot express).
//!
//! Port-forward (`v4.channel.k8s.io`): the ports come from the request's
//! `port` query parameters; port `i` uses channel `2i` for data and `2i+1`
//! for errors, and the first message on each channel is the port number,
//! little-endian u16. `SPDY/3.1+portforward.k8s.io` (kubectl 1.29+) instead
//! carries a whole SPDY session in binary messages: [`tunnel`] turns the
//! WebSocket back into a byte stream for [`super::spdy::Session`].

use std::future::Future;
use std::io;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::io::{BoxRead, BoxWrite, Finisher, Io, Options, TermSize};
use super::status::{Outcome, error_stream_bytes};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
const PIPE: usize = 64 * 1024;

/// The exec/attach channel protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

/// Bad WebSocket request parameters.
#[derive(Debug, thiserror::Error)]
pub enum WebSocketError {
    #[error("websocket subprotocol {0:?} is not a channel protocol (v4/v5.channel.k8s.io)")]
    Protocol(String),
    #[error("port-forward query: port {0:?} is not a port number (1-65535)")]
    BadPort(String),
    #[error("port-forward query names no port")]
    NoPort,
}

impl Version {
    /// The version of a negotiated subprotocol.
    pub fn from_protocol(p: &str) -> Result<Self, WebSocketError> {
        match p {
            "v5.channel.k8s.io" => Ok(Version::V5),
            "v4.channel.k8s.io" => Ok(Version::V4),
            other => Err(WebSocketError::Protocol(other.to_string())),
        }
    }
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// Sends everything `rd` yields as messages on `channel`; stops when the
/// WebSocket is gone (dropping `rd`, so the writer side sees a broken pipe).
async fn pump<R: AsyncRead + Unpin>(mut rd: R, channel: u8, out: &mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(framed(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Serves exec/attach over an upgraded WebSocket; returns the [`Io`] to wire
/// to the process.
pub fn exec<S>(ws: WebSocketStream<S>, version: Version, opts: Options) -> Io
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let sender = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let (stdout_w, stdout_r) = tokio::io::duplex(PIPE);
    let stderr_pipe = (opts.stderr && !opts.tty).then(|| tokio::io::duplex(PIPE));
    let (error_w, error_r) = tokio::io::duplex(PIPE);
    let (stderr_w, stderr_r) = match stderr_pipe {
        Some((w, r)) => (Some(w), Some(r)),
        None => (None, None),
    };
    let outputs = tokio::spawn(async move {
        let err_pump = async {
            if let Some(r) = stderr_r {
                pump(r, STDERR, &out_tx).await;
            }
        };
        tokio::join!(pump(stdout_r, STDOUT, &out_tx), err_pump);
        // The status goes last, after all output, then the close frame.
        pump(error_r, ERROR, &out_tx).await;
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = out_tx.send(Message::Close(Some(close))).await;
        drop(out_tx);
        let _ = sender.await;
    });

    let (stdin_w, stdin_r) = tokio::io::duplex(PIPE);
    let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(8);
    let want_stdin = opts.stdin;
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _gone = gone_tx;
        let mut stdin_w = want_stdin.then_some(stdin_w);
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(d) => d,
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(w) = stdin_w.as_mut() {
                        if w.write_all(payload).await.is_err() {
                            stdin_w = None;
                        }
                    }
                }
                RESIZE => match serde_json::from_slice::<TermSize>(payload) {
                    Ok(size) => {
                        let _ = resize_tx.try_send(size);
                    }
                    Err(e) => tracing::debug!(error = %e, "ignoring malformed resize message"),
                },
                CLOSE if version == Version::V5 && payload.first() == Some(&STDIN) => {
                    if let Some(mut w) = stdin_w.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => tracing::debug!(channel, "ignoring message on an unknown channel"),
            }
        }
        // The client went away or closed: stdin ends here.
    });

    let finish = Finisher::new(move |outcome: Outcome| async move {
        let mut error_w = error_w;
        error_w
            .write_all(&error_stream_bytes(true, &outcome))
            .await?;
        error_w.shutdown().await?;
        drop(error_w);
        outputs.await.map_err(io::Error::other)
    });
    Io {
        stdin: opts.stdin.then(|| Box::new(stdin_r) as BoxRead),
        stdout: opts.stdout.then(|| Box::new(stdout_w) as BoxWrite),
        stderr: stderr_w.map(|w| Box::new(w) as BoxWrite),
        resize: opts.tty.then_some(resize_rx),
        closed: Some(Box::pin(async move {
            let _ = gone_rx.await;
        })),
        finish,
    }
}

/// The `port` values of a port-forward query string (`port=80&port=8080`).
pub fn ports_from_query(query: &str) -> Result<Vec<u16>, WebSocketError> {
    let ports = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port")
        .map(|(_, v)| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| WebSocketError::BadPort(v.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ports.is_empty() {
        return Err(WebSocketError::NoPort);
    }
    Ok(ports)
}

/// Serves `v4.channel.k8s.io` port-forward: one connection per port for the
/// WebSocket's life. Returns when the client closes or every target has closed.
pub async fn port_forward<S, D, Fut, C>(ws: WebSocketStream<S>, ports: Vec<u16>, dial: D)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    D: Fn(u16) -> Fut,
    Fut: Future<Output = io::Result<C>>,
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let sender = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut inputs: Vec<Option<mpsc::Sender<Vec<u8>>>> = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let _ = out_tx.send(framed(ch, &port.to_le_bytes())).await;
        }
        let conn = match dial(port).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("error forwarding port {port}: {e}");
                let _ = out_tx.send(framed(err_ch, msg.as_bytes())).await;
                inputs.push(None);
                continue;
            }
        };
        let (rd, mut wr) = tokio::io::split(conn);
        let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(16);
        inputs.push(Some(in_tx));
        tokio::spawn(async move {
            while let Some(data) = in_rx.recv().await {
                if wr.write_all(&data).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let out = out_tx.clone();
        tasks.push(tokio::spawn(async move { pump(rd, data_ch, &out).await }));
    }
    let all_done = futures::future::join_all(tasks);
    tokio::pin!(all_done);
    loop {
        tokio::select! {
            _ = &mut all_done => break,
            msg = source.next() => {
                let data = match msg {
                    Some(Ok(Message::Binary(d))) => d,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                // Data arrives on even channels only; the rest is ignored as kubelet does.
                let target = (channel % 2 == 0).then(|| inputs.get(usize::from(channel / 2))).flatten().and_then(Option::as_ref);
                if let Some(tx) = target {
                    let _ = tx.send(payload.to_vec()).await;
                }
            }
        }
    }
    drop(inputs);
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = out_tx.send(Message::Close(Some(close))).await;
    drop(out_tx);
    let _ = sender.await;
}

/// Bridges `SPDY/3.1+portforward.k8s.io`: binary messages both ways become a
/// byte stream; run a SPDY server session over the returned end.
pub fn tunnel<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(d) if wr.write_all(&d).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_validated_by_name() {
        assert_eq!(
            ports_from_query("port=80&port=8080").expect("ports"),
            vec![80, 8080]
        );
        assert!(
            matches!(ports_from_query("port=http"), Err(WebSocketError::BadPort(p)) if p == "http")
        );
        assert!(matches!(
            ports_from_query("port=0"),
            Err(WebSocketError::BadPort(_))
        ));
        assert!(matches!(
            ports_from_query("x=1"),
            Err(WebSocketError::NoPort)
        ));
        assert!(Version::from_protocol("base64.channel.k8s.io").is_err());
    }
}
