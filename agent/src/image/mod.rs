//! The image store: content-addressed blobs, image metadata, layer snapshots,
//! registry pulls, archive imports and container rootfs overlays.
//!
//! Errors print each cause once: an OS, JSON or HTTP cause is part of its
//! error's message (a `cause` field, not a `#[source]`), since the text alone
//! travels on (a pull's failure, the CRI's status message); only a limit is
//! kept as a `#[source]` and left out of the message.

pub mod content;
pub mod digest;
pub mod fsutil;
pub mod image_file;
pub mod import;
pub mod layer;
pub mod manifest;
pub mod meta;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod snapshot;
pub mod space;
pub mod store;
pub mod unpack;

#[cfg(test)]
mod chain_tests;

pub use digest::Digest;
pub use manifest::RunConfig;
pub use meta::{ImageRecord, LayerRecord};
pub use pull::PullOptions;
pub use reference::Reference;
pub use registry::{Credentials, RegistryConfig};
pub use rootfs::RootfsMount;
pub use space::{Limits, MinFree};
pub use store::{FsUsage, ImageDetails, ImageError, ImageStore, PruneReport};
