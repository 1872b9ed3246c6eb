//! The CRI v1 service: the [`RuntimeService`] and [`ImageService`] traits,
//! their in-process implementation ([`Cri`]) over the image store, pod
//! sandboxes and husk-shim, and the tonic adapter that serves them on a unix
//! socket.
//!
//! State under `--state` (default `/run/husk`):
//! ```text
//! sandboxes/<id>.json        one record per sandbox (atomic rewrite)
//! sandboxes/<id>/            hostname, hosts, resolv.conf
//! ns/<id>/{net,ipc,uts}      pinned namespaces (bind mounts)
//! containers/<id>.json       one record per container
//! containers/<id>/           bundle (config.json) and shim dir
//! exec/<id>/                 exec sessions' shim dirs and logs
//! runtime/                   husk's --root
//! cni/                       the CNI result cache
//! ```

pub mod config;
pub mod container;
pub mod error;
pub mod exec;
pub mod filter;
pub mod grpc;
pub mod images;
pub mod pods;
pub mod record;
pub mod runtime;
pub mod server;
pub mod service;
pub mod spec;

pub use config::CriConfig;
pub use error::CriError;
pub use runtime::Cri;
pub use service::{CriResult, ImageService, RuntimeService};
