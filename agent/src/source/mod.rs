//! Pod sources: where pods and their ConfigMaps/Secrets come from.
//!
//! - [`file::StaticPods`]: the static pod dir (`--pod-manifest-path`),
//!   typed [`file::PodEvent`]s (add / update / remove).
//! - [`config::ConfigDir`]: a dir of ConfigMaps and Secrets, kept in a
//!   [`config::SharedObjects`] store that implements
//!   [`crate::pod::objects::ObjectStore`].
//!
//! Both poll their directory ([`dir::ManifestDir`]), re-parsing a file
//! only when its content hash changed; a bad file is reported once per
//! content, with file, document and field path, and changes nothing.
//! An apiserver watch will be a third source with the same event types.

pub mod config;
pub mod dir;
pub mod file;

pub use config::{ConfigDir, SharedObjects};
pub use dir::SourceError;
pub use file::{PodEvent, StaticPods};
