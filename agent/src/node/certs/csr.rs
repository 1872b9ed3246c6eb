//! CertificateSigningRequests (certificates.k8s.io/v1) as kubelet makes
//! them: a fresh ECDSA P-256 key, a PKCS#10 request with the node's
//! subject (and, for serving, its names), then a watch until the request
//! is issued, denied or failed.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, PostParams};
use sha2::Digest as _;

use super::CertError;

/// The signer of kubelet client certificates.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelet serving certificates.
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// The group every node's certificate names.
pub const NODES_GROUP: &str = "system:nodes";

/// What to request.
#[derive(Clone, Debug)]
pub struct Request {
    pub signer: &'static str,
    /// The node's name: CN `system:node:<node>`, O `system:nodes`.
    pub node: String,
    /// Subject alternative names (serving certificates).
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// `spec.usages`.
    pub usages: Vec<&'static str>,
    /// Name the object after the key and subject (`node-csr-<digest>`, as
    /// kubelet's TLS bootstrap does) rather than `csr-<random>`.
    pub digested_name: bool,
}

impl Request {
    /// A node client certificate (ECDSA key: no key encipherment).
    pub fn client(node: &str) -> Request {
        Request {
            signer: CLIENT_SIGNER,
            node: node.to_string(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usages: vec!["digital signature", "client auth"],
            digested_name: false,
        }
    }

    /// A kubelet serving certificate for the node's names and addresses.
    pub fn serving(node: &str, dns_names: Vec<String>, ips: Vec<IpAddr>) -> Request {
        Request {
            signer: SERVING_SIGNER,
            node: node.to_string(),
            dns_names,
            ips,
            usages: vec!["digital signature", "server auth"],
            digested_name: false,
        }
    }

    fn common_name(&self) -> String {
        format!("system:node:{}", self.node)
    }
}

/// An issued certificate (PEM, as the signer wrote it) and its key (PEM).
pub struct Issued {
    pub cert_pem: Vec<u8>,
    pub key_pem: String,
    /// The CSR object's name.
    pub name: String,
}

/// Make a key, submit the CSR with `client`, and wait up to `timeout` for
/// the certificate.
pub async fn request(
    client: &kube::Client,
    req: &Request,
    timeout: Duration,
) -> Result<Issued, CertError> {
    let key = rcgen::KeyPair::generate().map_err(CertError::Generate)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, NODES_GROUP);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, req.common_name());
    for name in &req.dns_names {
        let n = name.clone().try_into().map_err(CertError::Generate)?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(n));
    }
    for ip in &req.ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let pem = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(CertError::Generate)?;
    let mut csr = CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: req.signer.to_string(),
            usages: Some(req.usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    if req.digested_name {
        csr.metadata.name = Some(digested_name(
            &spki,
            &req.common_name(),
            &[NODES_GROUP],
            &req.usages,
        ));
    } else {
        csr.metadata.generate_name = Some("csr-".into());
    }
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|source| CertError::Api {
            what: format!("create a {} certificate signing request", req.signer),
            source,
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, signer = req.signer, "certificate signing request created, waiting for it to be issued");
    let done = kube::runtime::wait::await_condition(
        api,
        &name,
        |c: Option<&CertificateSigningRequest>| {
            c.is_some_and(|c| issued(c).is_some() || refused(c).is_some())
        },
    );
    let csr = match tokio::time::timeout(timeout, done).await {
        Err(_) => {
            return Err(CertError::Timeout {
                name,
                waited: timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(CertError::Invalid {
                what: format!("watch certificate signing request {name}: {e}"),
            });
        }
        Ok(Ok(None)) => {
            return Err(CertError::Invalid {
                what: format!("certificate signing request {name} was deleted"),
            });
        }
        Ok(Ok(Some(c))) => c,
    };
    if let Some((state, reason, message)) = refused(&csr) {
        return Err(CertError::Refused {
            name,
            state,
            reason,
            message,
        });
    }
    let cert_pem = issued(&csr).unwrap_or_default();
    // The certificate must be for our key (kubelet's tls.X509KeyPair check).
    let what = std::path::PathBuf::from(format!("certificatesigningrequests/{name}"));
    let mut pem = cert_pem.clone();
    pem.extend_from_slice(key.serialize_pem().as_bytes());
    let pair = super::store::Pair::parse(&pem, &what)?;
    let leaf = pair
        .chain
        .first()
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let spki_matches = x509_parser::parse_x509_certificate(&leaf)
        .map(|(_, x)| x.public_key().raw == spki.as_slice())
        .unwrap_or(false);
    if !spki_matches {
        return Err(CertError::Invalid {
            what: format!(
                "certificate signing request {name}: the issued certificate is not for the requested key"
            ),
        });
    }
    tracing::info!(csr = %name, "certificate issued");
    Ok(Issued {
        cert_pem,
        key_pem: key.serialize_pem(),
        name,
    })
}

/// The issued certificate, once `status.certificate` is set.
fn issued(c: &CertificateSigningRequest) -> Option<Vec<u8>> {
    c.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .filter(|b| !b.0.is_empty())
        .map(|b| b.0.clone())
}

/// A Denied or Failed condition: (type, reason, message).
fn refused(c: &CertificateSigningRequest) -> Option<(String, String, String)> {
    c.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|k| matches!(k.type_.as_str(), "Denied" | "Failed") && k.status != "False")
        .map(|k| {
            (
                k.type_.to_lowercase(),
                k.reason.clone().unwrap_or_default(),
                k.message.clone().unwrap_or_default(),
            )
        })
}

/// kubelet's bootstrap CSR name: `node-csr-` and the unpadded URL-safe
/// base64 of SHA-512/256 over the public key (DER), CN, each O and each
/// usage, each base64-encoded and followed by `|`.
pub fn digested_name(public_key_der: &[u8], cn: &str, orgs: &[&str], usages: &[&str]) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut h = sha2::Sha512_256::new();
    let mut write = |data: &[u8]| {
        h.update(enc.encode(data).as_bytes());
        h.update(b"|");
    };
    write(public_key_der);
    write(cn.as_bytes());
    for o in orgs {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", enc.encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digested_names_depend_on_every_input() {
        let a = digested_name(b"key", "system:node:a", &["system:nodes"], &["client auth"]);
        assert!(a.starts_with("node-csr-"), "{a}");
        // 32 bytes of digest: 43 unpadded base64 characters.
        assert_eq!(a.len(), "node-csr-".len() + 43, "{a}");
        assert_eq!(
            a,
            digested_name(b"key", "system:node:a", &["system:nodes"], &["client auth"])
        );
        assert_ne!(
            a,
            digested_name(
                b"key2",
                "system:node:a",
                &["system:nodes"],
                &["client auth"]
            )
        );
        // The delimiter keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(
            digested_name(b"k", "ab", &["c"], &[]),
            digested_name(b"k", "a", &["bc"], &[])
        );
    }
}
