//! Test support: a unix-socket proxy that rewrites HTTP/2 `:authority`.
//!
//! crictl 1.26 (grpc-go) sends the socket path (`/tmp/x/cri.sock`) as
//! `:authority`; h2, under tonic, refuses that as a malformed authority
//! with RST_STREAM(PROTOCOL_ERROR). The proxy rewrites the literal
//! `:authority` values of HEADERS frames to `localhost` (the value newer
//! Kubernetes clients send) before they reach the gRPC server. Entries the
//! client later references by index then name the rewritten value on the
//! server side too, so HPACK state stays consistent.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const PREFACE_LEN: usize = 24;
const HEADERS: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
const AUTHORITY_INDEX: u64 = 1;

/// Listens on `front` and forwards every connection to `back`, rewriting authorities.
pub(super) fn spawn(front: &Path, back: PathBuf) {
    let listener = UnixListener::bind(front).expect("bind proxy socket");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let back = back.clone();
            tokio::spawn(async move {
                let Ok(server) = UnixStream::connect(&back).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let _ = rewrite(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
}

async fn rewrite<R, W>(rd: &mut R, wr: &mut W) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut preface = [0u8; PREFACE_LEN];
    rd.read_exact(&mut preface).await?;
    wr.write_all(&preface).await?;
    loop {
        let mut head = [0u8; 9];
        rd.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await?;
        let flags = head[4];
        if head[3] == HEADERS && flags & FLAG_END_HEADERS != 0 {
            if let Some((new_flags, new_payload)) = rewrite_headers(flags, &payload) {
                head[4] = new_flags;
                head[..3].copy_from_slice(&(new_payload.len() as u32).to_be_bytes()[1..]);
                payload = new_payload;
            }
        }
        wr.write_all(&head).await?;
        wr.write_all(&payload).await?;
    }
}

/// The HEADERS payload with `:authority` literals replaced (padding dropped).
fn rewrite_headers(flags: u8, p: &[u8]) -> Option<(u8, Vec<u8>)> {
    let mut body = p;
    if flags & FLAG_PADDED != 0 {
        let pad = usize::from(*body.first()?);
        body = body.get(1..body.len().checked_sub(pad)?)?;
    }
    let mut out = Vec::new();
    if flags & FLAG_PRIORITY != 0 {
        out.extend_from_slice(body.get(..5)?);
        body = &body[5..];
    }
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        let start = i;
        if b & 0x80 != 0 {
            int(body, &mut i, 7)?;
        } else if b & 0xe0 == 0x20 {
            int(body, &mut i, 5)?;
        } else {
            let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
            let name = int(body, &mut i, prefix)?;
            if name == 0 {
                string(body, &mut i)?;
            }
            string(body, &mut i)?;
            if name == AUTHORITY_INDEX {
                // Same representation, static name index 1, raw "localhost".
                let mask = if prefix == 6 { 0xc0 } else { 0xf0 };
                out.push((b & mask) | 1);
                out.push(9);
                out.extend_from_slice(b"localhost");
                continue;
            }
        }
        out.extend_from_slice(&body[start..i]);
    }
    Some((flags & !FLAG_PADDED, out))
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541, 5.1).
fn int(b: &[u8], i: &mut usize, n: u32) -> Option<u64> {
    let mask = (1u64 << n) - 1;
    let mut v = u64::from(*b.get(*i)?) & mask;
    *i += 1;
    if v < mask {
        return Some(v);
    }
    let mut shift = 0;
    loop {
        let c = *b.get(*i)?;
        *i += 1;
        v += u64::from(c & 0x7f) << shift;
        shift += 7;
        if c & 0x80 == 0 || shift > 56 {
            return Some(v);
        }
    }
}

/// Skips an HPACK string literal (RFC 7541, 5.2).
fn string(b: &[u8], i: &mut usize) -> Option<()> {
    let len = int(b, i, 7)? as usize;
    *i = i.checked_add(len).filter(|end| *end <= b.len())?;
    Some(())
}
