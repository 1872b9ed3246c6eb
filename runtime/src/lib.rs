//! husk-runtime: the OCI runtime library behind the `husk` CLI.
//!
//! Single-threaded by design: no async runtime, so that forking and cloning
//! container processes is always safe.

pub mod cgroups;
pub mod hooks;
pub mod seccomp;
