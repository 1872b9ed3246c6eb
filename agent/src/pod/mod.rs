//! The kubelet layer's foundations (WIP).

pub mod backoff;
pub mod defaults;
pub mod downward;
pub mod env;
pub mod expand;
pub mod field;
pub mod hook;
pub mod manifest;
pub mod objects;
pub mod probe;
pub mod qos;
pub mod quantity;
pub mod termination;
pub mod validate;
pub mod volume;
