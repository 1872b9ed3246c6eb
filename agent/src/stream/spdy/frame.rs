//! SPDY/3.1 frames and their codec (draft 3.1, section 2.2 and 2.6).
//!
//! Control frames: `1 | version(15) | type(16) | flags(8) | length(24) | payload`.
//! Data frames:    `0 | stream-id(31) | flags(8) | length(24) | data`.
//! The codec owns both header-compression contexts, so one codec must see
//! every frame of its direction, in order.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::headers::{HeaderDecoder, HeaderEncoder, HeaderError, Headers};

/// The protocol version carried by every control frame.
pub const VERSION: u16 = 3;
/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;
/// The largest payload the 24-bit length field can carry.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// SETTINGS id of SETTINGS_INITIAL_WINDOW_SIZE.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// SETTINGS id of SETTINGS_MAX_CONCURRENT_STREAMS.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u32 = 4;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (section 2.6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstStatus(pub u32);

impl RstStatus {
    pub const PROTOCOL_ERROR: Self = Self(1);
    pub const INVALID_STREAM: Self = Self(2);
    pub const REFUSED_STREAM: Self = Self(3);
    pub const UNSUPPORTED_VERSION: Self = Self(4);
    pub const CANCEL: Self = Self(5);
    pub const INTERNAL_ERROR: Self = Self(6);
    pub const FLOW_CONTROL_ERROR: Self = Self(7);
    pub const STREAM_IN_USE: Self = Self(8);
    pub const STREAM_ALREADY_CLOSED: Self = Self(9);
    pub const FRAME_TOO_LARGE: Self = Self(11);
}

/// GOAWAY status codes (section 2.6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAwayStatus(pub u32);

impl GoAwayStatus {
    pub const OK: Self = Self(0);
    pub const PROTOCOL_ERROR: Self = Self(1);
    pub const INTERNAL_ERROR: Self = Self(2);
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: RstStatus,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: GoAwayStatus,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame type this implementation does not know; the spec
    /// says to ignore it (e.g. CREDENTIAL, type 10).
    Unknown {
        frame_type: u16,
    },
}

/// Framing errors: each is a session-level PROTOCOL_ERROR.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("control frame has version {0}, only SPDY/3 is spoken")]
    UnsupportedVersion(u16),
    #[error("{kind} frame has a payload of {len} bytes, expected {expected}")]
    BadLength {
        kind: &'static str,
        len: usize,
        expected: String,
    },
    #[error("{kind} frame names stream 0")]
    StreamZero { kind: &'static str },
    #[error("frame payload of {0} bytes exceeds the 24-bit length field")]
    TooLarge(usize),
    #[error("header block of {kind} frame")]
    Headers {
        kind: &'static str,
        #[source]
        source: HeaderError,
    },
}

/// Encodes our direction's frames (owns its header-compression context).
#[derive(Default)]
pub struct Encoder {
    enc: HeaderEncoder,
}

/// Decodes the peer's frames (owns its header-decompression context).
#[derive(Default)]
pub struct Decoder {
    dec: HeaderDecoder,
}

impl Encoder {
    /// An encoder with a fresh compression context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one encoded frame to `dst`.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let mut p: Vec<u8> = Vec::new();
        let (ty, flags) = match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                check_len(data.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(((*fin as u32) << 24) | data.len() as u32);
                dst.put_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 0x7) << 5);
                p.put_u8(*slot);
                self.encode_headers("SYN_STREAM", headers, &mut p)?;
                (TYPE_SYN_STREAM, *flags)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                self.encode_headers("SYN_REPLY", headers, &mut p)?;
                (TYPE_SYN_REPLY, fin_flag(*fin))
            }
            Frame::RstStream { stream_id, status } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(status.0);
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings { clear, entries } => {
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32(((e.flags as u32) << 24) | (e.id & 0x00ff_ffff));
                    p.put_u32(e.value);
                }
                (TYPE_SETTINGS, if *clear { FLAG_CLEAR_SETTINGS } else { 0 })
            }
            Frame::Ping { id } => {
                p.put_u32(*id);
                (TYPE_PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                p.put_u32(last_good_stream_id & 0x7fff_ffff);
                p.put_u32(status.0);
                (TYPE_GOAWAY, 0)
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                self.encode_headers("HEADERS", headers, &mut p)?;
                (TYPE_HEADERS, fin_flag(*fin))
            }
            Frame::WindowUpdate { stream_id, delta } => {
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(delta & 0x7fff_ffff);
                (TYPE_WINDOW_UPDATE, 0)
            }
            Frame::Unknown { frame_type } => (*frame_type, 0),
        };
        check_len(p.len())?;
        dst.put_u16(0x8000 | VERSION);
        dst.put_u16(ty);
        dst.put_u32(((flags as u32) << 24) | p.len() as u32);
        dst.put_slice(&p);
        Ok(())
    }

    fn encode_headers(
        &mut self,
        kind: &'static str,
        h: &Headers,
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        self.enc
            .encode(h, out)
            .map_err(|source| FrameError::Headers { kind, source })
    }
}

