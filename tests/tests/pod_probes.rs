//! Static pods on husklet's own CRI: see pod_cases/probes.rs.

use husk_tests::pods::PodNode;

/// A pod node on husklet's own CRI service.
macro_rules! pod_node {
    () => {
        PodNode::start()
    };
}

include!("pod_cases/probes.rs");
