//! The node's pod status writes against a real kube-apiserver, with the
//! node's own credentials: a write from a stale copy (someone else updated
//! the pod since) is retried with a fresh one; a terminal phase is never
//! regressed; a pod replaced under the same name is not written.

use husk_tests::control_plane::ControlPlane;
use husk_tests::pods::NODE;
use husk_tests::require_control_plane;
use husklet::node::status::{self, StatusError};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::Api;

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
  "spec":{"nodeName":"test-node",
          "containers":[{"name":"c","image":"busybox:latest"}]}}"#;

/// Move this thread into the control plane's network namespace, where its
/// apiserver listens (the test's own thread; sockets made later are there).
fn enter(cp: &ControlPlane) {
    let ns = std::fs::File::open(cp.netns_path()).expect("open netns");
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

fn running() -> PodStatus {
    PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    }
}

#[test]
fn a_conflicting_status_write_is_retried_with_a_fresh_copy() {
    require_control_plane!();
    let cp = ControlPlane::start();
    assert_eq!(cp.node(), NODE);
    cp.apply(POD);
    enter(&cp);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = husklet::node::client::from_kubeconfig(&cp.node_kubeconfig())
            .await
            .expect("node client");
        let api: Api<Pod> = Api::namespaced(client, "default");
        let stale = api.get("p").await.expect("get pod");
        let uid = stale.metadata.uid.clone().expect("uid");
        // Another writer updates the pod: the copy above is now stale.
        cp.kubectl_ok(&["label", "pod", "p", "touched=yes"]);
        let (written, attempts) = status::write(&api, stale.clone(), &uid, &running())
            .await
            .expect("status write");
        assert_eq!(attempts, 2, "one conflict, then a fresh copy");
        assert_eq!(
            written.status.and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        assert_eq!(
            written.metadata.labels.unwrap_or_default()["touched"],
            "yes",
            "the other writer's change is kept"
        );

        // A terminal phase stays: a late Running does not undo Succeeded.
        let done = PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        };
        let fresh = api.get("p").await.expect("get pod");
        status::write(&api, fresh, &uid, &done)
            .await
            .expect("write Succeeded");
        let fresh = api.get("p").await.expect("get pod");
        let (after, _) = status::write(&api, fresh, &uid, &running())
            .await
            .expect("write Running");
        assert_eq!(
            after.status.and_then(|s| s.phase).as_deref(),
            Some("Succeeded")
        );

        // The pod is replaced by another of the same name: the old one's
        // status is not written over it.
        cp.kubectl_ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
        cp.apply(POD);
        let err = status::write(&api, stale, &uid, &running())
            .await
            .expect_err("the old pod is gone");
        assert!(matches!(err, StatusError::Gone(_)), "{err}");
        let new = api.get("p").await.expect("get pod");
        assert_ne!(new.metadata.uid.as_deref(), Some(uid.as_str()));
        assert_ne!(new.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    });
}
