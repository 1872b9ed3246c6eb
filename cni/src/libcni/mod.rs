//! Driving CNI plugins the way libcni does: config lists from a directory,
//! plugin lookup in CNI_PATH, chaining with `prevResult`, capability
//! arguments, and a result cache for CHECK and DEL.
//!
//! ```no_run
//! use husk_cni::libcni::{CniConfig, RuntimeConf};
//! let cni = CniConfig::new(vec!["/opt/cni/bin".into()], "/var/lib/cni".into());
//! let lists = CniConfig::load_dir("/etc/cni/net.d".as_ref()).unwrap();
//! let net = cni.network(lists[0].clone());
//! let rt = RuntimeConf::new("abc", "/run/netns/abc", "eth0");
//! let result = net.add(&rt).unwrap();
//! net.del(&rt).unwrap();
//! ```
//!
//! The calls block while plugins run; async callers use
//! `tokio::task::spawn_blocking` (the [`Network`] is cheap to clone).

mod cache;
mod conflist;
mod exec;
mod network;

pub use cache::ResultCache;
pub use conflist::{ConfListError, NetworkConfigList};
pub use exec::{ExecError, InvokeArgs, PluginExec};
pub use network::{Attachment, CniConfig, Network, NetworkError, RuntimeConf};
