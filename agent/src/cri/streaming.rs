//! CRI `Exec`, `Attach` and `PortForward`: each checks its request, then
//! hands out a one-time URL of the streaming server
//! ([`crate::stream::server`]) whose token holds what to run:
//!
//! - exec: a husk-shim exec session in `--stream` mode (never a child of
//!   husklet), its output flowing to the client with back-pressure, the
//!   exit code from the session's `exit.json`;
//! - attach: the container's shim attach socket (stdin only when the
//!   container was created with stdin; its stdin closed at the client's EOF
//!   only with `stdin_once`);
//! - port-forward: connections to `127.0.0.1:<port>` dialled inside the
//!   pod's network namespace, from a short-lived thread that enters it
//!   (`setns` changes only that thread), never a fork.

use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::net::{TcpStream, UnixStream};

use super::config::CriConfig;
use super::container::{ContainerRecord, Live};
use super::error::CriError;
use super::record;
use super::runtime::{Cri, State, blocking};
use crate::sandbox::ns;
use crate::stream::bridge::{self, End};
use crate::stream::io::{Io, Options};
use crate::stream::server::{Dialer, Kind, Pending, Server};
use crate::stream::status::Outcome;

/// How long a port-forward connection may take to establish.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Cri {
    /// Serve `Exec`, `Attach` and `PortForward` through `server` (set once,
    /// by `husklet serve`; without it those calls fail with a clear error).
    pub fn set_streaming(&self, server: Arc<Server>) {
        let _ = self.streaming.set(server);
    }

    fn streaming_server(&self) -> Result<&Arc<Server>, CriError> {
        self.streaming.get().ok_or_else(|| {
            CriError::FailedPrecondition(
                "husklet runs no streaming server (start it with husklet serve --streaming-address)"
                    .into(),
            )
        })
    }

    fn running_container(&self, id: &str) -> Result<ContainerRecord, CriError> {
        let rec = {
            let st = self.state();
            State::resolve(&st.containers, "container", id)?.clone()
        };
        if !matches!(rec.live(), Live::Running) {
            return Err(CriError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        Ok(rec)
    }

    pub(crate) fn exec_url(&self, req: cri::ExecRequest) -> Result<cri::ExecResponse, CriError> {
        let server = self.streaming_server()?;
        if req.cmd.is_empty() {
            return Err(CriError::invalid("cmd", "must not be empty"));
        }
        let opts = options(req.stdin, req.stdout, req.stderr, req.tty)?;
        let rec = self.running_container(&req.container_id)?;
        let cfg = self.cfg.clone();
        let cmd = req.cmd;
        let run: crate::stream::server::Runner =
            Box::new(move |io| Box::pin(run_exec(cfg, rec, cmd, opts, io)));
        let url = server
            .url(Pending::Command {
                kind: Kind::Exec,
                opts,
                run,
            })
            .map_err(token_error)?;
        Ok(cri::ExecResponse { url })
    }

    pub(crate) fn attach_url(
        &self,
        req: cri::AttachRequest,
    ) -> Result<cri::AttachResponse, CriError> {
        let server = self.streaming_server()?;
        let opts = options(req.stdin, req.stdout, req.stderr, req.tty)?;
        let rec = self.running_container(&req.container_id)?;
        if req.stdin && !rec.config.stdin {
            return Err(CriError::invalid(
                "stdin",
                format!("container {} was not created with stdin", rec.id),
            ));
        }
        if req.tty != rec.config.tty {
            return Err(CriError::invalid(
                "tty",
                format!(
                    "container {} was created with tty={}, the request says tty={}",
                    rec.id, rec.config.tty, req.tty
                ),
            ));
        }
        let run: crate::stream::server::Runner = Box::new(move |io| Box::pin(run_attach(rec, io)));
        let url = server
            .url(Pending::Command {
                kind: Kind::Attach,
                opts,
                run,
            })
            .map_err(token_error)?;
        Ok(cri::AttachResponse { url })
    }

    pub(crate) fn port_forward_url(
        &self,
        req: cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse, CriError> {
        let server = self.streaming_server()?;
        let ports = req
            .port
            .iter()
            .enumerate()
            .map(|(i, p)| {
                u16::try_from(*p).ok().filter(|p| *p != 0).ok_or_else(|| {
                    CriError::invalid(format!("port[{i}]"), format!("{p} is not 1-65535"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sandbox = {
            let st = self.state();
            State::resolve(&st.sandboxes, "sandbox", &req.pod_sandbox_id)?.clone()
        };
        if !sandbox.ready {
            return Err(CriError::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sandbox.id
            )));
        }
        let netns = sandbox.ns_path(ns::Kind::Net);
        let id = sandbox.id.clone();
        let dial: Dialer = Arc::new(move |port| Box::pin(dial(id.clone(), netns.clone(), port)));
        let url = server
            .url(Pending::PortForward { ports, dial })
            .map_err(token_error)?;
        Ok(cri::PortForwardResponse { url })
    }
}

/// The streams of a request, checked as kubelet checks them.
fn options(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<Options, CriError> {
    if !(stdin || stdout || stderr) {
        return Err(CriError::invalid(
            "stdin/stdout/stderr",
            "one of them must be requested",
        ));
    }
    if tty && stderr {
        return Err(CriError::invalid(
            "stderr",
            "a tty has no separate stderr: tty and stderr cannot both be true",
        ));
    }
    Ok(Options {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

fn token_error(e: crate::stream::token::TokenError) -> CriError {
    match e {
        crate::stream::token::TokenError::TooMany(_) => CriError::FailedPrecondition(e.to_string()),
        other => CriError::internal("issue a streaming token", other),
    }
}

fn client_of(io: Io) -> (bridge::Client, crate::stream::io::Finisher) {
    let Io {
        stdin,
        stdout,
        stderr,
        resize,
        closed,
        finish,
    } = io;
    (
        bridge::Client {
            stdin,
            stdout,
            stderr,
            resize,
            closed,
        },
        finish,
    )
}

/// One streamed exec: launch the session with our end of a socket pair as
/// its stream, bridge, report the exit code, remove the session dir.
async fn run_exec(
    cfg: Arc<CriConfig>,
    rec: ContainerRecord,
    cmd: Vec<String>,
    opts: Options,
    io: Io,
) {
    let (client, finish) = client_of(io);
    let dir = cfg.exec_dir().join(&record::new_id()[..32]);
    // The client's streams are dropped inside: the outcome goes last.
    let outcome = exec_session(cfg, &rec, cmd, opts, client, &dir).await;
    let _ = finish.finish(outcome).await;
    let d = dir.clone();
    let _ = blocking("remove the exec dir", move || {
        let _ = crate::image::fsutil::remove_tree(&d);
        Ok(())
    })
    .await;
}

async fn exec_session(
    cfg: Arc<CriConfig>,
    rec: &ContainerRecord,
    cmd: Vec<String>,
    opts: Options,
    client: bridge::Client,
    dir: &std::path::Path,
) -> Outcome {
    // The container may have stopped since the token was issued.
    if !matches!(rec.live(), Live::Running) {
        return Outcome::Error(format!("container {} is not running", rec.id));
    }
    let shim_dir = dir.join("s");
    let (d, r) = (dir.to_path_buf(), rec.clone());
    let launched = blocking("start the exec session", move || {
        let (ours, theirs) = StdUnixStream::pair()
            .map_err(|e| CriError::internal("create the exec stream socket", e))?;
        std::fs::create_dir_all(&d).map_err(CriError::io("create the exec dir", &d))?;
        let process = super::exec::process_json(&r.bundle, &cmd)?;
        let mut process: serde_json::Value = serde_json::from_slice(&process)
            .map_err(|e| CriError::internal("parse process.json", e))?;
        process["terminal"] = opts.tty.into();
        let pj = d.join("process.json");
        std::fs::write(&pj, process.to_string())
            .map_err(CriError::io("write process.json", &pj))?;
        let pid = husk_shim::client::launch_streaming(
            &husk_shim::LaunchConfig {
                shim: cfg.shim.clone(),
                runtime: cfg.runtime.clone(),
                root: cfg.runtime_root(),
                id: r.id.clone(),
                bundle: r.bundle.clone(),
                dir: d.join("s"),
                log_path: PathBuf::new(),
                stdin: opts.stdin,
                exec: Some(pj),
                release: None,
            },
            theirs,
        )
        .map_err(|e| CriError::internal(format!("container {}: exec", r.id), e))?;
        ours.set_nonblocking(true)
            .map_err(|e| CriError::internal("exec stream socket", e))?;
        Ok((pid, ours))
    })
    .await;
    match launched {
        Ok((pid, sock)) => match UnixStream::from_std(sock) {
            Ok(sock) => match bridge::run(sock, client, true).await {
                End::ShimClosed => exit_outcome(&shim_dir, &rec.id).await,
                End::ClientGone => {
                    // Our end closes here; the shim kills the process.
                    tracing::info!(container = %rec.id, pid, "exec client went away; the session is killed");
                    Outcome::Error("client went away".into())
                }
            },
            Err(e) => Outcome::Error(format!("container {}: exec stream socket: {e}", rec.id)),
        },
        Err(e) => Outcome::Error(crate::cri::error::chain(&e)),
    }
}

/// The session's exit code from its `exit.json` (written before the shim
/// closed the stream; a short wait covers a shim killed in between).
async fn exit_outcome(shim_dir: &std::path::Path, id: &str) -> Outcome {
    for _ in 0..100 {
        match husk_shim::client::read_exit(shim_dir) {
            Ok(Some(e)) => return Outcome::Exited(e.exit_code),
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Outcome::Error(format!("container {id}: exec: read exit.json: {e}")),
        }
    }
    Outcome::Error(format!(
        "container {id}: exec session ended without recording an exit"
    ))
}

/// Attach: the client's streams to the container's shim attach socket.
/// Attach reports success when the stream ends (the container exited, or
/// the client detached), as kubelet does.
async fn run_attach(rec: ContainerRecord, io: Io) {
    let (client, finish) = client_of(io);
    let sock = husk_shim::layout::ATTACH_SOCK;
    let conn = match rec.live() {
        Live::Running => UnixStream::connect(rec.shim_dir.join(sock)).await.ok(),
        _ => None,
    };
    let Some(conn) = conn else {
        // Streams first (a WebSocket sends the status after their end).
        drop(client);
        let msg = format!("container {} is not running", rec.id);
        let _ = finish.finish(Outcome::Error(msg)).await;
        return;
    };
    let end = bridge::run(conn, client, rec.config.stdin_once).await;
    tracing::debug!(container = %rec.id, ?end, "attach ended");
    let _ = finish.finish(Outcome::Exited(0)).await;
}

/// Connect to `127.0.0.1:port` in the pod's network namespace (`netns`;
/// `None`: the host's, for host-network pods).
async fn dial(sandbox: String, netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Some(netns) = netns else {
        return tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other(format!("connect {addr}: timed out")))?;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: setns changes the calling thread's namespace,
    // and this thread ends right after, so no other work runs in the pod's.
    std::thread::Builder::new()
        .name("pf-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_in(&netns, addr));
        })
        .map_err(|e| {
            std::io::Error::other(format!("sandbox {sandbox}: start a dial thread: {e}"))
        })?;
    let std = rx
        .await
        .map_err(|_| std::io::Error::other("dial thread vanished"))?
        .map_err(|e| std::io::Error::new(e.kind(), format!("sandbox {sandbox}: {e}")))?;
    TcpStream::from_std(std)
}

fn dial_in(
    netns: &std::path::Path,
    addr: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    let f = std::fs::File::open(netns)
        .map_err(|e| std::io::Error::new(e.kind(), format!("open {}: {e}", netns.display())))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        std::io::Error::other(format!(
            "enter the network namespace {}: {e}",
            netns.display()
        ))
    })?;
    let s = std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT)
        .map_err(|e| std::io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_options_are_checked_by_field() {
        let e = options(false, false, false, false).expect_err("no streams");
        assert!(e.to_string().contains("stdin/stdout/stderr"), "{e}");
        let e = options(false, true, true, true).expect_err("tty+stderr");
        assert!(e.to_string().starts_with("stderr:"), "{e}");
        assert!(options(true, true, false, true).is_ok());
    }
}
