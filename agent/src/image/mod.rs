//! The image store: content-addressed blobs, image metadata, layer snapshots,
//! registry pulls, archive imports and container rootfs overlays.

pub mod content;
pub mod digest;
pub mod fsutil;
pub mod manifest;
pub mod meta;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod unpack;
