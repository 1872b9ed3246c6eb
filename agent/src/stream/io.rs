//! What an exec or attach handler gets, whatever the transport (SPDY or
//! WebSocket): the client's stdin, writers for stdout and stderr, terminal
//! resize events, and a [`Finisher`] that reports how the command ended.

use std::future::Future;
use std::io;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

use super::status::Outcome;

/// A boxed reader half.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed writer half.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
type FinishFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;
/// Resolves once the client's connection is gone.
pub type Closed = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which streams a request asked for (the CRI request's flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal size, as client-go's `TerminalSize` marshals it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client's side of one exec/attach.
pub struct Io {
    /// The client's stdin; EOF when the client closes it.
    pub stdin: Option<BoxRead>,
    /// Shut it down when the process's stdout ends.
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    /// Resize events, when the request has a TTY and the protocol carries them.
    pub resize: Option<mpsc::Receiver<TermSize>>,
    /// Resolves when the client hangs up (so a quiet process is not kept
    /// running for nobody).
    pub closed: Option<Closed>,
    pub finish: Finisher,
}

/// Reports the outcome on the error stream and ends the connection.
/// Call it after stdout and stderr are shut down, so no output is lost.
pub struct Finisher(Box<dyn FnOnce(Outcome) -> FinishFuture + Send>);

impl Finisher {
    pub(crate) fn new<F, Fut>(f: F) -> Self
    where
        F: FnOnce(Outcome) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        Finisher(Box::new(move |o| Box::pin(f(o))))
    }

    /// Writes the outcome and closes the connection.
    pub async fn finish(self, outcome: Outcome) -> io::Result<()> {
        (self.0)(outcome).await
    }
}

/// Reads a stream of concatenated JSON `TermSize` objects (the resize
/// stream) into a channel until EOF or a malformed object.
pub(crate) fn spawn_resize_reader<R>(mut rd: R) -> mpsc::Receiver<TermSize>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
            let mut used = 0;
            while let Some(item) = it.next() {
                match item {
                    Ok(size) => {
                        used = it.byte_offset();
                        if tx.send(size).await.is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_eof() => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed terminal resize event; ignoring the resize stream");
                        return;
                    }
                }
            }
            buf.drain(..used);
            if buf.len() > 4096 {
                tracing::warn!("terminal resize event over 4 KiB; ignoring the resize stream");
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn resize_events_split_across_reads_are_decoded_in_order() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut rx = spawn_resize_reader(r);
        w.write_all(br#"{"Width":80,"Height":24}{"Width":1"#)
            .await
            .expect("write");
        assert_eq!(
            rx.recv().await,
            Some(TermSize {
                width: 80,
                height: 24
            })
        );
        w.write_all(br#"20,"Height":40}"#).await.expect("write");
        assert_eq!(
            rx.recv().await,
            Some(TermSize {
                width: 120,
                height: 40
            })
        );
        w.write_all(b"not json").await.expect("write");
        assert_eq!(rx.recv().await, None, "a malformed event ends the stream");
    }
}
