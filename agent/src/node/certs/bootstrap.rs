//! The node's apiserver client, as kubelet makes it (`--kubeconfig`,
//! `--bootstrap-kubeconfig`, `--rotate-certificates`):
//!
//! - with a bootstrap kubeconfig and no usable `--kubeconfig` (missing,
//!   or without an unexpired client certificate), TLS bootstrap: a client
//!   CSR made with the bootstrap credentials, the issued pair written to the
//!   cert dir, and `--kubeconfig` written to point at
//!   `<cert-dir>/kubelet-client-current.pem`;
//! - with rotation on, the client presents the cert dir's current pair (or
//!   the kubeconfig's own certificate until there is one) through a
//!   swappable identity, and [`NodeClient::rotate`] keeps it fresh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::CertError;
use super::csr::{self, Request};
use super::identity::{self, ClientIdentity};
use super::rotation;
use super::store::{self, Pair, Store};

/// How long the bootstrap CSR is waited for (kubelet: an hour).
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(3600);
/// How long a rotation CSR is waited for before the attempt counts as failed.
const ROTATION_WAIT: Duration = Duration::from_secs(15 * 60);

/// The flags that decide the node's credentials.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The node's name.
    pub node: String,
    /// `--kubeconfig`.
    pub kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig`.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// `--cert-dir`.
    pub cert_dir: PathBuf,
    /// `--rotate-certificates`.
    pub rotate: bool,
}

/// The node's client and, with rotation, the certificate it presents.
#[derive(Clone)]
pub struct NodeClient {
    pub client: kube::Client,
    rotating: Option<(Arc<ClientIdentity>, Pair)>,
    settings: Settings,
}

impl NodeClient {
    /// With `--rotate-certificates` and a client certificate: rotate it
    /// before it expires, forever (spawn this).
    pub async fn rotate(self) {
        let Some((identity, pair)) = self.rotating else {
            return;
        };
        let store = Store::new(&self.settings.cert_dir, store::CLIENT);
        let req = Request::client(&self.settings.node);
        let client = self.client.clone();
        let renew = || {
            let (client, req) = (client.clone(), req.clone());
            async move { csr::request(&client, &req, ROTATION_WAIT).await }
        };
        let installed = |p: &Pair| {
            if let Err(e) = identity.set(p) {
                tracing::warn!(error = %crate::cri::error::chain(&e), "rotated client certificate unusable");
            }
        };
        rotation::run("kubelet client", store, pair, renew, installed).await;
    }
}

/// The node's client: bootstrapped first when needed (see the module).
pub async fn node_client(s: &Settings) -> Result<NodeClient, CertError> {
    if let Some(bootstrap) = &s.bootstrap_kubeconfig {
        if !kubeconfig_valid(&s.kubeconfig) {
            tracing::info!(kubeconfig = %s.kubeconfig.display(), "no valid client certificate: TLS bootstrap with {}", bootstrap.display());
            bootstrap_client_cert(s, bootstrap).await?;
        }
    }
    let config = load_config(&s.kubeconfig).await?;
    let pair = if s.rotate {
        rotation_pair(s, &config)?
    } else {
        None
    };
    let identity = pair.as_ref().map(ClientIdentity::new).transpose()?;
    let client = identity::client(config, identity.clone())?;
    Ok(NodeClient {
        client,
        rotating: identity.zip(pair),
        settings: s.clone(),
    })
}

async fn load_config(path: &Path) -> Result<kube::Config, CertError> {
    let kc = |source| CertError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(kc)?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(kc)
}

/// The pair rotation starts from: the cert dir's current one if it is
/// valid, else the kubeconfig's client certificate and key.
fn rotation_pair(s: &Settings, config: &kube::Config) -> Result<Option<Pair>, CertError> {
    let now = SystemTime::now();
    match Store::new(&s.cert_dir, store::CLIENT).current() {
        Ok(Some(p)) if p.valid_at(now) => return Ok(Some(p)),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %crate::cri::error::chain(&e), "ignoring the cert dir's client certificate")
        }
    }
    let Some(pem) = client_pem(&config.auth_info)? else {
        tracing::info!("--rotate-certificates: the kubeconfig has no client certificate to rotate");
        return Ok(None);
    };
    Pair::parse(&pem, &s.kubeconfig).map(Some)
}

/// The kubeconfig user's client certificate and key (PEM), if it has them.
fn client_pem(a: &kube::config::AuthInfo) -> Result<Option<Vec<u8>>, CertError> {
    let part =
        |data: &Option<String>, file: &Option<String>| -> Result<Option<Vec<u8>>, CertError> {
            if let Some(d) = data {
                return base64::engine::general_purpose::STANDARD
                    .decode(d.trim())
                    .map(Some)
                    .map_err(|e| CertError::Invalid {
                        what: format!("kubeconfig client certificate data: {e}"),
                    });
            }
            match file {
                Some(f) => std::fs::read(f).map(Some).map_err(CertError::io(f)),
                None => Ok(None),
            }
        };
    let cert = part(&a.client_certificate_data, &a.client_certificate)?;
    let key_data = a
        .client_key_data
        .as_ref()
        .map(|k| secrecy::ExposeSecret::expose_secret(k).to_string());
    let key = part(&key_data, &a.client_key)?;
    Ok(match (cert, key) {
        (Some(mut c), Some(k)) => {
            if c != k {
                c.push(b'\n');
                c.extend_from_slice(&k);
            }
            Some(c)
        }
        _ => None,
    })
}

/// kubelet's `isClientConfigStillValid`: the kubeconfig exists, loads, and
/// has client certificates, none of them expired.
pub fn kubeconfig_valid(path: &Path) -> bool {
    let Ok(kc) = Kubeconfig::read_from(path) else {
        return false;
    };
    let current = kc.current_context.clone().unwrap_or_default();
    let user = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.user.clone().unwrap_or_default());
    let Some(auth) = user.and_then(|u| {
        kc.auth_infos
            .iter()
            .find(|a| a.name == u)
            .and_then(|a| a.auth_info.clone())
    }) else {
        return false;
    };
    let Ok(Some(pem)) = client_pem(&auth) else {
        return false;
    };
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    let now = SystemTime::now();
    !certs.is_empty()
        && certs.iter().all(|c| {
            x509_parser::parse_x509_certificate(c.as_ref()).is_ok_and(|(_, x)| {
                let na = x.validity().not_after.timestamp();
                SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(na).unwrap_or(0)) > now
            })
        })
}

/// TLS bootstrap: request the client certificate with the bootstrap
/// credentials, store it, write `--kubeconfig` pointing at it.
async fn bootstrap_client_cert(s: &Settings, bootstrap: &Path) -> Result<(), CertError> {
    let config = load_config(bootstrap).await?;
    let client = identity::client(config.clone(), None)?;
    let mut req = Request::client(&s.node);
    req.digested_name = true;
    let issued = csr::request(&client, &req, BOOTSTRAP_WAIT).await?;
    let store = Store::new(&s.cert_dir, store::CLIENT);
    let file = store.write(
        &issued.cert_pem,
        issued.key_pem.as_bytes(),
        SystemTime::now(),
    )?;
    tracing::info!(file = %file.display(), csr = %issued.name, "client certificate from TLS bootstrap stored");
    let ca = bootstrap_ca(bootstrap)?;
    write_kubeconfig(
        &s.kubeconfig,
        &config.cluster_url.to_string(),
        ca.as_deref(),
        &store.current_path(),
    )
}

/// The bootstrap kubeconfig cluster's CA bundle (PEM), if it names one.
fn bootstrap_ca(path: &Path) -> Result<Option<Vec<u8>>, CertError> {
    let kc = Kubeconfig::read_from(path).map_err(|source| CertError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    let current = kc.current_context.clone().unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let cluster = kc
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .and_then(|c| c.cluster.clone());
    let Some(cluster) = cluster else {
        return Ok(None);
    };
    if let Some(d) = &cluster.certificate_authority_data {
        return base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map(Some)
            .map_err(|e| CertError::Invalid {
                what: format!("{}: certificate-authority-data: {e}", path.display()),
            });
    }
    match &cluster.certificate_authority {
        Some(f) => std::fs::read(f).map(Some).map_err(CertError::io(f)),
        None => Ok(None),
    }
}

/// kubelet's kubeconfig after bootstrap: the bootstrap cluster (server,
/// CA inline), user `default-auth` with the cert dir's current pair as
/// client certificate and key, context `default-context`; mode 0600.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: Option<&[u8]>,
    pair: &Path,
) -> Result<(), CertError> {
    let mut cluster = serde_json::json!({ "server": server.trim_end_matches('/') });
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "default-cluster", "cluster": cluster }],
        "users": [{ "name": "default-auth", "user": {
            "client-certificate": pair,
            "client-key": pair,
        }}],
        "contexts": [{ "name": "default-context", "context": {
            "cluster": "default-cluster",
            "namespace": "default",
            "user": "default-auth",
        }}],
        "current-context": "default-context",
        "preferences": {},
    });
    let text = serde_yaml_ng::to_string(&kc).map_err(|e| CertError::Invalid {
        what: format!("kubeconfig {}: {e}", path.display()),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(CertError::io(dir))?;
    }
    store::write_private(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_kubeconfig_points_at_the_current_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n");
        let cert = params.self_signed(&key).expect("sign");
        let store = Store::new(&pki, store::CLIENT);
        store
            .write(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
                SystemTime::now(),
            )
            .expect("store");
        let kc = dir.path().join("etc/kubelet.conf");
        assert!(!kubeconfig_valid(&kc), "missing: not valid");
        write_kubeconfig(
            &kc,
            "https://10.0.0.1:6443/",
            Some(cert.pem().as_bytes()),
            &store.current_path(),
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kc).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let parsed = Kubeconfig::read_from(&kc).expect("a kubeconfig");
        let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
        let current = store.current_path().display().to_string();
        assert_eq!(user.client_certificate.as_deref(), Some(current.as_str()));
        assert_eq!(user.client_key.as_deref(), Some(current.as_str()));
        let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
        assert!(kubeconfig_valid(&kc), "an unexpired certificate: valid");
        // A token-only kubeconfig has no certificate: not valid (bootstrap).
        let token = dir.path().join("token.conf");
        std::fs::write(
            &token,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://x'}}]\n\
             users: [{name: u, user: {token: abc}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n\
             current-context: x\n",
        )
        .expect("write");
        assert!(!kubeconfig_valid(&token));
    }
}
