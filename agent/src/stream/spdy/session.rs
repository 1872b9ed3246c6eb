//! A SPDY/3.1 session over one byte stream (tokio): streams, half-close,
//! RST_STREAM, PING, GOAWAY and flow control.
//!
//! Two tasks own the transport: a reader that decodes frames and files them
//! into per-stream state, and a writer that drains one ordered frame queue.
//! [`Stream`] is an `AsyncRead + AsyncWrite` over that shared state.
//!
//! Flow control has two modes. [`FlowControl::Strict`] is SPDY/3.1: writers
//! stop at the peer's stream and session windows and go on when a
//! WINDOW_UPDATE arrives; a peer overrunning our window gets
//! FLOW_CONTROL_ERROR. [`FlowControl::Lenient`] is for the Kubernetes peers:
//! their SPDY library (spdystream) neither sends nor honours WINDOW_UPDATE,
//! so enforcing windows would stall every transfer past 64 KiB. There the
//! writer is bounded by the outgoing queue and TCP, and the reader stops
//! reading the socket while a stream holds more than `max_buffered` unread
//! bytes: the same back-pressure spdystream applies, and memory stays bounded
//! either way. WINDOW_UPDATEs are sent in both modes (spdystream ignores them).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};

use super::frame::{
    Decoder, Encoder, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, FrameError, GoAwayStatus, RstStatus,
    SETTINGS_INITIAL_WINDOW_SIZE,
};
use super::headers::Headers;
pub use super::stream::Stream;

/// The initial stream and session window of SPDY/3.1.
pub const DEFAULT_WINDOW: u32 = 64 * 1024;
const MAX_WINDOW: i64 = 0x7fff_ffff;

/// Which end of the connection this session is (decides stream and ping id parity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Flow-control mode; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    Strict,
    Lenient,
}

/// Session parameters.
#[derive(Debug, Clone)]
pub struct Config {
    pub flow_control: FlowControl,
    /// Our receive window per stream and for the session.
    pub recv_window: u32,
    /// Lenient mode: unread bytes per stream above which the reader pauses.
    pub max_buffered: usize,
    /// Outgoing DATA bytes queued before writers wait.
    pub max_queued: usize,
    /// The largest DATA frame written.
    pub max_data_frame: usize,
    /// Open streams the peer may have at once; more are refused (REFUSED_STREAM).
    pub max_streams: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::Strict,
            recv_window: DEFAULT_WINDOW,
            max_buffered: 256 * 1024,
            max_queued: 256 * 1024,
            max_data_frame: 32 * 1024,
            max_streams: 1000,
        }
    }
}

impl Config {
    /// The configuration for Kubernetes streaming peers (spdystream).
    pub fn kubernetes() -> Self {
        Self {
            flow_control: FlowControl::Lenient,
            ..Self::default()
        }
    }
}

/// Session-level errors.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("SPDY connection closed: {0}")]
    Closed(String),
    #[error("SPDY session is going away; no new streams")]
    GoingAway,
    #[error("SPDY stream ids are exhausted")]
    IdsExhausted,
    #[error("SPDY stream {0} was reset with status {1}")]
    Reset(u32, u32),
}

/// A handle to a running session; clones share it.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// Streams the peer opens, in order.
pub struct Incoming {
    rx: mpsc::UnboundedReceiver<Stream>,
}

impl Incoming {
    /// The next stream the peer opened; `None` once the session is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) role: Role,
    pub(super) config: Config,
    pub(super) writer: Notify,
    pub(super) reader: Notify,
    pub(super) dead_notify: Notify,
}

#[derive(Default)]
pub(super) struct StreamState {
    pub(super) incoming: bool,
    pub(super) replied: bool,
    pub(super) recv: VecDeque<Bytes>,
    pub(super) recv_len: usize,
    pub(super) recv_unacked: u32,
    pub(super) remote_fin: bool,
    pub(super) local_fin: bool,
    pub(super) reset: Option<RstStatus>,
    pub(super) send_window: i64,
    pub(super) read_waker: Option<Waker>,
    pub(super) write_waker: Option<Waker>,
    pub(super) reply_waker: Option<Waker>,
}

impl StreamState {
    pub(super) fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.reply_waker.take(),
        ] {
            w.into_iter().for_each(Waker::wake);
        }
    }
}

