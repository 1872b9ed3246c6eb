//! kubelet's flags for its HTTPS API, under kubelet's names.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::ArgAction;

use super::auth::AuthzMode;
use super::{ApiError, Config, tls};

/// kubelet's default API port.
pub const DEFAULT_PORT: u16 = 10250;

/// The kubelet API's flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ApiArgs {
    /// The IP the kubelet API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// The kubelet API's port [default: 10250 when joined to a cluster;
    /// off otherwise unless given]. 0 disables it.
    #[arg(long)]
    pub port: Option<u16>,
    /// The serving certificate (chain) in PEM; without it a self-signed one
    /// is made in --cert-dir and reused.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's key in PEM.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// The node's certificates: the client pairs from TLS bootstrap and
    /// rotation (kubelet-client-*.pem), the cluster-issued serving pairs
    /// (kubelet-server-*.pem), else the self-signed serving certificate
    /// [default: <state>/pki].
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// CA bundle that verifies client certificates (user = CN, groups = O).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Let requests that no authenticator accepts in as system:anonymous
    /// (still subject to authorization). Off: they get 401.
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Authenticate bearer tokens with TokenReview (needs the apiserver).
    #[arg(long, num_args = 0..=1, default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub authentication_token_webhook: bool,
    /// AlwaysAllow, or Webhook: SubjectAccessReview (needs the apiserver).
    #[arg(long, value_enum, default_value = "AlwaysAllow")]
    pub authorization_mode: AuthzMode,
}

impl ApiArgs {
    /// Where to serve, or `None` when the API is off: it runs when joined
    /// to a cluster (`joined`) or when --port is given, and --port 0
    /// turns it off.
    pub fn listen(&self, joined: bool) -> Option<SocketAddr> {
        let port = match self.port {
            Some(0) => return None,
            Some(p) => p,
            None if joined => DEFAULT_PORT,
            None => return None,
        };
        Some(SocketAddr::new(self.address, port))
    }

    /// Refuse, before anything starts, webhook modes without an apiserver
    /// client (`has_client`).
    pub fn check(&self, has_client: bool) -> Result<(), super::auth::AuthError> {
        if has_client {
            return Ok(());
        }
        super::auth::Auth::new(
            None,
            String::new(),
            self.authentication_token_webhook,
            self.anonymous_auth,
            self.authorization_mode,
        )
        .map(|_| ())
    }

    /// The cert dir (`--cert-dir`, default `<state>/pki`).
    pub fn cert_dir(&self, state: &Path) -> PathBuf {
        self.cert_dir.clone().unwrap_or_else(|| state.join("pki"))
    }

    /// The API's configuration. The serving certificate is `cluster`'s
    /// (`--rotate-server-certificates`) when given, else the certificate
    /// files, else a self-signed one made (or reused) in the cert dir.
    pub fn config(
        &self,
        addr: SocketAddr,
        node: &str,
        state: &Path,
        cluster: Option<std::sync::Arc<crate::node::certs::serving::ServingCert>>,
    ) -> Result<Config, ApiError> {
        let serving = match (cluster, &self.tls_cert_file, &self.tls_private_key_file) {
            (Some(c), _, _) => tls::Serving::Cluster(c),
            (None, Some(c), Some(k)) => tls::Serving::Files {
                cert: c.clone(),
                key: k.clone(),
            },
            _ => {
                let dir = self.cert_dir(state);
                let mut ips = host_ips();
                if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
                    ips.push(addr.ip());
                }
                let (cert, key) = tls::self_signed(&dir, node, &ips)?;
                tls::Serving::Files { cert, key }
            }
        };
        Ok(Config {
            node_name: node.to_string(),
            addr,
            serving,
            client_ca: self.client_ca_file.clone(),
            anonymous: self.anonymous_auth,
            token_webhook: self.authentication_token_webhook,
            authorization: self.authorization_mode,
        })
    }
}

/// The host's addresses (every interface's, loopback included), for the
/// self-signed certificate's IP SANs.
pub fn host_ips() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(sa) = a.address else { continue };
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            // Link-local v6 addresses need a zone: no use in a certificate.
            let link_local = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if !link_local && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        api: ApiArgs,
    }

    #[test]
    fn flags_parse_as_kubelet_spells_them() {
        let c = Cli::parse_from([
            "x",
            "--port",
            "10250",
            "--anonymous-auth=false",
            "--authentication-token-webhook",
            "--authorization-mode",
            "Webhook",
        ]);
        assert!(!c.api.anonymous_auth && c.api.authentication_token_webhook);
        assert_eq!(c.api.authorization_mode, AuthzMode::Webhook);
        assert_eq!(
            c.api.listen(false),
            Some("0.0.0.0:10250".parse().expect("addr"))
        );
        let c = Cli::parse_from(["x"]);
        assert_eq!(c.api.listen(false), None, "off unless joined or --port");
        assert_eq!(c.api.listen(true).map(|a| a.port()), Some(DEFAULT_PORT));
        let c = Cli::parse_from(["x", "--port", "0", "--anonymous-auth"]);
        assert!(c.api.anonymous_auth);
        assert_eq!(c.api.listen(true), None, "--port 0 disables");
        assert!(
            Cli::try_parse_from(["x", "--tls-cert-file", "c"]).is_err(),
            "key required"
        );
    }
}
