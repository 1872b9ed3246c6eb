//! The labels and annotations the kubelet puts on sandboxes and containers.
//!
//! They are how a restarted husklet (or kubelet, on another runtime) finds
//! a pod's sandbox and containers again, so they are kubelet's own keys:
//! `crictl ps` on a node shows the same names whichever agent made them.

/// Pod name (sandbox and container label).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod namespace (sandbox and container label).
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod UID (sandbox and container label).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name (container label).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Restart count of this container instance (container annotation).
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Hash of the container's spec: a changed spec restarts the container.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Where the termination message is read from (container annotation).
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// `File` or `FallbackToLogsOnError` (container annotation).
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// The pod's grace period, for a runtime-side stop (container annotation).
pub const TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
/// husklet's own: `init`, `sidecar` or `app`, so a recovered container's
/// role is known without the spec.
pub const CONTAINER_KIND: &str = "husk.io/container-kind";
/// husklet's own sandbox label: the pod layer made this sandbox, so it may
/// clean it up when no source lists the pod any more.
pub const MANAGED_BY: &str = "husk.io/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGED_BY_PODS: &str = "husklet-pods";
