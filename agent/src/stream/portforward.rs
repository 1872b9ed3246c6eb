//! Port forwarding over SPDY (`portforward.k8s.io`).
//!
//! For each connection the client opens a pair of streams sharing a
//! `requestID` header: `streamType: error` (the client half-closes it at
//! once) and `streamType: data`, both with a `port` header. The server dials
//! the port (inside the pod's network namespace; the caller's `dial` decides
//! how), copies data both ways and reports failures as text on the error
//! stream. Old clients send no `requestID`: then the error stream's id names
//! the pair and the data stream's id is that plus 2.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::spdy::{Headers, Incoming, RstStatus, Stream};

/// How long the second stream of a pair may take (kubelet's default).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);

/// Why one stream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error("stream {0} has no valid port header ({1:?})")]
    BadPort(u32, String),
    #[error("stream {0} has unknown streamType {1:?}")]
    UnknownStreamType(u32, String),
    #[error("request {0} opened its {1} stream twice")]
    Duplicate(String, &'static str),
}

struct Pair {
    port: u16,
    data: Option<Stream>,
    error: Option<Stream>,
    deadline: Instant,
}

/// Serves port-forward streams until the client closes the session.
/// `dial(port)` connects to the target; each pair runs in its own task.
pub async fn serve<D, Fut, C>(mut incoming: Incoming, dial: D, pair_timeout: Duration)
where
    D: Fn(u16) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = io::Result<C>> + Send + 'static,
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut pending: HashMap<String, Pair> = HashMap::new();
    loop {
        let next = pending.values().map(|p| p.deadline).min();
        let stream = tokio::select! {
            s = incoming.accept() => match s {
                Some(s) => s,
                None => break,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                expire(&mut pending).await;
                continue;
            }
        };
        stream.reply(Headers::new());
        match file(&mut pending, stream, pair_timeout) {
            Ok(Some(id)) => {
                if let Some(Pair {
                    port,
                    data: Some(data),
                    error: Some(error),
                    ..
                }) = pending.remove(&id)
                {
                    tokio::spawn(forward(port, data, error, dial.clone()));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "port-forward stream refused"),
        }
    }
}

/// Files a stream into its pair; returns the request id when the pair is complete.
fn file(
    pending: &mut HashMap<String, Pair>,
    s: Stream,
    timeout: Duration,
) -> Result<Option<String>, PortForwardError> {
    let h = s.headers();
    let kind = h.get("streamtype").unwrap_or("").to_string();
    let is_data = match kind.as_str() {
        "data" => true,
        "error" => false,
        _ => {
            s.reset(RstStatus::PROTOCOL_ERROR);
            return Err(PortForwardError::UnknownStreamType(s.id(), kind));
        }
    };
    let port_text = h.get("port").unwrap_or("").to_string();
    let Some(port) = port_text.parse::<u16>().ok().filter(|p| *p != 0) else {
        s.reset(RstStatus::PROTOCOL_ERROR);
        return Err(PortForwardError::BadPort(s.id(), port_text));
    };
    let id = match h.get("requestid") {
        Some(r) if !r.is_empty() => r.to_string(),
        _ if is_data => s.id().saturating_sub(2).to_string(),
        _ => s.id().to_string(),
    };
    let pair = pending.entry(id.clone()).or_insert_with(|| Pair {
        port,
        data: None,
        error: None,
        deadline: Instant::now() + timeout,
    });
    let (slot, name) = if is_data {
        (&mut pair.data, "data")
    } else {
        (&mut pair.error, "error")
    };
    if slot.is_some() {
        s.reset(RstStatus::PROTOCOL_ERROR);
        return Err(PortForwardError::Duplicate(id, name));
    }
    *slot = Some(s);
    Ok((pair.data.is_some() && pair.error.is_some()).then_some(id))
}

async fn expire(pending: &mut HashMap<String, Pair>) {
    let now = Instant::now();
    let late: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.deadline <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for id in late {
        let Some(pair) = pending.remove(&id) else {
            continue;
        };
        tracing::warn!(request = %id, "port-forward pair incomplete; timed out waiting for streams");
        if let Some(mut err) = pair.error {
            let msg = format!("timed out waiting for the data stream of request {id}");
            let _ = err.write_all(msg.as_bytes()).await;
            let _ = err.shutdown().await;
        }
    }
}

/// Read size of each direction of a forwarded connection.
const COPY_BUF: usize = 64 * 1024;

async fn forward<D, Fut, C>(port: u16, data: Stream, mut error: Stream, dial: D)
where
    D: Fn(u16) -> Fut,
    Fut: Future<Output = io::Result<C>>,
    C: AsyncRead + AsyncWrite + Send + Unpin,
{
    let conn = match dial(port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("error forwarding port {port}: {e}");
            let _ = error.write_all(msg.as_bytes()).await;
            let _ = error.shutdown().await;
            return;
        }
    };
    let (dr, mut dw) = tokio::io::split(data);
    let (cr, mut cw) = tokio::io::split(conn);
    // 64 KiB reads instead of io::copy's 8 KiB: a bulk download goes out
    // in full-size data frames (max_data_frame) rather than 8 KiB ones.
    let mut dr = BufReader::with_capacity(COPY_BUF, dr);
    let mut cr = BufReader::with_capacity(COPY_BUF, cr);
    let up = async {
        let r = tokio::io::copy_buf(&mut dr, &mut cw).await;
        let _ = cw.shutdown().await;
        r
    };
    let down = async {
        let r = tokio::io::copy_buf(&mut cr, &mut dw).await;
        let _ = dw.shutdown().await;
        r
    };
    let (up, down) = tokio::join!(up, down);
    if let Some(e) = down.err() {
        // The client going away mid-transfer is not worth a message; a failing target is.
        let msg = format!("error forwarding port {port}: {e}");
        let _ = error.write_all(msg.as_bytes()).await;
    } else if let Some(e) = up.err() {
        tracing::debug!(port, error = %e, "port-forward client side ended early");
    }
    let _ = error.shutdown().await;
}
