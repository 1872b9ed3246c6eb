//! Static pods on husklet, end to end: what Kubernetes documents for a
//! pod's lifecycle, checked through `husklet pods` as a user sees it.

use husk_tests::pods::PodNode;

/// A pod node on husklet's own CRI service.
macro_rules! pod_node {
    () => {
        PodNode::start()
    };
}

include!("pod_cases/lifecycle.rs");
