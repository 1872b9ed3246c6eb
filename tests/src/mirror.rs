//! A deliberately broken registry mirror: a tiny HTTP/1.1 server on
//! 127.0.0.1 that serves an OCI layout's manifests (so tags resolve through
//! it) but answers blob requests the way failing mirrors do: HTTP 500 or
//! 404, a body cut off midway, a reset connection, or bytes that do not
//! match the digest. Stopped and joined when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the mirror answers a blob request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500.
    ServerError,
    /// HTTP 404.
    NotFound,
    /// The full Content-Length promised, half the body sent, then close.
    Truncate,
    /// The right length with one byte flipped.
    Corrupt,
    /// Close with a TCP reset instead of answering.
    Reset,
}

type FaultFn = dyn Fn(&str) -> Fault + Send + Sync;

/// The running mirror.
pub struct FlakyMirror {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FlakyMirror {
    /// Serve the manifests of the OCI layout at `layout` (by any tag: the
    /// layout's first manifest; by digest: that blob) and fail each blob
    /// request as `fault(digest)` says.
    pub fn start(layout: &Path, fault: impl Fn(&str) -> Fault + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr").to_string();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Ctx {
            layout: layout.to_path_buf(),
            fault: Box::new(fault),
            requests: requests.clone(),
        });
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let ctx = ctx.clone();
                        std::thread::spawn(move || ctx.serve(conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("mirror accept: {e}"),
                }
            }
        });
        FlakyMirror {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The paths requested so far (`/v2/<repo>/blobs/<digest>`, …), in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Whether a blob with this digest was asked for.
    pub fn was_asked_for_blob(&self, digest: &str) -> bool {
        self.requests()
            .iter()
            .any(|p| p.ends_with(&format!("/blobs/{digest}")))
    }
}

impl Drop for FlakyMirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Ctx {
    layout: PathBuf,
    fault: Box<FaultFn>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:")?;
        std::fs::read(self.layout.join("blobs/sha256").join(hex)).ok()
    }

    fn serve(&self, conn: TcpStream) {
        conn.set_nonblocking(false).expect("blocking conn");
        let mut reader = BufReader::new(conn.try_clone().expect("clone conn"));
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        // Skip the headers; GET has no body.
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) if h == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        self.requests
            .lock()
            .expect("requests lock")
            .push(path.clone());
        let mut conn = conn;
        if let Some((_, reference)) = path.split_once("/manifests/") {
            let digest = if reference.starts_with("sha256:") {
                reference.to_string()
            } else {
                let (_, d) = crate::registry::layout_manifest(&self.layout);
                d
            };
            match self.blob(&digest) {
                Some(body) => {
                    let media: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let ct = media["mediaType"]
                        .as_str()
                        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
                        .to_string();
                    respond(&mut conn, "200 OK", &ct, &body, body.len());
                }
                None => respond(&mut conn, "404 Not Found", "text/plain", b"", 0),
            }
            return;
        }
        let Some((_, digest)) = path.split_once("/blobs/") else {
            respond(&mut conn, "404 Not Found", "text/plain", b"", 0);
            return;
        };
        let body = self.blob(digest).unwrap_or_default();
        match (self.fault)(digest) {
            Fault::ServerError => {
                let msg = b"mirror on fire\n";
                respond(
                    &mut conn,
                    "500 Internal Server Error",
                    "text/plain",
                    msg,
                    msg.len(),
                );
            }
            Fault::NotFound => {
                let msg = br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#;
                respond(
                    &mut conn,
                    "404 Not Found",
                    "application/json",
                    msg,
                    msg.len(),
                );
            }
            Fault::Truncate => {
                respond(
                    &mut conn,
                    "200 OK",
                    "application/octet-stream",
                    &body[..body.len() / 2],
                    body.len(),
                );
            }
            Fault::Corrupt => {
                let mut bad = body.clone();
                let mid = bad.len() / 2;
                if let Some(b) = bad.get_mut(mid) {
                    *b ^= 0xff;
                }
                respond(
                    &mut conn,
                    "200 OK",
                    "application/octet-stream",
                    &bad,
                    bad.len(),
                );
            }
            Fault::Reset => {
                let _ = nix::sys::socket::setsockopt(
                    &conn,
                    nix::sys::socket::sockopt::Linger,
                    &libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    },
                );
            }
        }
    }
}

/// Write a response announcing `length` bytes and sending `body`, then close.
fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &[u8], length: usize) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}
