//! Probes against real local servers: an HTTP/1.1 server, a TCP listener,
//! a gRPC health server (tonic-health) and commands run by a runtime that
//! execs them on the host.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, Probe,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::cri::{CriError, CriResult, RuntimeService};

/// Runs ExecSync commands as host processes (the container is the host).
pub(crate) struct HostExec;

#[tonic::async_trait]
impl RuntimeService for HostExec {
    async fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriResult<cri::ExecSyncResponse> {
        let (prog, args) = req
            .cmd
            .split_first()
            .ok_or_else(|| CriError::invalid("cmd", "empty"))?;
        let child = tokio::process::Command::new(prog)
            .args(args)
            .kill_on_drop(true)
            .output();
        let out = if req.timeout > 0 {
            tokio::time::timeout(Duration::from_secs(req.timeout as u64), child)
                .await
                .map_err(|_| {
                    CriError::DeadlineExceeded(format!("command timed out after {} s", req.timeout))
                })?
        } else {
            child.await
        }
        .map_err(|e| CriError::internal(format!("exec {prog}"), e))?;
        Ok(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.status.code().unwrap_or(128),
        })
    }
}

/// A tiny HTTP/1.1 server; records each request head.
pub(crate) async fn http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                log.lock().unwrap().push(head.clone());
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, location) = match path.as_str() {
                    "/ok" | "/" | "/ok?x=1" => ("200 OK", None),
                    "/created" => ("201 Created", None),
                    "/fail" => ("500 Internal Server Error", None),
                    "/notfound" => ("404 Not Found", None),
                    "/redirect-same" => ("302 Found", Some(format!("http://127.0.0.1:{port}/ok"))),
                    "/redirect-fail" => ("302 Found", Some("/fail".to_string())),
                    "/redirect-other" => {
                        ("302 Found", Some(format!("http://127.0.0.2:{port}/fail")))
                    }
                    "/loop" => ("302 Found", Some("/loop".to_string())),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        ("200 OK", None)
                    }
                    _ => ("404 Not Found", None),
                };
                let loc = location
                    .map(|l| format!("Location: {l}\r\n"))
                    .unwrap_or_default();
                let body = format!("body of {path}");
                let resp = format!(
                    "HTTP/1.1 {status}\r\n{loc}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

fn container(ports: &[(&str, u16)]) -> Container {
    Container {
        name: "c".into(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| ContainerPort {
                    name: Some(n.to_string()),
                    container_port: i32::from(*p),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    let mut p = Probe {
        http_get: Some(HTTPGetAction {
            port,
            path: Some(path.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    p.timeout_seconds = Some(1);
    p
}

#[tokio::test]
async fn http_probe_statuses_and_redirects() {
    let (port, seen) = http_server().await;
    let c = container(&[("web", port)]);
    let rt = HostExec;
    let target = Target {
        pod_ip: "127.0.0.1",
        container_id: "x",
        container: &c,
        runtime: &rt,
    };
    let p = |path: &str| http_probe(IntOrString::Int(i32::from(port)), path);
    assert_eq!(run(&p("/ok"), &target).await, Outcome::Success);
    assert_eq!(
        run(&p("ok?x=1"), &target).await,
        Outcome::Success,
        "path without '/' and a query"
    );
    assert_eq!(run(&p("/created"), &target).await, Outcome::Success);
    assert_eq!(
        run(&p("/fail"), &target).await,
        Outcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    assert_eq!(
        run(&p("/notfound"), &target).await,
        Outcome::Failure("HTTP probe failed with statuscode: 404".into())
    );
    assert_eq!(
        run(&p("/redirect-same"), &target).await,
        Outcome::Success,
        "same-host redirect followed"
    );
    assert_eq!(
        run(&p("/redirect-fail"), &target).await,
        Outcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
    match run(&p("/redirect-other"), &target).await {
        Outcome::Warning(m) => assert!(m.starts_with("Probe terminated redirects"), "{m}"),
        other => panic!("a redirect to another host is a warning, got {other:?}"),
    }
    match run(&p("/loop"), &target).await {
        Outcome::Failure(m) => assert!(m.contains("stopped after 10 redirects"), "{m}"),
        other => panic!("want failure, got {other:?}"),
    }
    match run(&p("/slow"), &target).await {
        Outcome::Failure(m) => assert!(
            m.to_lowercase().contains("timed out") || m.contains("timeout"),
            "{m}"
        ),
        other => panic!("want timeout failure, got {other:?}"),
    }
    // Named port, custom headers, the kubelet User-Agent.
    let mut named = http_probe(IntOrString::String("web".into()), "/ok");
    named.http_get.as_mut().unwrap().http_headers = Some(vec![HTTPHeader {
        name: "X-Custom".into(),
        value: "v1".into(),
    }]);
    seen.lock().unwrap().clear();
    assert_eq!(run(&named, &target).await, Outcome::Success);
    let head = seen.lock().unwrap().join("\n").to_lowercase();
    assert!(head.contains("x-custom: v1"), "{head}");
    assert!(head.contains("user-agent: kube-probe/1.33"), "{head}");
    assert!(head.contains("accept: */*"), "{head}");
    let missing = http_probe(IntOrString::String("admin".into()), "/ok");
    assert!(
        matches!(run(&missing, &target).await, Outcome::Unknown(m) if m.contains("\"admin\" not found"))
    );
    // Nothing listening.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    assert!(matches!(
        run(
            &http_probe(IntOrString::Int(i32::from(closed_port)), "/"),
            &target
        )
        .await,
        Outcome::Failure(_)
    ));
}

#[tokio::test]
async fn tcp_probe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let c = container(&[("db", port)]);
    let rt = HostExec;
    let target = Target {
        pod_ip: "127.0.0.1",
        container_id: "x",
        container: &c,
        runtime: &rt,
    };
    let probe = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("db".into()),
            host: None,
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    assert_eq!(run(&probe, &target).await, Outcome::Success);
    drop(listener);
    match run(&probe, &target).await {
        Outcome::Failure(m) => {
            assert!(m.starts_with(&format!("dial tcp 127.0.0.1:{port}:")), "{m}")
        }
        other => panic!("want failure, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_probe() {
    let mut c = container(&[]);
    c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "CODE".into(),
        value: Some("3".into()),
        ..Default::default()
    }]);
    let rt = HostExec;
    let target = Target {
        pod_ip: "127.0.0.1",
        container_id: "x",
        container: &c,
        runtime: &rt,
    };
    let exec = |cmd: &[&str]| Probe {
        exec: Some(ExecAction {
            command: Some(cmd.iter().map(|s| s.to_string()).collect()),
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    assert_eq!(run(&exec(&["true"]), &target).await, Outcome::Success);
    assert_eq!(
        run(
            &exec(&["sh", "-c", "echo not ready; exit $(CODE)"]),
            &target
        )
        .await,
        Outcome::Failure("not ready".into()),
        "the command is expanded with the static env"
    );
    match run(&exec(&["sh", "-c", "exit $(CODE)"]), &target).await {
        Outcome::Failure(m) => assert!(m.contains("exited with 3"), "{m}"),
        other => panic!("{other:?}"),
    }
    match run(&exec(&["sleep", "5"]), &target).await {
        Outcome::Failure(m) => assert!(m.contains("timed out after 1s"), "{m}"),
        other => panic!("a timeout is a failure, got {other:?}"),
    }
    assert!(matches!(
        run(&exec(&["/nonexistent/cmd"]), &target).await,
        Outcome::Unknown(_)
    ));
}

#[tokio::test]
async fn grpc_probe() {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("db", ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    let c = container(&[]);
    let rt = HostExec;
    let target = Target {
        pod_ip: "127.0.0.1",
        container_id: "x",
        container: &c,
        runtime: &rt,
    };
    let grpc = |port: u16, service: &str| Probe {
        grpc: Some(GRPCAction {
            port: i32::from(port),
            service: Some(service.into()),
        }),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    assert_eq!(run(&grpc(port, ""), &target).await, Outcome::Success);
    assert_eq!(
        run(&grpc(port, "db"), &target).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    match run(&grpc(port, "other"), &target).await {
        Outcome::Failure(m) => assert!(m.starts_with("error: health rpc probe failed"), "{m}"),
        other => panic!("{other:?}"),
    }
    // An HTTP/1 server does not speak the health protocol.
    let (http_port, _) = http_server().await;
    assert!(matches!(
        run(&grpc(http_port, ""), &target).await,
        Outcome::Failure(_)
    ));
    server.abort();
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    match run(&grpc(closed_port, ""), &target).await {
        Outcome::Failure(m) => assert!(m.starts_with("timeout: failed to connect service"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// HTTPS with a self-signed certificate (made by openssl): kubelet does
/// not verify probe certificates.
#[tokio::test]
async fn https_probe_skips_verification() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=probe-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        _ => husk_tests::skip!("tool", "openssl cannot make a test certificate"),
    }
    let certs = vec![CertificateDer::from_pem_file(&cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let status = if head.starts_with("GET /healthz ") {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let resp =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let c = container(&[]);
    let rt = HostExec;
    let target = Target {
        pod_ip: "127.0.0.1",
        container_id: "x",
        container: &c,
        runtime: &rt,
    };
    let mut p = http_probe(IntOrString::Int(i32::from(port)), "/healthz");
    p.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    assert_eq!(run(&p, &target).await, Outcome::Success);
    p.http_get.as_mut().unwrap().path = Some("/other".into());
    assert_eq!(
        run(&p, &target).await,
        Outcome::Failure("HTTP probe failed with statuscode: 503".into())
    );
}
