//! RFC 9457 problem details, the body of every error rfaas answers over HTTP.
//!
//! The body only: answering it over HTTP is `rfa_io::problem::ProblemResponse`.

use http::StatusCode;
use serde::{Deserialize, Serialize};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Problem types a program may act on (the `type` member); every other problem is `about:blank`.
pub mod types {
    /// The gateway has no function of that name (404).
    pub const UNKNOWN_FUNCTION: &str = "urn:rfaas:problem:unknown-function";
    /// A chain of function-to-function calls went deeper than the gateway serves (508).
    pub const CALL_LOOP: &str = "urn:rfaas:problem:call-loop";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".to_string(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// The same problem with the type `kind` (one of [`types`]).
    pub fn with_type(mut self, kind: &str) -> Self {
        self.kind = kind.to_string();
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}
