//! Wires a client's [`Io`] to a husk-shim attach connection (frames of
//! [`husk_shim::Frame`]): output frames to stdout/stderr, stdin and resize
//! events to frames. Every copy awaits its writer, so a slow client slows
//! the reading of the socket and, through the shim, the process; nothing is
//! buffered beyond one frame each way.

use std::io;

use husk_shim::proto::{FRAME_HEADER, MAX_FRAME};
use husk_shim::{Frame, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::io::{BoxRead, BoxWrite, Closed, TermSize};

/// How a bridged session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The shim closed the connection after the last output (the process ended).
    ShimClosed,
    /// The client went away first.
    ClientGone,
}

/// The client's side, without the finisher (the caller reports the outcome).
pub struct Client {
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    pub resize: Option<mpsc::Receiver<TermSize>>,
    pub closed: Option<Closed>,
}

/// Copies between `client` and the shim connection `sock` until the shim
/// closes it (then stdout and stderr are shut down) or the client goes away.
/// With `close_stdin`, the client's stdin EOF becomes `CloseStdin`.
pub async fn run<S>(sock: S, client: Client, close_stdin: bool) -> End
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (rd, wr) = tokio::io::split(sock);
    let Client {
        stdin,
        mut stdout,
        mut stderr,
        resize,
        closed,
    } = client;
    let output = async {
        let r = copy_output(rd, &mut stdout, &mut stderr).await;
        for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
            let _ = w.shutdown().await;
        }
        r
    };
    let input = copy_input(wr, stdin, resize, close_stdin);
    let gone = async {
        match closed {
            Some(c) => c.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = output => match r {
            Ok(()) => End::ShimClosed,
            Err(e) => {
                tracing::debug!(error = %e, "stream client stopped taking output");
                End::ClientGone
            }
        },
        () = input => End::ClientGone,
        () = gone => End::ClientGone,
    }
}

/// Output frames to the client until EOF on the shim connection. An error
/// is the client's (a write failed) or a broken frame.
async fn copy_output<R: AsyncRead + Unpin>(
    mut rd: R,
    stdout: &mut Option<BoxWrite>,
    stderr: &mut Option<BoxWrite>,
) -> io::Result<()> {
    let mut head = [0u8; FRAME_HEADER];
    let mut buf = Vec::new();
    loop {
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            // The shim's end reset: it is gone, as at EOF.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::other(format!(
                "attach frame of {len} bytes from the shim"
            )));
        }
        buf.resize(len, 0);
        match rd.read_exact(&mut buf).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        // With a tty all output is stdout; without a stderr stream it is dropped.
        let w = match head[0] {
            x if x == Stream::Stdout as u8 => stdout.as_mut(),
            x if x == Stream::Stderr as u8 => stderr.as_mut(),
            _ => None,
        };
        if let Some(w) = w {
            w.write_all(&buf).await?;
        }
    }
}

/// Stdin and resizes to frames. Never returns while the client is there
/// and the shim takes frames: returns when writing to the shim fails.
async fn copy_input<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut stdin: Option<BoxRead>,
    mut resize: Option<mpsc::Receiver<TermSize>>,
    close_stdin: bool,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let frame = tokio::select! {
            r = read_some(&mut stdin, &mut buf) => match r {
                Some(n) if n > 0 => Frame::encode(Stream::Stdin, &buf[..n]),
                _ => {
                    // EOF (or a reset stdin stream): no more input.
                    stdin = None;
                    if !close_stdin {
                        continue;
                    }
                    Frame::encode(Stream::CloseStdin, &[])
                }
            },
            s = next_size(&mut resize) => match s {
                Some(s) => Frame::resize(s.height, s.width),
                None => {
                    resize = None;
                    continue;
                }
            },
        };
        if wr.write_all(&frame).await.is_err() {
            // The shim is gone; the output side sees EOF and ends the session.
            return std::future::pending().await;
        }
    }
}

async fn read_some(stdin: &mut Option<BoxRead>, buf: &mut [u8]) -> Option<usize> {
    match stdin {
        Some(r) => r.read(buf).await.ok(),
        None => std::future::pending().await,
    }
}

async fn next_size(resize: &mut Option<mpsc::Receiver<TermSize>>) -> Option<TermSize> {
    match resize {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_reach_the_right_writers_and_stdin_eof_closes() {
        let (ours, mut shim) = tokio::io::duplex(1024);
        let (out_w, mut out_r) = tokio::io::duplex(1024);
        let (err_w, mut err_r) = tokio::io::duplex(1024);
        let (mut in_w, in_r) = tokio::io::duplex(1024);
        let (rs_tx, rs_rx) = mpsc::channel(1);
        let client = Client {
            stdin: Some(Box::new(in_r)),
            stdout: Some(Box::new(out_w)),
            stderr: Some(Box::new(err_w)),
            resize: Some(rs_rx),
            closed: None,
        };
        let task = tokio::spawn(run(ours, client, true));
        in_w.write_all(b"typed").await.expect("stdin");
        drop(in_w);
        let want = [
            Frame::encode(Stream::Stdin, b"typed"),
            Frame::encode(Stream::CloseStdin, &[]),
        ]
        .concat();
        let mut got = vec![0u8; want.len()];
        shim.read_exact(&mut got).await.expect("stdin frames");
        assert_eq!(got, want);
        rs_tx
            .send(TermSize {
                width: 80,
                height: 24,
            })
            .await
            .expect("resize");
        let want = Frame::resize(24, 80);
        let mut got = vec![0u8; want.len()];
        shim.read_exact(&mut got).await.expect("resize frame");
        assert_eq!(got, want, "rows then cols");
        shim.write_all(&Frame::encode(Stream::Stdout, b"out"))
            .await
            .expect("write");
        shim.write_all(&Frame::encode(Stream::Stderr, b"err"))
            .await
            .expect("write");
        drop(shim);
        assert_eq!(task.await.expect("task"), End::ShimClosed);
        let (mut o, mut e) = (Vec::new(), Vec::new());
        out_r.read_to_end(&mut o).await.expect("stdout");
        err_r.read_to_end(&mut e).await.expect("stderr");
        assert_eq!((o.as_slice(), e.as_slice()), (&b"out"[..], &b"err"[..]));
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_ends_the_bridge() {
        let (ours, _shim) = tokio::io::duplex(1024);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = Client {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            closed: Some(Box::pin(async move {
                let _ = rx.await;
            })),
        };
        let task = tokio::spawn(run(ours, client, false));
        drop(tx);
        assert_eq!(task.await.expect("task"), End::ClientGone);
    }
}
