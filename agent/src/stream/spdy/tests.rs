//! Frame round trips, golden bytes and session behaviour over an in-memory pipe.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::frame::{Decoder, Encoder, Frame, GoAwayStatus, RstStatus, Setting};
use super::headers::Headers;
use super::session::{Config, FlowControl, Role, Session};

fn round_trip(frames: &[Frame]) -> Vec<Frame> {
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    let mut wire = BytesMut::new();
    for f in frames {
        enc.encode(f, &mut wire).expect("encode");
    }
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut wire).expect("decode") {
        out.push(f);
    }
    assert!(wire.is_empty(), "bytes left over");
    out
}

#[test]
fn every_frame_type_round_trips() {
    let h = Headers::new()
        .with("streamtype", "stdout")
        .with("port", "8080");
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            slot: 0,
            flags: 1,
            headers: h.clone(),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            headers: Headers::new(),
        },
        Frame::Headers {
            stream_id: 1,
            fin: true,
            headers: h.clone(),
        },
        Frame::RstStream {
            stream_id: 3,
            status: RstStatus::CANCEL,
        },
        Frame::Settings {
            clear: true,
            entries: vec![
                Setting {
                    flags: 1,
                    id: 7,
                    value: 1 << 20,
                },
                Setting {
                    flags: 0,
                    id: 4,
                    value: 100,
                },
            ],
        },
        Frame::Ping { id: 0xffff_fffe },
        Frame::GoAway {
            last_good_stream_id: 5,
            status: GoAwayStatus::INTERNAL_ERROR,
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 0x7fff_ffff,
        },
        Frame::Data {
            stream_id: 0x7fff_ffff,
            fin: true,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 2,
            fin: false,
            data: Bytes::new(),
        },
    ];
    assert_eq!(round_trip(&frames), frames);
}

#[test]
fn golden_bytes_follow_the_draft_layouts() {
    let mut enc = Encoder::new();
    let mut wire = BytesMut::new();
    // PING: control bit + version 3, type 6, flags 0, length 4, id.
    enc.encode(&Frame::Ping { id: 1 }, &mut wire).expect("ping");
    assert_eq!(
        &wire[..],
        &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]
    );
    wire.clear();
    // RST_STREAM stream 1 CANCEL.
    enc.encode(
        &Frame::RstStream {
            stream_id: 1,
            status: RstStatus::CANCEL,
        },
        &mut wire,
    )
    .expect("rst");
    assert_eq!(
        &wire[..],
        &[
            0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0, 5
        ]
    );
    wire.clear();
    // WINDOW_UPDATE stream 3 delta 0x10000.
    enc.encode(
        &Frame::WindowUpdate {
            stream_id: 3,
            delta: 0x10000,
        },
        &mut wire,
    )
    .expect("wu");
    assert_eq!(
        &wire[..],
        &[0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 3, 0, 1, 0, 0]
    );
    wire.clear();
    // DATA stream 5 with FIN: control bit clear, flags 0x01, length 2.
    enc.encode(
        &Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::from_static(b"hi"),
        },
        &mut wire,
    )
    .expect("data");
    assert_eq!(&wire[..], &[0, 0, 0, 5, 0x01, 0, 0, 2, b'h', b'i']);
    wire.clear();
    // GOAWAY last-good 7, status OK.
    enc.encode(
        &Frame::GoAway {
            last_good_stream_id: 7,
            status: GoAwayStatus::OK,
        },
        &mut wire,
    )
    .expect("goaway");
    assert_eq!(
        &wire[..],
        &[0x80, 0x03, 0x00, 0x07, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 0]
    );
    wire.clear();
    // SYN_STREAM: stream id, associated id, priority in the top 3 bits, slot, zlib block.
    let syn = Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 7,
        slot: 0,
        flags: 0,
        headers: Headers::new().with("streamtype", "error"),
    };
    enc.encode(&syn, &mut wire).expect("syn");
    assert_eq!(&wire[..4], &[0x80, 0x03, 0x00, 0x01]);
    assert_eq!(&wire[8..18], &[0, 0, 0, 1, 0, 0, 0, 0, 0xe0, 0]);
    // The block opens a zlib stream with a preset dictionary (FDICT) naming SPDY/3's.
    assert_eq!(wire[18], 0x78);
    assert_eq!(&wire[20..24], &super::headers::DICTIONARY_ID.to_be_bytes());
}

