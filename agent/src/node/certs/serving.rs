//! The kubelet API's serving certificate from the cluster (kubelet's
//! `--rotate-server-certificates`, serverTLSBootstrap): a
//! `kubernetes.io/kubelet-serving` CSR for the node's hostname and
//! addresses, kept in the cert dir as `kubelet-server-*.pem`, rotated like
//! the client certificate. The TLS acceptor asks [`ServingCert`] for the
//! certificate on every handshake; until one is issued there is none and
//! handshakes fail, as kubelet's do.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::csr::{self, Request};
use super::identity::certified_key;
use super::rotation;
use super::store::{self, Pair, Store};

/// How long one serving CSR is waited for before it is made again.
const WAIT: Duration = Duration::from_secs(15 * 60);

/// The current serving certificate, if one was issued.
#[derive(Default)]
pub struct ServingCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("issued", &self.get().is_some())
            .finish()
    }
}

impl ServingCert {
    fn set(&self, pair: &Pair) {
        match certified_key(pair) {
            Ok(k) => *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(k),
            Err(e) => {
                tracing::warn!(error = %crate::cri::error::chain(&e), "serving certificate unusable")
            }
        }
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let k = self.get();
        if k.is_none() {
            tracing::debug!("kubelet API: no serving certificate issued yet");
        }
        k
    }
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The node's name (CN `system:node:<node>`).
    pub node: String,
    /// DNS names: the node's hostname.
    pub dns_names: Vec<String>,
    /// The node's addresses.
    pub ips: Vec<IpAddr>,
    /// The cert dir.
    pub dir: std::path::PathBuf,
}

/// Keep `cert` filled with a cluster-issued serving certificate: the one in
/// the cert dir if it is still valid, else a new one requested with
/// `client`; then rotated. Runs forever.
pub async fn run(client: kube::Client, s: Settings, cert: Arc<ServingCert>) {
    let store = Store::new(&s.dir, store::SERVER);
    let req = Request::serving(&s.node, s.dns_names.clone(), s.ips.clone());
    let existing = match store.current() {
        Ok(Some(p)) if p.valid_at(SystemTime::now()) => Some(p),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %crate::cri::error::chain(&e), "ignoring the stored serving certificate");
            None
        }
    };
    let renew = || {
        let (client, req) = (client.clone(), req.clone());
        async move { csr::request(&client, &req, WAIT).await }
    };
    let first = match existing {
        Some(p) => p,
        None => {
            // No certificate yet: ask now, and again with back-off.
            let mut delay = None;
            loop {
                match renew().await.and_then(|i| {
                    let f = store.write(&i.cert_pem, i.key_pem.as_bytes(), SystemTime::now())?;
                    let pem = std::fs::read(&f).map_err(super::CertError::io(&f))?;
                    Pair::parse(&pem, &f)
                }) {
                    Ok(p) => break p,
                    Err(e) => {
                        let d = rotation::backoff(delay);
                        delay = Some(d);
                        tracing::warn!(error = %crate::cri::error::chain(&e), retry_in = ?d, "no serving certificate for the kubelet API yet");
                        tokio::time::sleep(d).await;
                    }
                }
            }
        }
    };
    cert.set(&first);
    tracing::info!(file = %store.current_path().display(), "kubelet API serving the cluster-issued certificate");
    let installed = |p: &Pair| cert.set(p);
    rotation::run("kubelet serving", store, first, renew, installed).await;
}

/// A rustls certificate resolver for `cert` (for [`crate::node::api::tls`]).
pub fn resolver(cert: Arc<ServingCert>) -> Arc<dyn ResolvesServerCert> {
    cert
}
