//! husk-runtime: the OCI runtime library behind the `husk` CLI.
//!
//! Single-threaded by design: no async runtime, so that forking and cloning
//! container processes is always safe.

/// The cgroup manager lives in its own crate (shared with husklet); the
/// re-export keeps `crate::cgroups::…` paths working here.
pub use husk_cgroups as cgroups;

pub mod channel;
pub mod cli;
pub mod config;
pub mod console;
pub mod container;
pub mod hooks;
pub mod json_path;
pub mod logging;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod state;
pub mod sys;
pub mod terminal;
pub mod trampoline;

#[cfg(test)]
mod chain_tests;
