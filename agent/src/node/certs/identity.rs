//! The node's client certificate, swappable under running clients: every
//! new TLS connection presents the current certificate, and when it is
//! replaced every open connection is closed (as kubelet's rotating dialer
//! does), so that requests and watches come back with the new one rather
//! than with a certificate that will expire.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll, Waker};

use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::sign::CertifiedKey;

use super::CertError;
use super::store::Pair;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client certificate that can be replaced, and the connections made
/// with it.
pub struct ClientIdentity {
    key: RwLock<Arc<CertifiedKey>>,
    conns: Mutex<Vec<Weak<Closer>>>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

/// A rustls signing key and chain from a pair.
pub fn certified_key(pair: &Pair) -> Result<Arc<CertifiedKey>, CertError> {
    let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&pair.key).map_err(|source| {
        CertError::Tls {
            what: "load the certificate's private key".into(),
            source,
        }
    })?;
    Ok(Arc::new(CertifiedKey::new(pair.chain.clone(), key)))
}

impl ClientIdentity {
    /// Present `pair` from now on.
    pub fn new(pair: &Pair) -> Result<Arc<ClientIdentity>, CertError> {
        Ok(Arc::new(ClientIdentity {
            key: RwLock::new(certified_key(pair)?),
            conns: Mutex::new(Vec::new()),
        }))
    }

    /// Switch to `pair` and close the connections made so far.
    pub fn set(&self, pair: &Pair) -> Result<(), CertError> {
        let key = certified_key(pair)?;
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = key;
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        let mut closed = 0;
        for c in conns.iter().filter_map(Weak::upgrade) {
            c.close();
            closed += 1;
        }
        tracing::info!(
            closed,
            "client certificate replaced: open connections closed"
        );
        Ok(())
    }

    fn track(&self) -> Arc<Closer> {
        let c = Arc::new(Closer::default());
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(&c));
        c
    }
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.key.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A [`kube::Client`] for `config`; with `identity`, its connections
/// present that (swappable) client certificate instead of the config's.
pub fn client(
    config: kube::Config,
    identity: Option<Arc<ClientIdentity>>,
) -> Result<kube::Client, CertError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |source| CertError::Client { what, source }
    };
    // kube's own client builder installs the process default the same way.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let mut tls = config
        .rustls_client_config()
        .map_err(err("TLS client configuration"))?;
    if let Some(id) = &identity {
        tls.client_auth_cert_resolver = id.clone();
        // A resumed TLS session keeps the certificate of the handshake it
        // resumes: after a rotation the apiserver would still see the old
        // one (Go's client, kubelet's, resumes nothing by default).
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let tracked = Tracked {
        inner: http,
        identity,
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tracked);
    let hyper_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer().map_err(err("client authentication"))?)
        .layer(
            config
                .extra_headers_layer()
                .map_err(err("client headers"))?,
        )
        .map_err(BoxError::from)
        .service(hyper_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Closes one connection from the outside.
#[derive(Default)]
struct Closer {
    closed: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Closer {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(w) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    fn check(&self) -> std::io::Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "closed: the client certificate was rotated",
            ));
        }
        Ok(())
    }
}

/// The TCP connector, its connections registered with the identity.
#[derive(Clone)]
struct Tracked {
    inner: HttpConnector,
    identity: Option<Arc<ClientIdentity>>,
}

type Tcp = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

impl tower::Service<http::Uri> for Tracked {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(BoxError::from)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connect = self.inner.call(uri);
        let closer = self.identity.as_ref().map(|i| i.track());
        Box::pin(async move {
            let io = connect.await.map_err(BoxError::from)?;
            Ok(Conn { io, closer })
        })
    }
}

/// A TCP connection that fails once its identity was replaced.
struct Conn {
    io: Tcp,
    closer: Option<Arc<Closer>>,
}

impl Conn {
    fn check(&self) -> std::io::Result<()> {
        self.closer.as_ref().map_or(Ok(()), |c| c.check())
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(c) = &self.closer {
            // The waker first: a close after the check still wakes us.
            *c.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        }
        self.check()?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
