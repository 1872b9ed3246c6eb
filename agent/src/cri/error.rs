//! The CRI service's errors, and their one mapping to gRPC status codes.

use crate::image::ImageError;

/// Every way a CRI call fails. The gRPC code follows from the variant
/// ([`From<CriError> for tonic::Status`]); messages name the field or object.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The RPC is not served (yet).
    #[error("{0} is not implemented by husklet")]
    Unimplemented(&'static str),
    /// A request field is missing or wrong; nothing was changed.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// No object with this id (or name).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// The name is taken by another object.
    #[error("{kind} name {name:?} is already reserved by {id}")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        id: String,
    },
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A call with a timeout ran out of time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The image store refused or failed.
    #[error("image store")]
    Image(#[from] ImageError),
    /// A remote CRI runtime answered with this status
    /// (`--container-runtime-endpoint`).
    #[error("{message}")]
    Remote { code: tonic::Code, message: String },
    /// Something on the host failed; `what` names the object and step.
    #[error("{what}")]
    Internal {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CriError {
    /// A missing or bad field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CriError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A host failure while doing `what`.
    pub fn internal(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CriError::Internal {
            what: what.into(),
            source: source.into(),
        }
    }

    /// `what`, for an I/O error on `path`.
    pub fn io(
        what: impl std::fmt::Display,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let what = format!("{what} ({})", path.display());
        move |e| CriError::internal(what, e)
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::InvalidArgument { .. } => Code::InvalidArgument,
            CriError::NotFound { .. } => Code::NotFound,
            CriError::AlreadyExists { .. } => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Image(e) => match e {
                ImageError::NotFound(_) => Code::NotFound,
                ImageError::Reference(_) | ImageError::Ambiguous(_) => Code::InvalidArgument,
                ImageError::InUse { .. } => Code::FailedPrecondition,
                ImageError::Limit { .. } | ImageError::Space(_) => Code::ResourceExhausted,
                _ => Code::Unknown,
            },
            CriError::Remote { code, .. } => *code,
            CriError::Internal { .. } => Code::Internal,
        }
    }
}

/// An error and its causes on one line, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = c.source();
    }
    out
}

impl From<CriError> for tonic::Status {
    fn from(e: CriError) -> Self {
        let msg = chain(&e);
        if e.code() == tonic::Code::Internal || e.code() == tonic::Code::Unknown {
            tracing::warn!(error = %msg, "CRI call failed");
        }
        tonic::Status::new(e.code(), msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_variant_and_messages_name_the_field() {
        let s: tonic::Status =
            CriError::invalid("config.metadata.name", "must not be empty").into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "config.metadata.name: must not be empty");
        let s: tonic::Status = CriError::Unimplemented("Attach").into();
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert!(s.message().contains("Attach"));
        let s: tonic::Status = CriError::Image(ImageError::NotFound("x".into())).into();
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s.message().contains("\"x\""), "{}", s.message());
    }
}
