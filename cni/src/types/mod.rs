//! The CNI specification's data types: versions, network configs, results,
//! and the error JSON.

pub mod config;
pub mod error;
pub mod result;
pub mod validate;
pub mod version;

pub use config::{NetConf, PortMapping};
pub use error::{CniError, ErrorCode};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{CniVersion, SUPPORTED_VERSIONS};
