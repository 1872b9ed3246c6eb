//! The tests of pod_containers.rs with husklet's pod layer on containerd (runc,
//! the reference CNI plugins) through `--container-runtime-endpoint`.

use husk_tests::pods::PodNode;

/// A pod node whose pods run on containerd; a visible skip when it cannot run.
macro_rules! pod_node {
    () => {
        match PodNode::start_containerd() {
            Ok(n) => n,
            Err(why) => husk_tests::skip!("tool", "containerd: {why}"),
        }
    };
}

include!("pod_cases/containers.rs");
