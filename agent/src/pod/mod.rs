//! The kubelet layer: what husklet does with a pod, built on the CRI traits
//! ([`crate::cri::RuntimeService`], [`crate::cri::ImageService`]) only —
//! never the runtime, shim, CNI or sandboxes directly.
//!
//! This module holds the parts that need no pod worker; the workers and the
//! status manager build on them. How a worker is meant to use them, per pod:
//!
//! 1. **Admit**: a source ([`crate::source`]) hands over a [`Pod`] already
//!    decoded strictly ([`manifest::parse`]), defaulted ([`defaults::apply`])
//!    and validated ([`validate::pod`]); errors are [`field::FieldErrors`]
//!    with Kubernetes field paths.
//! 2. **Sandbox**: `RunPodSandbox` with `linux.cgroup_parent =`
//!    [`qos::pod_cgroup_parent`] and the QoS class from [`qos::qos_class`]
//!    (also `status.qosClass`).
//! 3. **Volumes**: [`volume::setup`] (idempotent; call again when
//!    [`crate::source::ConfigDir`] reports a changed object to refresh
//!    contents), with [`downward::PodFacts`] (pod IPs from the sandbox, node
//!    IPs and allocatable) and an [`objects::ObjectStore`].
//! 4. **Each container** (init containers one at a time, then app
//!    containers; sidecars are init containers with `restartPolicy: Always`):
//!    - env: [`env::environment`] (its `warnings` become events), then
//!      [`env::command_and_args`];
//!    - mounts: [`volume::PodVolumes::mounts`] plus the termination log from
//!      [`termination::prepare`];
//!    - resources: [`qos::linux_resources`] (cpu shares/quota, memory,
//!      huge pages, `oom_score_adj`; the CRI layer clamps oom_score_adj where
//!      the host forbids lowering it);
//!    - `CreateContainer`/`StartContainer`, then the postStart hook
//!      ([`hook::run`]); a failed hook kills the container.
//! 5. **Probes**: one [`probe::tracker::Tracker`] per container and probe
//!    kind; every `period()` call `due(since_start, started)`, run
//!    [`probe::run`] with a [`probe::Target`], feed `record(outcome)` and act
//!    on the [`probe::tracker::Action`] (Restart: kill and restart;
//!    Changed: update Ready/Started). `reset()` when a new container starts.
//! 6. **Restarts**: [`backoff::Backoff`] (`remaining` before a restart,
//!    `restarted` after one; [`backoff::message`] for CrashLoopBackOff).
//! 7. **Exit**: [`termination::message`] for the terminated state.
//! 8. **Termination**: preStop ([`hook::run`], bounded by the grace period
//!    by the caller), `StopContainer` with the remaining grace, then
//!    [`volume::teardown`].
//!
//! [`Pod`]: k8s_openapi::api::core::v1::Pod

pub mod backoff;
pub mod config;
pub mod defaults;
pub mod downward;
pub mod env;
pub mod events;
pub mod expand;
pub mod field;
pub mod hook;
pub mod host;
pub mod keys;
mod lifecycle;
pub mod manager;
pub mod manifest;
pub mod node_host;
pub mod objects;
pub mod probe;
pub mod probing;
pub mod qos;
pub mod quantity;
pub mod report_file;
pub mod status;
pub mod termination;
pub mod token;
pub mod validate;
pub mod volume;
pub mod worker;

use k8s_openapi::api::core::v1::Pod;

/// Whether `pod` is a static pod (from a manifest file, not the API
/// server: `kubernetes.io/config.source` is set and not `api`).
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api")
}

#[cfg(test)]
mod chain_tests;