impl Decoder {
    /// A decoder with a fresh decompression context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one frame off the front of `src`, or `None` when it holds less than a frame.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 8 {
            return Ok(None);
        }
        let len = (u32::from_be_bytes([0, src[5], src[6], src[7]])) as usize;
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        let head = src.split_to(8);
        let mut p = src.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let fin = flags & FLAG_FIN != 0;
            return Ok(Some(Frame::Data {
                stream_id,
                fin,
                data: p,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let ty = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        let frame = match ty {
            TYPE_SYN_STREAM => {
                need(&p, "SYN_STREAM", 10, false)?;
                let stream_id = nonzero(p.get_u32() & 0x7fff_ffff, "SYN_STREAM")?;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                let headers = self.decode_headers("SYN_STREAM", &p)?;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    flags,
                    headers,
                }
            }
            TYPE_SYN_REPLY => {
                need(&p, "SYN_REPLY", 4, false)?;
                let stream_id = nonzero(p.get_u32() & 0x7fff_ffff, "SYN_REPLY")?;
                let headers = self.decode_headers("SYN_REPLY", &p)?;
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers,
                }
            }
            TYPE_HEADERS => {
                need(&p, "HEADERS", 4, false)?;
                let stream_id = nonzero(p.get_u32() & 0x7fff_ffff, "HEADERS")?;
                let headers = self.decode_headers("HEADERS", &p)?;
                Frame::Headers {
                    stream_id,
                    fin,
                    headers,
                }
            }
            TYPE_RST_STREAM => {
                need(&p, "RST_STREAM", 8, true)?;
                let stream_id = nonzero(p.get_u32() & 0x7fff_ffff, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id,
                    status: RstStatus(p.get_u32()),
                }
            }
            TYPE_SETTINGS => {
                need(&p, "SETTINGS", 4, false)?;
                let n = p.get_u32() as usize;
                if p.len() != n.saturating_mul(8) {
                    return Err(FrameError::BadLength {
                        kind: "SETTINGS",
                        len,
                        expected: format!("4 + 8 * {n}"),
                    });
                }
                let entries = (0..n)
                    .map(|_| {
                        let idf = p.get_u32();
                        Setting {
                            flags: (idf >> 24) as u8,
                            id: idf & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            TYPE_PING => {
                need(&p, "PING", 4, true)?;
                Frame::Ping { id: p.get_u32() }
            }
            TYPE_GOAWAY => {
                need(&p, "GOAWAY", 8, true)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                Frame::GoAway {
                    last_good_stream_id,
                    status: GoAwayStatus(p.get_u32()),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(&p, "WINDOW_UPDATE", 8, true)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                Frame::WindowUpdate {
                    stream_id,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    fn decode_headers(&mut self, kind: &'static str, block: &[u8]) -> Result<Headers, FrameError> {
        self.dec
            .decode(block)
            .map_err(|source| FrameError::Headers { kind, source })
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn check_len(len: usize) -> Result<(), FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    Ok(())
}

fn need(p: &Bytes, kind: &'static str, n: usize, exact: bool) -> Result<(), FrameError> {
    let ok = if exact { p.len() == n } else { p.len() >= n };
    if ok {
        return Ok(());
    }
    let expected = if exact {
        n.to_string()
    } else {
        format!("at least {n}")
    };
    Err(FrameError::BadLength {
        kind,
        len: p.len(),
        expected,
    })
}

fn nonzero(id: u32, kind: &'static str) -> Result<u32, FrameError> {
    if id == 0 {
        return Err(FrameError::StreamZero { kind });
    }
    Ok(id)
}
