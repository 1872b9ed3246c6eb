//! Exec and attach over SPDY: the remote command protocol v2, v3 and v4.
//!
//! After the upgrade the client opens one stream per channel, each with a
//! `streamType` header (`error`, `stdin`, `stdout`, `stderr`, `resize`); the
//! server replies to each and waits until every stream the request implies
//! has arrived (stderr is not opened with a TTY; resize only with a TTY from
//! v3 on). The error stream ends the exchange: v4 writes a `metav1.Status`,
//! v2/v3 a text message; then the server closes the connection.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::io::{Finisher, Io, Options, spawn_resize_reader};
use super::spdy::{Headers, Incoming, Session, Stream};
use super::status::{Outcome, error_stream_bytes};

/// How long the client gets to open its streams (kubelet's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The negotiated protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V2,
    V3,
    V4,
}

impl Version {
    /// The version for a negotiated subprotocol.
    pub fn from_protocol(protocol: Option<&str>) -> Result<Self, RemoteCommandError> {
        match protocol {
            Some("v4.channel.k8s.io") => Ok(Version::V4),
            Some("v3.channel.k8s.io") => Ok(Version::V3),
            Some("v2.channel.k8s.io") => Ok(Version::V2),
            other => Err(RemoteCommandError::Protocol(
                other.unwrap_or("").to_string(),
            )),
        }
    }
}

/// Why the streams of an exec/attach could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCommandError {
    #[error("remote command subprotocol {0:?} is not supported (v2-v4.channel.k8s.io are)")]
    Protocol(String),
    #[error("timed out after {0:?} waiting for the client's streams")]
    Timeout(Duration),
    #[error("stream has unknown streamType {0:?}")]
    UnknownStreamType(String),
    #[error("client opened the {0} stream twice")]
    Duplicate(&'static str),
    #[error("connection closed before the client opened its streams")]
    Closed,
}

#[derive(Default)]
struct Slots {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Slots {
    fn complete(&self, opts: &Options, version: Version) -> bool {
        self.error.is_some()
            && (!opts.stdin || self.stdin.is_some())
            && (!opts.stdout || self.stdout.is_some())
            && (!opts.stderr || opts.tty || self.stderr.is_some())
            && (!opts.tty || version < Version::V3 || self.resize.is_some())
    }

    fn file(&mut self, s: Stream) -> Result<(), RemoteCommandError> {
        let kind = s.headers().get("streamtype").unwrap_or("").to_string();
        let (slot, name) = match kind.as_str() {
            "error" => (&mut self.error, "error"),
            "stdin" => (&mut self.stdin, "stdin"),
            "stdout" => (&mut self.stdout, "stdout"),
            "stderr" => (&mut self.stderr, "stderr"),
            "resize" => (&mut self.resize, "resize"),
            _ => return Err(RemoteCommandError::UnknownStreamType(kind)),
        };
        if slot.is_some() {
            return Err(RemoteCommandError::Duplicate(name));
        }
        *slot = Some(s);
        Ok(())
    }
}

/// Waits for the client's streams and returns them as [`Io`]. On error the
/// message goes to the client's error stream (when it has one) and the
/// session is closed.
pub async fn accept(
    session: Session,
    mut incoming: Incoming,
    version: Version,
    opts: Options,
    timeout: Duration,
) -> Result<Io, RemoteCommandError> {
    let mut slots = Slots::default();
    let gather = async {
        while !slots.complete(&opts, version) {
            let s = incoming.accept().await.ok_or(RemoteCommandError::Closed)?;
            s.reply(Headers::new());
            slots.file(s)?;
        }
        Ok(())
    };
    let res = match tokio::time::timeout(timeout, gather).await {
        Ok(r) => r,
        Err(_) => Err(RemoteCommandError::Timeout(timeout)),
    };
    if let Err(e) = res {
        if let Some(mut err) = slots.error.take() {
            let msg = error_stream_bytes(version == Version::V4, &Outcome::Error(e.to_string()));
            let _ = err.write_all(&msg).await;
            let _ = err.shutdown().await;
        }
        session.close();
        return Err(e);
    }
    let Some(error) = slots.error else {
        return Err(RemoteCommandError::Closed);
    };
    let json = version == Version::V4;
    let resize = if opts.tty {
        slots.resize.map(spawn_resize_reader)
    } else {
        None
    };
    let boxed_w = |s: Option<Stream>| s.map(|s| Box::new(s) as super::io::BoxWrite);
    // Streams the request did not ask for are dropped (the client gets RST).
    let stdin = slots
        .stdin
        .filter(|_| opts.stdin)
        .map(|s| Box::new(s) as super::io::BoxRead);
    let stdout = boxed_w(slots.stdout.filter(|_| opts.stdout));
    let stderr = boxed_w(slots.stderr.filter(|_| opts.stderr && !opts.tty));
    let watch = session.clone();
    let closed: super::io::Closed = Box::pin(async move {
        watch.closed().await;
    });
    let finish = Finisher::new(move |outcome: Outcome| async move {
        let mut error = error;
        let bytes = error_stream_bytes(json, &outcome);
        let res = async {
            if !bytes.is_empty() {
                error.write_all(&bytes).await?;
            }
            error.shutdown().await
        }
        .await;
        drop(error);
        session.close();
        res
    });
    Ok(Io {
        stdin,
        stdout,
        stderr,
        resize,
        closed: Some(closed),
        finish,
    })
}
