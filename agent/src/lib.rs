//! husklet: the node agent library (image store, CRI service, pods).

pub mod cri;
pub mod image;
pub mod node;
pub mod pod;
pub mod sandbox;
pub mod source;
pub mod stream;
