//! The shim's errors: each says what it was doing and on which object.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    /// The runtime refused; the text is its own error message.
    #[error("{0}")]
    Runtime(String),
}

/// `map_err` helper for I/O errors.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Io { what, source }
}

/// `map_err` helper for nix errors.
pub fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Sys { what, source }
}

/// The error and each of its causes, once each: `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
