//! One SPDY stream as `AsyncRead + AsyncWrite` over the session's shared
//! state: reads drain the stream's receive buffer (crediting the windows),
//! writes queue DATA frames within the flow-control limits, `shutdown`
//! half-closes with FIN, and dropping the handle closes or resets it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{Frame, RstStatus};
use super::headers::Headers;
use super::session::{FlowControl, SessionError, Shared, State, StreamState, reset_locked};

/// One SPDY stream: read the peer's DATA, write ours, `shutdown` half-closes.
pub struct Stream {
    id: u32,
    headers: Headers,
    shared: Arc<Shared>,
}

impl Stream {
    pub(super) fn new(id: u32, headers: Headers, shared: Arc<Shared>) -> Self {
        Stream {
            id,
            headers,
            shared,
        }
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The SYN_STREAM headers (the peer's for accepted streams, ours for opened ones).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Sends SYN_REPLY (done implicitly before the first write of an accepted stream).
    pub fn reply(&self, headers: Headers) {
        let mut st = self.shared.lock();
        if let Some(s) = st
            .streams
            .get_mut(&self.id)
            .filter(|s| s.incoming && !s.replied)
        {
            s.replied = true;
            st.queue.push_back(Frame::SynReply {
                stream_id: self.id,
                fin: false,
                headers,
            });
        }
        drop(st);
        self.shared.writer.notify_one();
    }

    /// Waits for the peer's SYN_REPLY to a stream we opened.
    pub async fn wait_reply(&self) -> Result<(), SessionError> {
        std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            let dead = st.dead.clone();
            let Some(s) = st.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(SessionError::Closed("stream is gone".into())));
            };
            if let Some(r) = s.reset {
                return Poll::Ready(Err(SessionError::Reset(self.id, r.0)));
            }
            if s.replied || s.incoming {
                return Poll::Ready(Ok(()));
            }
            if let Some(why) = dead {
                return Poll::Ready(Err(SessionError::Closed(why)));
            }
            s.reply_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Aborts the stream in both directions with RST_STREAM.
    pub fn reset(&self, status: RstStatus) {
        let mut st = self.shared.lock();
        if st.streams.get(&self.id).is_some_and(|s| s.reset.is_none()) {
            reset_locked(&mut st, self.id, status);
        }
        drop(st);
        self.shared.writer.notify_one();
    }
}

fn reply_if_needed(st: &mut State, id: u32) {
    if let Some(s) = st.streams.get_mut(&id).filter(|s| s.incoming && !s.replied) {
        s.replied = true;
        st.queue.push_back(Frame::SynReply {
            stream_id: id,
            fin: false,
            headers: Headers::new(),
        });
    }
}

fn closed_err(st: &State, s: Option<&StreamState>) -> Option<io::Error> {
    if let Some(r) = s.and_then(|s| s.reset) {
        return Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("stream reset ({})", r.0),
        ));
    }
    st.dead
        .as_ref()
        .map(|why| io::Error::new(io::ErrorKind::BrokenPipe, why.clone()))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &self.shared;
        let mut st = shared.lock();
        let window = shared.config.recv_window;
        let State { streams, queue, .. } = &mut *st;
        let Some(s) = streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if let Some(chunk) = s.recv.front_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            if chunk.is_empty() {
                s.recv.pop_front();
            }
            s.recv_len -= n;
            s.recv_unacked += n as u32;
            if s.recv_unacked >= window / 2 && !s.remote_fin && s.reset.is_none() {
                let delta = std::mem::take(&mut s.recv_unacked);
                queue.push_back(Frame::WindowUpdate {
                    stream_id: self.id,
                    delta,
                });
            }
            shared.credit_session(&mut st, n);
            drop(st);
            shared.writer.notify_one();
            shared.reader.notify_one();
            return Poll::Ready(Ok(()));
        }
        if s.remote_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = closed_err(&st, st.streams.get(&self.id)) {
            // A stream the peer reset, or a dead connection, without FIN: not a clean EOF.
            return Poll::Ready(Err(e));
        }
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.read_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let shared = &self.shared;
        let mut st = shared.lock();
        if let Some(e) = closed_err(&st, st.streams.get(&self.id)) {
            return Poll::Ready(Err(e));
        }
        let strict = shared.config.flow_control == FlowControl::Strict;
        let session_window = st.session_send_window;
        let queue_full = st.queued_data >= shared.config.max_queued;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream is gone",
            )));
        };
        if s.local_fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after half-close",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = buf.len().min(shared.config.max_data_frame);
        if strict {
            let window = s.send_window.min(session_window);
            if window <= 0 {
                s.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(window as usize);
        }
        if queue_full {
            st.queue_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        s.send_window -= n as i64;
        st.session_send_window -= n as i64;
        reply_if_needed(&mut st, self.id);
        st.queued_data += n;
        let data = Bytes::copy_from_slice(&buf[..n]);
        st.queue.push_back(Frame::Data {
            stream_id: self.id,
            fin: false,
            data,
        });
        drop(st);
        shared.writer.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if let Some(e) = closed_err(&st, st.streams.get(&self.id)) {
            return Poll::Ready(Err(e));
        }
        match st.streams.get_mut(&self.id) {
            Some(s) if !s.local_fin => s.local_fin = true,
            _ => return Poll::Ready(Ok(())),
        }
        reply_if_needed(&mut st, self.id);
        st.queue.push_back(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        });
        drop(st);
        self.shared.writer.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let Some(s) = st.streams.remove(&self.id) else {
            return;
        };
        if st.dead.is_none() && s.reset.is_none() {
            if !s.remote_fin {
                // Nobody will read what the peer still sends: tell it to stop.
                st.queue.push_back(Frame::RstStream {
                    stream_id: self.id,
                    status: RstStatus::CANCEL,
                });
            } else if !s.local_fin {
                if s.incoming && !s.replied {
                    st.queue.push_back(Frame::SynReply {
                        stream_id: self.id,
                        fin: true,
                        headers: Headers::new(),
                    });
                } else {
                    st.queue.push_back(Frame::Data {
                        stream_id: self.id,
                        fin: true,
                        data: Bytes::new(),
                    });
                }
            }
        }
        // Unread data still holds session window: give it back.
        let unread = s.recv_len;
        self.shared.credit_session(&mut st, unread);
        drop(st);
        self.shared.writer.notify_one();
        self.shared.reader.notify_one();
    }
}
