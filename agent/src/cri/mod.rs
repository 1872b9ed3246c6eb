//! The CRI v1 service: the [`RuntimeService`] and [`ImageService`] traits,
//! their in-process implementation ([`Cri`]) over the image store, pod
//! sandboxes and husk-shim, and the tonic adapter that serves them on a unix
//! socket.
//!
//! State under `--state` (default `/run/husk`):
//! ```text
//! sandboxes/<id>.json        one record per sandbox (atomic rewrite)
//! sandboxes/<id>/            hostname, hosts, resolv.conf
//! ns/<id>/{net,ipc,uts,pid}  pinned namespaces (bind mounts; pid.init: the pid ns's init)
//! containers/<id>.json       one record per container
//! containers/<id>/bundle/    the OCI bundle (config.json)
//! shim/<id[..32]>/           the container's husk-shim dir (short: socket paths)
//! exec/<rand32>/             an exec session: process.json, log, shim dir `s`
//! runtime/                   husk's --root
//! cni/                       the CNI result cache
//! ```

pub mod config;
pub mod container;
pub mod error;
pub mod events;
pub mod exec;
pub mod filter;
pub mod grpc;
pub mod images;
pub mod limits;
pub mod pidns;
pub mod pods;
pub mod record;
pub mod recover;
pub mod remote;
pub mod resources;
pub mod runtime;
pub mod seccomp;
pub mod security;
pub mod server;
pub mod service;
pub mod spec;
pub mod stats;
pub mod streaming;
pub mod update;

pub use config::CriConfig;
pub use error::CriError;
pub use runtime::Cri;
pub use service::{CriResult, ImageService, RuntimeService};
