//! husklet: the node agent library (image store, CRI service, pods).

pub mod image;
pub mod stream;
