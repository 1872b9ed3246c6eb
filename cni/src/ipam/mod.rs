//! IP address management: the built-in `host-local` (same semantics and
//! on-disk layout as the reference plugin) and delegation to any other
//! IPAM plugin found in CNI_PATH.

pub mod alloc;
pub mod config;
pub mod delegate;
pub mod store;

pub use alloc::{Range, RangeSet};
pub use config::HostLocalConfig;
pub use store::{AllocStore, StoreError};
