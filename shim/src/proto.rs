//! The shim's wire formats: the launch result, control requests and
//! responses, attach frames and the exit record.

use serde::{Deserialize, Serialize};

/// The one line the shim writes to its stdout for its launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SyncResult {
    /// The container (or exec process) exists with this host pid.
    Created { pid: i32 },
    /// Nothing was created; the runtime's (or the shim's) error text.
    Failed { error: String },
}

/// A request on the control socket, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CtlRequest {
    /// `husk start` the created container (an error for exec sessions).
    Start,
    /// Reopen the log file at its path (after a rotator renamed it).
    ReopenLog,
    /// Set the tty's window size (an error without a tty).
    Resize { rows: u16, cols: u16 },
    /// The shim's view of the process.
    Status,
}

/// The answer to one [`CtlRequest`]: `error` set on failure, `status` for
/// [`CtlRequest::Status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// What [`CtlRequest::Status`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The container's (or exec process's) host pid.
    pub pid: i32,
    /// `created` (waiting for start) or `running`.
    pub state: String,
    /// Whether this shim runs an exec session.
    pub exec: bool,
    /// Whether the process has a tty.
    pub terminal: bool,
    /// The shim's own pid.
    pub shim_pid: i32,
}

/// `exit.json`: how the process ended, written before the shim exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub pid: i32,
    /// The exit status; 128 + signal when killed by a signal (as a shell says).
    pub exit_code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// The cgroup's `oom_kill` counter grew while the process ran.
    pub oom_killed: bool,
    /// When the shim reaped the process (RFC3339Nano, UTC).
    pub finished_at: String,
    /// The shim released the container before recording its exit (`--release`):
    /// `husk delete` ran and the rootfs is unmounted.
    #[serde(default)]
    pub released: bool,
}

/// An attach stream id: the first byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stream {
    /// Client → shim: bytes for the container's stdin.
    Stdin = 0,
    /// Shim → client: the container's stdout (all output with a tty).
    Stdout = 1,
    /// Shim → client: the container's stderr.
    Stderr = 2,
    /// Client → shim: window size, payload rows and cols as two big-endian u16.
    Resize = 3,
    /// Client → shim: close the container's stdin (EOF for it), no payload.
    CloseStdin = 4,
}

impl Stream {
    fn from_u8(b: u8) -> Option<Stream> {
        Some(match b {
            0 => Stream::Stdin,
            1 => Stream::Stdout,
            2 => Stream::Stderr,
            3 => Stream::Resize,
            4 => Stream::CloseStdin,
            _ => return None,
        })
    }
}

/// One attach frame: `[stream: u8][len: u32 big-endian][payload: len bytes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 5;
/// The largest payload either side accepts; a bigger one is a protocol error.
pub const MAX_FRAME: usize = 1 << 20;

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unknown attach stream id {0}")]
    UnknownStream(u8),
    #[error("attach frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLong(usize),
}

impl Frame {
    /// The frame's bytes.
    pub fn encode(stream: Stream, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(FRAME_HEADER + data.len());
        v.push(stream as u8);
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    /// A resize frame.
    pub fn resize(rows: u16, cols: u16) -> Vec<u8> {
        let mut p = [0u8; 4];
        p[..2].copy_from_slice(&rows.to_be_bytes());
        p[2..].copy_from_slice(&cols.to_be_bytes());
        Frame::encode(Stream::Resize, &p)
    }

    /// Take the first whole frame off `buf`, if `buf` holds one.
    pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Frame>, FrameError> {
        if buf.len() < FRAME_HEADER {
            return Ok(None);
        }
        let stream = Stream::from_u8(buf[0]).ok_or(FrameError::UnknownStream(buf[0]))?;
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLong(len));
        }
        if buf.len() < FRAME_HEADER + len {
            return Ok(None);
        }
        let data = buf[FRAME_HEADER..FRAME_HEADER + len].to_vec();
        buf.drain(..FRAME_HEADER + len);
        Ok(Some(Frame { stream, data }))
    }

    /// Rows and cols of a resize frame's payload.
    pub fn winsize(&self) -> Option<(u16, u16)> {
        match self.data[..] {
            [r0, r1, c0, c1] => Some((u16::from_be_bytes([r0, r1]), u16::from_be_bytes([c0, c1]))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_in_pieces() {
        let mut wire = Frame::encode(Stream::Stdout, b"hello");
        wire.extend(Frame::resize(24, 80));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got[0].stream, Stream::Stdout);
        assert_eq!(got[0].data, b"hello");
        assert_eq!(got[1].winsize(), Some((24, 80)));
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut b = vec![9, 0, 0, 0, 0];
        assert_eq!(Frame::decode(&mut b), Err(FrameError::UnknownStream(9)));
        let mut b = vec![0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(Frame::decode(&mut b), Err(FrameError::TooLong(_))));
    }

    #[test]
    fn messages_have_their_documented_shape() {
        let r: CtlRequest = serde_json::from_str(r#"{"op":"resize","rows":3,"cols":4}"#).unwrap();
        assert_eq!(r, CtlRequest::Resize { rows: 3, cols: 4 });
        assert_eq!(
            serde_json::to_string(&CtlRequest::ReopenLog).unwrap(),
            r#"{"op":"reopen_log"}"#
        );
        let s: SyncResult = serde_json::from_str(r#"{"pid":7}"#).unwrap();
        assert_eq!(s, SyncResult::Created { pid: 7 });
        let s: SyncResult = serde_json::from_str(r#"{"error":"x"}"#).unwrap();
        assert_eq!(s, SyncResult::Failed { error: "x".into() });
    }
}
