//! husk-runtime: the OCI runtime library behind the `husk` CLI.
//!
//! Single-threaded by design: no async runtime, so that forking and cloning
//! container processes is always safe.

pub mod cgroups;
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
