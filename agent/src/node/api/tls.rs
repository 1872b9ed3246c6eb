//! TLS for the kubelet API: the serving certificate (issued by the cluster
//! and rotated with `--rotate-server-certificates`, see
//! [`crate::node::certs::serving`]; else the operator's
//! `--tls-cert-file`/`--tls-private-key-file`; else a self-signed one kept
//! in the cert dir and reused, as kubelet does without a serving
//! certificate), and client certificates verified against
//! `--client-ca-file` when one is presented (a client without one may still
//! use a bearer token, or be anonymous).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Datelike;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong setting up TLS, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("generate the self-signed serving certificate")]
    Generate(#[source] rcgen::Error),
    #[error("{what}")]
    Rustls {
        what: String,
        #[source]
        source: rustls::Error,
    },
    #[error("client CA {path}: {what}")]
    ClientCa { path: PathBuf, what: String },
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum Serving {
    /// A chain and key in PEM files, loaded once.
    Files { cert: PathBuf, key: PathBuf },
    /// Issued by the cluster and swapped on rotation: every handshake
    /// asks for the current one (none yet: the handshake fails).
    Cluster(Arc<crate::node::certs::serving::ServingCert>),
}

/// The file names kubelet uses in its cert dir for a self-signed pair.
pub const SELF_SIGNED_CERT: &str = "kubelet.crt";
pub const SELF_SIGNED_KEY: &str = "kubelet.key";

/// The self-signed serving certificate in `dir` (made there, for `node`
/// and its `ips`, when absent or unreadable); returns (cert, key) paths.
pub fn self_signed(dir: &Path, node: &str, ips: &[IpAddr]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY));
    if load_certs(&cert).is_ok() && load_key(&key).is_ok() {
        return Ok((cert, key));
    }
    let mut names = vec![node.to_string()];
    if node != "localhost" {
        names.push("localhost".into());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(TlsError::Generate)?;
    for ip in ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let now = chrono::Utc::now();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{node}@{}", now.timestamp()),
    );
    // A year, as kubelet's self-signed certificate.
    let month = u8::try_from(now.month()).unwrap_or(1);
    let day = u8::try_from(now.day().min(28)).unwrap_or(1);
    params.not_before = rcgen::date_time_ymd(now.year(), month, day);
    params.not_after = rcgen::date_time_ymd(now.year() + 1, month, day);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    let pair = rcgen::KeyPair::generate().map_err(TlsError::Generate)?;
    let c = params.self_signed(&pair).map_err(TlsError::Generate)?;
    write_private(dir, &key, pair.serialize_pem().as_bytes())?;
    write_private(dir, &cert, c.pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed serving certificate for the kubelet API");
    Ok((cert, key))
}

/// Write `data` to `path` (mode 0600), via a temporary file and rename.
fn write_private(dir: &Path, path: &Path, data: &[u8]) -> Result<(), TlsError> {
    let write = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write)?;
    crate::image::fsutil::write_private(path, data).map_err(write)
}

/// The certificates of a PEM file (a chain, or a CA bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// The server's TLS configuration: its certificate, and the client CA
/// (client certificates optional; one that is presented must verify).
pub fn server_config(
    serving: &Serving,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "TLS protocol versions".into(),
            source,
        })?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: ca.to_path_buf(),
                    what: e.to_string(),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::ClientCa {
                path: ca.to_path_buf(),
                what: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = match serving {
        Serving::Files { cert, key } => builder
            .with_single_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|source| TlsError::Rustls {
                what: format!("serving certificate {}", cert.display()),
                source,
            })?,
        Serving::Cluster(current) => {
            builder.with_cert_resolver(crate::node::certs::serving::resolver(current.clone()))
        }
    };
    // HTTP/1.1 only: the streaming endpoints need HTTP upgrades.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The user a verified client certificate names: CN the name, each O a group.
pub fn cert_user(der: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((name, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let (c, k) = self_signed(dir.path(), "node-a", &[ip]).expect("generate");
        let first = std::fs::read(&c).expect("cert");
        let (c2, _) = self_signed(dir.path(), "node-a", &[ip]).expect("reuse");
        assert_eq!(
            std::fs::read(&c2).expect("cert"),
            first,
            "reused, not regenerated"
        );
        server_config(
            &Serving::Files {
                cert: c.clone(),
                key: k,
            },
            None,
        )
        .expect("usable by rustls");
        let der = load_certs(&c).expect("pem").remove(0);
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let san = x
            .subject_alternative_name()
            .expect("SAN")
            .expect("a SAN extension");
        use x509_parser::extensions::GeneralName;
        let names = &san.value.general_names;
        assert!(names.contains(&GeneralName::DNSName("node-a")), "{names:?}");
        assert!(
            names.contains(&GeneralName::IPAddress(&[10, 1, 2, 3])),
            "{names:?}"
        );
        let (cn, _) = cert_user(&der).expect("subject");
        assert!(cn.starts_with("node-a@"), "{cn}");
    }
}
