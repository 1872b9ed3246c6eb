//! husk-cni: CNI types, libcni-style plugin invocation, a host-local IPAM
//! store, and the `husk-bridge` / `husk-portmap` plugins.
//!
//! - [`types`]: the spec's documents (config, result, error JSON, versions).
//! - [`libcni`]: driving any CNI plugin chain (`CniConfig`, `Network`).
//! - [`plugin`]: the plugin side of the protocol.
//! - [`ipam`]: host-local address management with on-disk, locked allocations.
//! - [`netlink`], [`iptables`], [`nftgen`]: the kernel interfaces the plugins use.
//! - [`bridge`], [`portmap`]: the two plugins; [`registry`]: their per-netns
//!   lock and the cache of portmap's rules that spares ADD an `iptables-save`.
//!
//! Errors print each cause once: a cause is part of its error's message (a
//! `cause` field, not a `#[source]`), since the text alone travels on as a
//! CNI error's `msg`.

pub mod bridge;
pub mod ipam;
pub mod iptables;
pub mod libcni;
pub mod netlink;
pub mod nftgen;
pub mod plugin;
pub mod portmap;
pub mod registry;
pub mod types;

#[cfg(test)]
mod chain_tests;
