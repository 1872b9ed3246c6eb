//! Errors of the node's control-plane join.

use std::path::PathBuf;

/// What can go wrong talking to the control plane.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client could not be made from the kubeconfig.
    #[error("client for {path}")]
    Client {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
    /// The node's certificates (TLS bootstrap, rotation).
    #[error("node certificates")]
    Certs(#[from] super::certs::CertError),
    /// An apiserver call failed.
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

impl NodeError {
    /// An apiserver call's failure, naming the call and object.
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        NodeError::Api {
            what: what.into(),
            source,
        }
    }
}

/// The HTTP status of an apiserver error response, if it is one.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}
