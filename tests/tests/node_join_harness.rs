//! The control-plane harness itself: etcd + kube-apiserver with the Node
//! authorizer and NodeRestriction, and the credentials it makes.

use husk_tests::control_plane::ControlPlane;

#[test]
fn node_credentials_are_restricted_to_the_node() {
    husk_tests::require_control_plane!();
    let cp = ControlPlane::start();
    let lease = |name: &str| {
        format!(
            r#"{{"apiVersion":"coordination.k8s.io/v1","kind":"Lease",
                "metadata":{{"name":"{name}","namespace":"kube-node-lease"}},
                "spec":{{"holderIdentity":"{name}"}}}}"#
        )
    };
    let own = cp.kubectl_as(
        &cp.node_kubeconfig(),
        &["create", "-f", "-"],
        Some(&lease(cp.node())),
    );
    assert!(
        own.status.success(),
        "the node may create its own lease: {}",
        String::from_utf8_lossy(&own.stderr)
    );
    let other = cp.kubectl_as(
        &cp.node_kubeconfig(),
        &["create", "-f", "-"],
        Some(&lease("someone-else")),
    );
    assert!(!other.status.success(), "another node's lease is refused");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains("forbidden"), "{err}");
    // The default namespace is ready for pods (ServiceAccount, root CA).
    let sa = cp.get_json(&["serviceaccount", "default", "-n", "default"]);
    assert_eq!(sa["metadata"]["name"], "default");
    let ca = cp.get_json(&["configmap", "kube-root-ca.crt", "-n", "default"]);
    assert!(
        ca["data"]["ca.crt"]
            .as_str()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
    );
}