pub(super) struct State {
    pub(super) queue: VecDeque<Frame>,
    pub(super) queued_data: usize,
    pub(super) queue_waiters: Vec<Waker>,
    pub(super) streams: HashMap<u32, StreamState>,
    pub(super) next_id: u32,
    pub(super) last_remote_id: u32,
    pub(super) session_send_window: i64,
    pub(super) session_recv_pending: i64,
    pub(super) session_recv_unacked: u32,
    pub(super) peer_initial_window: i64,
    pub(super) goaway_sent: bool,
    pub(super) goaway_received: bool,
    pub(super) closing: bool,
    pub(super) dead: Option<String>,
    pub(super) pings: HashMap<u32, oneshot::Sender<()>>,
    pub(super) next_ping: u32,
    pub(super) accept_tx: Option<mpsc::UnboundedSender<Stream>>,
}

impl Session {
    /// Starts a session over `io`; spawns its reader and writer tasks.
    pub fn new<T>(io: T, role: Role, config: Config) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let first = if role == Role::Client { 1 } else { 2 };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_data: 0,
                queue_waiters: Vec::new(),
                streams: HashMap::new(),
                next_id: first,
                last_remote_id: 0,
                session_send_window: DEFAULT_WINDOW.into(),
                session_recv_pending: 0,
                session_recv_unacked: 0,
                peer_initial_window: DEFAULT_WINDOW.into(),
                goaway_sent: false,
                goaway_received: false,
                closing: false,
                dead: None,
                pings: HashMap::new(),
                next_ping: first,
                accept_tx: Some(tx),
            }),
            role,
            config,
            writer: Notify::new(),
            reader: Notify::new(),
            dead_notify: Notify::new(),
        });
        if shared.config.recv_window != DEFAULT_WINDOW {
            let window = shared.config.recv_window;
            let mut st = shared.lock();
            st.queue.push_back(Frame::Settings {
                clear: false,
                entries: vec![super::frame::Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: window,
                }],
            });
            // The session window is not covered by SETTINGS: widen it explicitly.
            if window > DEFAULT_WINDOW {
                st.queue.push_back(Frame::WindowUpdate {
                    stream_id: 0,
                    delta: window - DEFAULT_WINDOW,
                });
            }
        }
        let (rd, wr) = tokio::io::split(io);
        tokio::spawn(read_loop(shared.clone(), rd));
        tokio::spawn(write_loop(shared.clone(), wr));
        (Session { shared }, Incoming { rx })
    }

    /// Opens a stream with `headers` (SYN_STREAM); `fin` opens it half-closed.
    pub fn open(&self, headers: Headers, fin: bool) -> Result<Stream, SessionError> {
        let mut st = self.shared.lock();
        if let Some(why) = &st.dead {
            return Err(SessionError::Closed(why.clone()));
        }
        if st.goaway_sent || st.goaway_received || st.closing {
            return Err(SessionError::GoingAway);
        }
        let id = st.next_id;
        if i64::from(id) > MAX_WINDOW {
            return Err(SessionError::IdsExhausted);
        }
        st.next_id += 2;
        let send_window = st.peer_initial_window;
        st.streams.insert(
            id,
            StreamState {
                local_fin: fin,
                send_window,
                ..Default::default()
            },
        );
        st.queue.push_back(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: if fin { FLAG_FIN } else { 0 },
            headers: headers.clone(),
        });
        drop(st);
        self.shared.writer.notify_one();
        Ok(Stream::new(id, headers, self.shared.clone()))
    }

    /// Sends a PING and waits for its echo.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.shared.lock();
            if let Some(why) = &st.dead {
                return Err(SessionError::Closed(why.clone()));
            }
            let id = st.next_ping;
            st.next_ping = st.next_ping.wrapping_add(2);
            st.pings.insert(id, tx);
            st.queue.push_back(Frame::Ping { id });
            id
        };
        self.shared.writer.notify_one();
        let start = Instant::now();
        rx.await
            .map_err(|_| SessionError::Closed(format!("no echo for ping {id}")))?;
        Ok(start.elapsed())
    }

    /// Sends GOAWAY: the peer may open no more streams; open ones go on.
    pub fn goaway(&self, status: GoAwayStatus) {
        let mut st = self.shared.lock();
        if !st.goaway_sent && st.dead.is_none() {
            st.goaway_sent = true;
            let last = st.last_remote_id;
            st.queue.push_back(Frame::GoAway {
                last_good_stream_id: last,
                status,
            });
        }
        drop(st);
        self.shared.writer.notify_one();
    }

    /// GOAWAY, then the writer drains its queue and shuts the transport's write side.
    pub fn close(&self) {
        self.goaway(GoAwayStatus::OK);
        self.shared.lock().closing = true;
        self.shared.writer.notify_one();
    }

    /// Waits until the connection is gone (peer closed, error, or our close finished).
    pub async fn closed(&self) -> String {
        loop {
            let notified = self.shared.dead_notify.notified();
            if let Some(why) = &self.shared.lock().dead {
                return why.clone();
            }
            notified.await;
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; go on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill(&self, why: String) {
        let mut st = self.lock();
        if st.dead.is_none() {
            tracing::debug!(reason = %why, "SPDY session ended");
            st.dead = Some(why);
        }
        st.accept_tx = None;
        st.pings.clear();
        st.streams.values_mut().for_each(StreamState::wake_all);
        st.queue_waiters.drain(..).for_each(Waker::wake);
        drop(st);
        self.writer.notify_one();
        self.reader.notify_one();
        self.dead_notify.notify_waiters();
    }

    /// Credits `n` consumed bytes to the session window (and sends WINDOW_UPDATE when due).
    pub(super) fn credit_session(&self, st: &mut State, n: usize) {
        st.session_recv_unacked += n as u32;
        if st.session_recv_unacked >= self.config.recv_window / 2 {
            let delta = std::mem::take(&mut st.session_recv_unacked);
            st.session_recv_pending -= i64::from(delta);
            st.queue.push_back(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    fn is_remote_id(&self, id: u32) -> bool {
        // Clients open odd streams, servers even ones.
        (id % 2 == 1) == (self.role == Role::Server)
    }
}

async fn read_loop<R: AsyncRead>(shared: Arc<Shared>, rd: R) {
    let why = match read_frames(&shared, rd).await {
        Ok(()) => "peer closed the connection".to_string(),
        Err(e) => e,
    };
    shared.kill(why);
}

async fn read_frames<R: AsyncRead>(shared: &Arc<Shared>, rd: R) -> Result<(), String> {
    tokio::pin!(rd);
    let mut dec = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Some(id) = handle_frame(shared, frame)? {
                        wait_for_room(shared, id).await;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(protocol_error(shared, e)),
            }
        }
        // Registered before the check, so a kill in between is not missed.
        let dead = shared.dead_notify.notified();
        tokio::pin!(dead);
        dead.as_mut().enable();
        if shared.lock().dead.is_some() {
            return Ok(());
        }
        let read = tokio::select! {
            r = rd.read_buf(&mut buf) => r,
            // Our side is done (close finished, or the writer failed): let the
            // transport go even if the peer never closes its side.
            _ = &mut dead => return Ok(()),
        };
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn protocol_error(shared: &Shared, e: FrameError) -> String {
    let mut st = shared.lock();
    let last = st.last_remote_id;
    st.queue.push_back(Frame::GoAway {
        last_good_stream_id: last,
        status: GoAwayStatus::PROTOCOL_ERROR,
    });
    st.goaway_sent = true;
    st.closing = true;
    drop(st);
    shared.writer.notify_one();
    let mut msg = format!("protocol error: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// Files one frame; returns a stream id when the reader must wait for that
/// stream's reader to drain (lenient back-pressure).
fn handle_frame(shared: &Arc<Shared>, frame: Frame) -> Result<Option<u32>, String> {
    let mut st = shared.lock();
    match frame {
        Frame::SynStream {
            stream_id: id,
            flags,
            headers,
            ..
        } => {
            if !shared.is_remote_id(id) || id <= st.last_remote_id {
                st.queue.push_back(Frame::RstStream {
                    stream_id: id,
                    status: RstStatus::PROTOCOL_ERROR,
                });
            } else {
                st.last_remote_id = id;
                let full = st.streams.len() >= shared.config.max_streams;
                let accept = st
                    .accept_tx
                    .clone()
                    .filter(|_| !st.goaway_sent && !st.closing && !full);
                match accept {
                    None => st.queue.push_back(Frame::RstStream {
                        stream_id: id,
                        status: RstStatus::REFUSED_STREAM,
                    }),
                    Some(tx) => {
                        let send_window = st.peer_initial_window;
                        st.streams.insert(
                            id,
                            StreamState {
                                incoming: true,
                                remote_fin: flags & FLAG_FIN != 0,
                                local_fin: flags & FLAG_UNIDIRECTIONAL != 0,
                                send_window,
                                ..Default::default()
                            },
                        );
                        // Sent outside the lock: a refused stream's Drop takes it.
                        drop(st);
                        let _ = tx.send(Stream::new(id, headers, shared.clone()));
                        st = shared.lock();
                    }
                }
            }
        }
        Frame::SynReply { stream_id, fin, .. } => {
            let mut in_use = false;
            if let Some(s) = st.streams.get_mut(&stream_id).filter(|s| !s.incoming) {
                in_use = s.replied;
                s.replied = true;
                s.remote_fin |= fin;
                s.wake_all();
            }
            if in_use {
                st.queue.push_back(Frame::RstStream {
                    stream_id,
                    status: RstStatus::STREAM_IN_USE,
                });
            }
        }
        Frame::RstStream { stream_id, status } => {
            if let Some(s) = st.streams.get_mut(&stream_id) {
                s.reset = Some(status);
                s.wake_all();
            }
        }
        Frame::Settings { entries, .. } => {
            for e in entries
                .iter()
                .filter(|e| e.id == SETTINGS_INITIAL_WINDOW_SIZE)
            {
                let delta = i64::from(e.value) - st.peer_initial_window;
                st.peer_initial_window = i64::from(e.value);
                for s in st.streams.values_mut() {
                    s.send_window += delta;
                    s.write_waker.take().into_iter().for_each(Waker::wake);
                }
            }
        }
        Frame::Ping { id } => {
            if shared.is_remote_id(id) {
                st.queue.push_back(Frame::Ping { id });
            } else if let Some(tx) = st.pings.remove(&id) {
                let _ = tx.send(());
            }
        }
        Frame::GoAway {
            last_good_stream_id,
            ..
        } => {
            st.goaway_received = true;
            for (id, s) in st.streams.iter_mut() {
                if !shared.is_remote_id(*id) && *id > last_good_stream_id {
                    s.reset = Some(RstStatus::REFUSED_STREAM);
                    s.wake_all();
                }
            }
        }
        Frame::Headers { stream_id, fin, .. } => {
            if let Some(s) = st.streams.get_mut(&stream_id) {
                s.remote_fin |= fin;
                s.wake_all();
            }
        }
        Frame::WindowUpdate {
            stream_id: 0,
            delta,
        } => {
            st.session_send_window += i64::from(delta);
            st.streams
                .values_mut()
                .for_each(|s| s.write_waker.take().into_iter().for_each(Waker::wake));
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut overflow = false;
            if let Some(s) = st.streams.get_mut(&stream_id) {
                s.send_window += i64::from(delta);
                overflow = s.send_window > MAX_WINDOW;
                s.write_waker.take().into_iter().for_each(Waker::wake);
            }
            if overflow {
                reset_locked(&mut st, stream_id, RstStatus::FLOW_CONTROL_ERROR);
            }
        }
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let len = data.len();
            st.session_recv_pending += len as i64;
            let strict = shared.config.flow_control == FlowControl::Strict;
            if strict && st.session_recv_pending > i64::from(shared.config.recv_window) {
                drop(st);
                return Err(protocol_error_flow(shared));
            }
            let window = shared.config.recv_window as usize;
            let verdict = match st.streams.get_mut(&stream_id) {
                None => Verdict::Reset(RstStatus::INVALID_STREAM),
                Some(s) if s.reset.is_some() => Verdict::Discard,
                Some(s) if s.remote_fin => Verdict::Reset(RstStatus::STREAM_ALREADY_CLOSED),
                Some(s) if strict && s.recv_len + s.recv_unacked as usize + len > window => {
                    Verdict::Reset(RstStatus::FLOW_CONTROL_ERROR)
                }
                Some(s) => {
                    if len > 0 {
                        s.recv.push_back(data);
                        s.recv_len += len;
                    }
                    s.remote_fin |= fin;
                    s.read_waker.take().into_iter().for_each(Waker::wake);
                    Verdict::Keep
                }
            };
            match verdict {
                Verdict::Keep if !strict => {
                    drop(st);
                    shared.writer.notify_one();
                    return Ok(Some(stream_id));
                }
                Verdict::Keep => {}
                Verdict::Discard | Verdict::Reset(_) => {
                    // Discarded data still counts against the session window: give it back.
                    shared.credit_session(&mut st, len);
                    // A stream we dropped already got its RST; one never seen gets INVALID_STREAM.
                    let known = st.streams.contains_key(&stream_id);
                    let seen = if shared.is_remote_id(stream_id) {
                        stream_id <= st.last_remote_id
                    } else {
                        stream_id < st.next_id
                    };
                    let closed_by_us = !known && seen;
                    if let Verdict::Reset(status) = verdict.filter_closed(closed_by_us) {
                        reset_locked(&mut st, stream_id, status);
                    }
                }
            }
        }
        Frame::Unknown { frame_type } => {
            tracing::debug!(frame_type, "ignoring unknown SPDY control frame");
        }
    }
    drop(st);
    shared.writer.notify_one();
    Ok(None)
}

/// What happens to an arriving DATA frame.
#[derive(Clone, Copy)]
enum Verdict {
    Keep,
    Discard,
    Reset(RstStatus),
}

impl Verdict {
    /// Frames for a stream that is already closed here are dropped quietly:
    /// the peer may have sent them before it saw our RST or FIN.
    fn filter_closed(self, closed_by_us: bool) -> Self {
        if closed_by_us { Verdict::Discard } else { self }
    }
}

fn protocol_error_flow(shared: &Shared) -> String {
    let mut st = shared.lock();
    let last = st.last_remote_id;
    st.queue.push_back(Frame::GoAway {
        last_good_stream_id: last,
        status: GoAwayStatus::PROTOCOL_ERROR,
    });
    st.goaway_sent = true;
    st.closing = true;
    drop(st);
    shared.writer.notify_one();
    "peer overran the session flow-control window".to_string()
}

/// Lenient mode back-pressure: stop reading while the stream holds too much.
async fn wait_for_room(shared: &Shared, id: u32) {
    loop {
        let notified = shared.reader.notified();
        let full = {
            let st = shared.lock();
            st.dead.is_none()
                && st
                    .streams
                    .get(&id)
                    .is_some_and(|s| s.recv_len > shared.config.max_buffered && s.reset.is_none())
        };
        if !full {
            return;
        }
        notified.await;
    }
}

pub(super) fn reset_locked(st: &mut State, id: u32, status: RstStatus) {
    if let Some(s) = st.streams.get_mut(&id) {
        s.reset = Some(status);
        s.wake_all();
    }
    st.queue.push_back(Frame::RstStream {
        stream_id: id,
        status,
    });
}

async fn write_loop<W: AsyncWrite>(shared: Arc<Shared>, wr: W) {
    tokio::pin!(wr);
    let mut enc = Encoder::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let why = loop {
        let (frames, finished) = {
            let mut st = shared.lock();
            let mut frames = Vec::new();
            let mut bytes = 0;
            while bytes < 256 * 1024 {
                let Some(f) = st.queue.pop_front() else { break };
                if let Frame::Data { data, .. } = &f {
                    bytes += data.len();
                    st.queued_data -= data.len();
                }
                frames.push(f);
            }
            st.queue_waiters.drain(..).for_each(Waker::wake);
            let finished = st.dead.is_some() || (st.closing && st.queue.is_empty());
            (frames, finished)
        };
        if frames.is_empty() {
            if finished {
                let _ = wr.shutdown().await;
                break "session closed".to_string();
            }
            shared.writer.notified().await;
            continue;
        }
        out.clear();
        if let Some(e) = frames.iter().find_map(|f| enc.encode(f, &mut out).err()) {
            break format!("encode: {e}");
        }
        if let Err(e) = async {
            wr.write_all(&out).await?;
            wr.flush().await
        }
        .await
        {
            break format!("write: {e}");
        }
    };
    shared.kill(why);
}