#[test]
fn partial_frames_wait_for_more_bytes_and_bad_ones_are_errors() {
    let mut enc = Encoder::new();
    let mut wire = BytesMut::new();
    enc.encode(&Frame::Ping { id: 9 }, &mut wire).expect("ping");
    let mut dec = Decoder::new();
    let mut part = BytesMut::from(&wire[..7]);
    assert!(dec.decode(&mut part).expect("partial").is_none());
    part.extend_from_slice(&wire[7..]);
    assert_eq!(
        dec.decode(&mut part).expect("whole"),
        Some(Frame::Ping { id: 9 })
    );

    let mut v2 = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
    assert!(dec.decode(&mut v2).is_err(), "SPDY/2 must be refused");
    let mut short = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1][..]);
    assert!(dec.decode(&mut short).is_err(), "RST_STREAM needs 8 bytes");
    let mut zero =
        BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1][..]);
    assert!(dec.decode(&mut zero).is_err(), "RST_STREAM of stream 0");
    let mut unknown = BytesMut::from(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 1, 0xaa][..]);
    assert_eq!(
        dec.decode(&mut unknown).expect("unknown"),
        Some(Frame::Unknown { frame_type: 10 })
    );
}

fn pair(config: Config) -> ((Session, super::Incoming), (Session, super::Incoming)) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        Session::new(a, Role::Client, config.clone()),
        Session::new(b, Role::Server, config),
    )
}

#[tokio::test]
async fn streams_carry_data_both_ways_and_half_close() {
    let ((client, _), (_server, mut incoming)) = pair(Config::default());
    let mut c = client
        .open(Headers::new().with("streamtype", "stdin"), false)
        .expect("open");
    let mut s = incoming.accept().await.expect("accept");
    assert_eq!(s.headers().get("streamType"), Some("stdin"));
    assert_eq!(s.id(), 1);
    s.reply(Headers::new());
    c.wait_reply().await.expect("reply");

    c.write_all(b"ping").await.expect("write");
    c.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"ping");
    // The other direction is still open after the client's FIN.
    s.write_all(b"pong").await.expect("write back");
    s.shutdown().await.expect("fin");
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.expect("read back");
    assert_eq!(back, b"pong");
    assert!(
        c.write_all(b"late").await.is_err(),
        "write after half-close"
    );
}

#[tokio::test]
async fn writer_blocks_on_an_exhausted_window_and_resumes_on_window_update() {
    let ((client, _), (_server, mut incoming)) = pair(Config::default());
    let mut c = client.open(Headers::new(), false).expect("open");
    let mut s = incoming.accept().await.expect("accept");
    // 64 KiB fill the window exactly; one more byte must wait.
    let block = vec![7u8; 64 * 1024];
    c.write_all(&block).await.expect("fill the window");
    let blocked = tokio::time::timeout(Duration::from_millis(200), c.write_all(b"x")).await;
    assert!(
        blocked.is_err(),
        "write past the window went through without WINDOW_UPDATE"
    );
    // Reading half the window makes the server send WINDOW_UPDATE; the writer goes on.
    let mut half = vec![0u8; 32 * 1024];
    s.read_exact(&mut half).await.expect("read half");
    tokio::time::timeout(Duration::from_secs(5), c.write_all(b"x"))
        .await
        .expect("resumed")
        .expect("write");
    let mut rest = vec![0u8; 32 * 1024 + 1];
    s.read_exact(&mut rest).await.expect("rest");
    assert_eq!(rest.last(), Some(&b'x'));
}

#[tokio::test]
async fn large_transfer_completes_in_both_modes() {
    for mode in [FlowControl::Strict, FlowControl::Lenient] {
        let config = Config {
            flow_control: mode,
            ..Config::default()
        };
        let ((client, _), (_server, mut incoming)) = pair(config);
        let mut c = client.open(Headers::new(), false).expect("open");
        let mut s = incoming.accept().await.expect("accept");
        let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let w = tokio::spawn(async move {
            c.write_all(&data).await.expect("write");
            c.shutdown().await.expect("fin");
            c
        });
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.expect("read");
        assert!(got == expected, "{mode:?}: data differs");
        drop(w.await.expect("writer"));
    }
}

