//! A [`kube::Client`] from a kubeconfig (`--kubeconfig`): client
//! certificates or a bearer token, the cluster's CA, its server URL.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::NodeError;

/// A client with the kubeconfig's current context.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, NodeError> {
    let kc = |source| NodeError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(kc)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(kc)?;
    kube::Client::try_from(config).map_err(|source| NodeError::Client {
        path: path.to_path_buf(),
        source,
    })
}
