//! The CNI error JSON (`{"cniVersion","code","msg","details"}`) and the
//! spec's well-known error codes.

use serde::{Deserialize, Serialize};

/// Error codes reserved by the CNI spec (plugins use 100 and up for their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion = 1,
    /// 2: unsupported field in network configuration.
    UnsupportedField = 2,
    /// 3: container unknown or does not exist.
    UnknownContainer = 3,
    /// 4: invalid necessary environment variables.
    InvalidEnvironment = 4,
    /// 5: I/O failure.
    IoFailure = 5,
    /// 6: failed to decode content.
    DecodingFailure = 6,
    /// 7: invalid network config.
    InvalidNetworkConfig = 7,
    /// 11: try again later.
    TryAgainLater = 11,
    /// 50: the plugin is not available.
    PluginNotAvailable = 50,
    /// 51: the plugin is not available, existing containers keep connectivity.
    PluginNotAvailableLimited = 51,
    /// 100: husk plugins' generic failure (netlink, iptables, IPAM store).
    Internal = 100,
    /// 101: a CHECK found that the attachment differs from what ADD made.
    CheckFailed = 101,
    /// 102: the address range has no free address.
    NoAddressAvailable = 102,
    /// 103: a hostPort is already mapped to another container.
    HostPortConflict = 103,
}

/// The error a plugin prints on stdout (exit status 1), and the error the
/// invocation library returns when a plugin fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    /// The spec version of the error document.
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    /// The error code (see [`ErrorCode`]).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Longer details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with a spec code and a message.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            cni_version: String::new(),
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Add details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Set the version the document is written in.
    pub fn with_version(mut self, v: impl Into<String>) -> Self {
        self.cni_version = v.into();
        self
    }

    /// Map a JSON decoding error: syntax errors are code 6, well-formed JSON
    /// with missing or mistyped fields is an invalid config (code 7).
    pub fn from_json(what: &str, e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let code = match e.classify() {
            Category::Data => ErrorCode::InvalidNetworkConfig,
            _ => ErrorCode::DecodingFailure,
        };
        CniError::new(code, format!("{what}: {e}"))
    }

    /// An internal failure (code 100).
    pub fn internal(msg: impl Into<String>) -> Self {
        CniError::new(ErrorCode::Internal, msg)
    }

    /// An invalid network config (code 7).
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        CniError::new(ErrorCode::InvalidNetworkConfig, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_the_spec() {
        let e = CniError::new(ErrorCode::InvalidNetworkConfig, "ipam.subnet: bad")
            .with_version("1.0.0");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion":"1.0.0","code":7,"msg":"ipam.subnet: bad"})
        );
        let back: CniError = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn json_errors_map_to_codes() {
        let syntax = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(CniError::from_json("config", &syntax).code, 6);
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            name: String,
        }
        let data = serde_json::from_str::<S>("{}").unwrap_err();
        let e = CniError::from_json("config", &data);
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("name"), "{}", e.msg);
    }
}