#[tokio::test]
async fn lenient_reader_applies_back_pressure_instead_of_buffering() {
    let config = Config {
        flow_control: FlowControl::Lenient,
        max_buffered: 64 * 1024,
        ..Config::default()
    };
    let (a, b) = tokio::io::duplex(16 * 1024);
    let (client, _ci) = Session::new(a, Role::Client, config.clone());
    let (_server, mut incoming) = Session::new(b, Role::Server, config);
    let mut c = client.open(Headers::new(), false).expect("open");
    let _s = incoming.accept().await.expect("accept");
    // The server never reads: the client's writes must stall, not pile up.
    let res = tokio::time::timeout(Duration::from_millis(500), async {
        let chunk = vec![1u8; 64 * 1024];
        for _ in 0..64 {
            c.write_all(&chunk).await.expect("write");
        }
    })
    .await;
    assert!(res.is_err(), "4 MiB went into a peer that reads nothing");
}

#[tokio::test]
async fn ping_is_echoed_and_rst_reaches_the_peer() {
    let ((client, _), (server, mut incoming)) = pair(Config::default());
    client.ping().await.expect("client ping");
    server.ping().await.expect("server ping");

    let mut c = client.open(Headers::new(), false).expect("open");
    let s = incoming.accept().await.expect("accept");
    s.reset(RstStatus::CANCEL);
    let mut buf = [0u8; 1];
    let err = c.read(&mut buf).await.expect_err("read after RST");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn goaway_refuses_new_streams_and_close_ends_the_session() {
    let ((client, _), (server, mut incoming)) = pair(Config::default());
    let c1 = client.open(Headers::new(), false).expect("open");
    let _s1 = incoming.accept().await.expect("accept");
    server.close();
    // The client learns of GOAWAY, then the server's write side closes.
    let why = tokio::time::timeout(Duration::from_secs(5), client.closed())
        .await
        .expect("client sees the end");
    assert!(!why.is_empty());
    assert!(client.open(Headers::new(), false).is_err());
    drop(c1);
}

#[tokio::test]
async fn peer_stream_ids_must_grow_and_have_the_peer_parity() {
    // A raw client that opens stream 2 (a server id) and then stream 1 twice.
    let (a, b) = tokio::io::duplex(1 << 16);
    let (_server, mut incoming) = Session::new(b, Role::Server, Config::default());
    let (mut rd, mut wr) = tokio::io::split(a);
    let mut enc = Encoder::new();
    let mut wire = BytesMut::new();
    for id in [2u32, 1, 1] {
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: Headers::new(),
        };
        enc.encode(&syn, &mut wire).expect("syn");
    }
    wr.write_all(&wire).await.expect("send");
    let first = incoming.accept().await.expect("stream 1 accepted");
    assert_eq!(first.id(), 1);
    let mut dec = Decoder::new();
    let mut got = BytesMut::new();
    let mut resets = Vec::new();
    while resets.len() < 2 {
        rd.read_buf(&mut got).await.expect("read");
        while let Some(f) = dec.decode(&mut got).expect("decode") {
            if let Frame::RstStream { stream_id, status } = f {
                resets.push((stream_id, status));
            }
        }
    }
    assert_eq!(
        resets,
        vec![
            (2, RstStatus::PROTOCOL_ERROR),
            (1, RstStatus::PROTOCOL_ERROR)
        ]
    );
}

/// A transport that reports when the session drops it.
struct Tracked<T>(T, Option<tokio::sync::oneshot::Sender<()>>);

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        if let Some(tx) = self.1.take() {
            let _ = tx.send(());
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_closed_session_lets_go_of_a_peer_that_never_closes() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (tx, dropped) = tokio::sync::oneshot::channel();
    let (server, _incoming) = Session::new(Tracked(b, Some(tx)), Role::Server, Config::default());
    server.close();
    // `a` stays open and silent; the server must still drop its transport.
    let res = tokio::time::timeout(Duration::from_secs(5), dropped).await;
    assert!(res.is_ok(), "the server still holds the connection open");
    drop(a);
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused() {
    let config = Config {
        max_streams: 2,
        ..Config::default()
    };
    let ((client, _), (_server, mut incoming)) = pair(config);
    let a = client.open(Headers::new(), false).expect("open");
    let b = client.open(Headers::new(), false).expect("open");
    let c = client.open(Headers::new(), false).expect("open");
    let (_a, _b) = (incoming.accept().await, incoming.accept().await);
    let refused = c.wait_reply().await;
    assert!(
        matches!(refused, Err(super::SessionError::Reset(_, 3))),
        "third stream: {refused:?}"
    );
    drop((a, b));
}
