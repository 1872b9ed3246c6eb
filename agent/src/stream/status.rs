//! What the error stream carries when a command ends.
//!
//! v4 and v5 send a `metav1.Status` as JSON: `Success`, or `Failure` with
//! reason `NonZeroExitCode` and an `ExitCode` cause whose message is the
//! code; client-go turns that into the exit code kubectl/crictl return.
//! v2 and v3 send plain text, and nothing on success.

use serde::{Deserialize, Serialize};

/// How a command or stream session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code (0 is success).
    Exited(i32),
    /// The command could not be run or the stream failed.
    Error(String),
}

/// The subset of `metav1.Status` the streaming protocols use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub metadata: Metadata,
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Details>,
}

/// `metav1.ListMeta`, always empty here but present as `{}` like Go writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {}

/// `metav1.StatusDetails` (causes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    pub causes: Vec<Cause>,
}

/// `metav1.StatusCause`: Go names the type field `reason` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub reason: String,
    pub message: String,
}

impl Status {
    /// The status of `outcome`.
    pub fn from_outcome(outcome: &Outcome) -> Self {
        let failure = |message: String, reason: &str, details| Status {
            metadata: Metadata {},
            status: "Failure".into(),
            message,
            reason: reason.into(),
            details,
        };
        match outcome {
            Outcome::Exited(0) => Status {
                metadata: Metadata {},
                status: "Success".into(),
                message: String::new(),
                reason: String::new(),
                details: None,
            },
            Outcome::Exited(code) => failure(
                format!("command terminated with non-zero exit code: exit status {code}"),
                "NonZeroExitCode",
                Some(Details {
                    causes: vec![Cause {
                        reason: "ExitCode".into(),
                        message: code.to_string(),
                    }],
                }),
            ),
            Outcome::Error(msg) => failure(msg.clone(), "InternalError", None),
        }
    }

    /// The exit code a client derives from this status, if it names one.
    pub fn exit_code(&self) -> Option<i32> {
        if self.status == "Success" {
            return Some(0);
        }
        if self.reason != "NonZeroExitCode" {
            return None;
        }
        self.details
            .as_ref()?
            .causes
            .iter()
            .find(|c| c.reason == "ExitCode")
            .and_then(|c| c.message.parse().ok())
    }
}

/// The error-stream bytes for `outcome`: JSON for v4/v5, text (or nothing) before.
pub fn error_stream_bytes(json: bool, outcome: &Outcome) -> Vec<u8> {
    if json {
        // Serialising this plain struct cannot fail.
        return serde_json::to_vec(&Status::from_outcome(outcome)).unwrap_or_default();
    }
    match outcome {
        Outcome::Exited(0) => Vec::new(),
        Outcome::Exited(code) => {
            format!("command terminated with non-zero exit code: exit status {code}").into_bytes()
        }
        Outcome::Error(msg) => msg.clone().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_and_exit_codes_match_what_client_go_decodes() {
        let ok = error_stream_bytes(true, &Outcome::Exited(0));
        assert_eq!(ok, br#"{"metadata":{},"status":"Success"}"#);
        let failed = error_stream_bytes(true, &Outcome::Exited(137));
        let v: serde_json::Value = serde_json::from_slice(&failed).expect("json");
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "137");
        let back: Status = serde_json::from_slice(&failed).expect("status");
        assert_eq!(back.exit_code(), Some(137));
        assert!(error_stream_bytes(false, &Outcome::Exited(0)).is_empty());
        assert!(
            String::from_utf8_lossy(&error_stream_bytes(false, &Outcome::Exited(2)))
                .contains("exit status 2")
        );
    }
}
