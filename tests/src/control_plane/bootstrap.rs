//! TLS bootstrap as kubeadm sets it up: a bootstrap token (a
//! `bootstrap-token-<id>` Secret in kube-system, needs
//! [`super::Config::bootstrap_token_auth`]), the ClusterRoleBindings that
//! let its group create node client CSRs (and nodes renew theirs), and a
//! bootstrap kubeconfig with the token.

use std::path::PathBuf;

use super::{ControlPlane, Credentials};

/// The group kubeadm's default node tokens carry.
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

impl ControlPlane {
    /// Create a bootstrap token (`<id>.<secret>`) valid for an hour for
    /// authentication, in group [`BOOTSTRAP_GROUP`], with kubeadm's
    /// ClusterRoleBindings (made once: applying is idempotent).
    pub fn bootstrap_token(&self, id: &str, secret: &str) -> String {
        assert!(
            self.config.bootstrap_token_auth,
            "start the control plane with bootstrap_token_auth"
        );
        let expiry = std::process::Command::new("date")
            .args(["-u", "-d", "+1 hour", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .expect("run date");
        let expiry = String::from_utf8_lossy(&expiry.stdout).trim().to_string();
        self.apply(&format!(
            r#"{{"apiVersion":"v1","kind":"Secret","type":"bootstrap.kubernetes.io/token",
              "metadata":{{"name":"bootstrap-token-{id}","namespace":"kube-system"}},
              "stringData":{{"token-id":"{id}","token-secret":"{secret}","expiration":"{expiry}",
                "usage-bootstrap-authentication":"true","usage-bootstrap-signing":"true",
                "auth-extra-groups":"{BOOTSTRAP_GROUP}"}}}}"#
        ));
        let binding = |name: &str, role: &str, group: &str| {
            format!(
                r#"{{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
                  "metadata":{{"name":"{name}"}},
                  "roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"{role}"}},
                  "subjects":[{{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"{group}"}}]}}"#
            )
        };
        self.apply(&format!(
            r#"{{"apiVersion":"v1","kind":"List","items":[{},{},{}]}}"#,
            binding(
                "kubeadm:kubelet-bootstrap",
                "system:node-bootstrapper",
                BOOTSTRAP_GROUP
            ),
            binding(
                "kubeadm:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                BOOTSTRAP_GROUP
            ),
            binding(
                "kubeadm:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                "system:nodes"
            ),
        ));
        format!("{id}.{secret}")
    }

    /// A bootstrap kubeconfig with `token`, in the control plane's dir.
    pub fn bootstrap_kubeconfig(&self, token: &str) -> PathBuf {
        let path = self.dir.path().join("bootstrap.kubeconfig");
        self.write_kubeconfig(&path, Credentials::Token(token));
        path
    }
}
