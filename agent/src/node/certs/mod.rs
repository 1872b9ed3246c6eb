//! The node's certificates from the cluster, as kubelet gets them:
//!
//! - TLS bootstrap (`--bootstrap-kubeconfig`, [`bootstrap`]): with a
//!   bootstrap token, a CertificateSigningRequest for the node's client
//!   certificate; the issued pair goes into the cert dir ([`store`]) and a
//!   kubeconfig is written that points at it;
//! - client certificate rotation (`--rotate-certificates`, [`rotation`]):
//!   at 70–90 % of the certificate's lifetime a new key and CSR, made with
//!   the node's current credentials; the running clients switch to it
//!   ([`identity`]) without a restart;
//! - the kubelet API's serving certificate (`--rotate-server-certificates`,
//!   [`serving`]): a `kubernetes.io/kubelet-serving` CSR, rotated the same
//!   way, picked up by the TLS acceptor.
//!
//! The CSRs themselves are made and awaited in [`csr`].

pub mod bootstrap;
pub mod csr;
pub mod identity;
pub mod rotation;
pub mod serving;
pub mod store;

use std::path::PathBuf;

/// What can go wrong getting or keeping the node's certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("{what}")]
    Invalid { what: String },
    #[error("generate a key and certificate request")]
    Generate(#[source] rcgen::Error),
    #[error("{what}")]
    Tls {
        what: String,
        #[source]
        source: tokio_rustls::rustls::Error,
    },
    #[error("kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("{what}")]
    Client {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The CSR was denied (by an approver) or failed (at the signer).
    #[error("certificate signing request {name} was {state}: {reason}: {message}")]
    Refused {
        name: String,
        state: String,
        reason: String,
        message: String,
    },
    #[error("certificate signing request {name}: no certificate issued within {waited:?}")]
    Timeout {
        name: String,
        waited: std::time::Duration,
    },
}

impl CertError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CertError {
        let path = path.into();
        move |source| CertError::Io { path, source }
    }
}
