//! Errors the gateway answers with, each mapped to its problem+json status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use rfa_wire::route::Power;

/// What a client told to retry a call held for a waking function (or a scale the scaler could
/// not take) is told to wait, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("function '{0}' is not deployed")]
    UnknownFunction(String),
    #[error(
        "the call to function '{name}' is {depth} function-to-function calls deep, more than the \
         {max} the gateway serves: functions calling each other in a loop? (header {header})",
        max = rfa_wire::MAX_CALL_DEPTH,
        header = rfa_wire::headers::CALL_DEPTH
    )]
    CallLoop { name: String, depth: u32 },
    #[error("function '{0}' has no running replica")]
    NoReplica(String),
    #[error("function '{name}' is not answering: {reason}")]
    Upstream {
        name: String,
        reason: String,
        /// The replica could not be reached at all (no connection, or its address now belongs
        /// to another container): the call did not run there.
        unreachable: bool,
    },
    #[error("function '{name}' did not answer within {seconds} s")]
    Timeout { name: String, seconds: u64 },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error(
        "missing or wrong bearer token: send 'Authorization: Bearer <token>' (proxyCli prints where the token is kept)"
    )]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("NATS is not reachable, so the call could not be queued: {0}")]
    QueueUnavailable(String),
    #[error("the document store is not answering: {0}")]
    StoreUnavailable(String),
    #[error("could not persist the route table: {0}")]
    Persist(String),
    #[error(
        "function '{name}' is {power} and this gateway has no scaler to wake it \
         (RFAAS_SCALER_URL is not set): restart the platform with proxyCli startFaas, which runs \
         the scaler"
    )]
    NoScaler { name: String, power: Power },
    #[error(
        "function '{name}' is waking (it was {power}) and was not ready within {seconds} s: \
         retry in a few seconds"
    )]
    Waking {
        name: String,
        power: Power,
        seconds: u64,
    },
    #[error(
        "function '{name}' is {power} and the scaler that wakes it is not answering ({reason}); \
         the call waited {seconds} s: retry in a few seconds, and check the rfa-scaler container"
    )]
    ScalerUnreachable {
        name: String,
        power: Power,
        reason: String,
        seconds: u64,
    },
    #[error("the scaler could not wake function '{name}': {reason}")]
    WakeFailed { name: String, reason: String },
    #[error(
        "this gateway has no scaler (RFAAS_SCALER_URL is not set), so it cannot {action}: \
         restart the platform with proxyCli startFaas, which runs the scaler"
    )]
    ScalerNotConfigured { action: String },
    #[error("the scaler is not answering, so the gateway cannot {action}: {reason}; retry shortly")]
    ScalerUnavailable { action: String, reason: String },
    #[error(
        "the scaler did not answer within {seconds} s, so the gateway cannot tell whether it \
         could {action}: check with proxyCli details"
    )]
    ScalerTimeout { action: String, seconds: u64 },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownFunction(_) => StatusCode::NOT_FOUND,
            ProxyError::CallLoop { .. } => StatusCode::LOOP_DETECTED,
            ProxyError::NoReplica(_) | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::StoreUnavailable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::QueueUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NoScaler { .. }
            | ProxyError::Waking { .. }
            | ProxyError::ScalerUnreachable { .. }
            | ProxyError::WakeFailed { .. }
            | ProxyError::ScalerNotConfigured { .. }
            | ProxyError::ScalerUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ScalerTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Seconds a client should wait before it retries, for the errors a retry can cure.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::Waking { .. }
            | ProxyError::ScalerUnreachable { .. }
            | ProxyError::WakeFailed { .. }
            | ProxyError::ScalerUnavailable { .. } => Some(RETRY_AFTER_SECONDS),
            _ => None,
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let mut problem = Problem::new(self.status(), self.to_string());
        match self {
            ProxyError::UnknownFunction(_) => {
                problem = problem.with_type(rfa_wire::problem::types::UNKNOWN_FUNCTION)
            }
            ProxyError::CallLoop { .. } => {
                problem = problem.with_type(rfa_wire::problem::types::CALL_LOOP)
            }
            _ => {}
        }
        let mut response = ProblemResponse(problem).into_response();
        if let Some(seconds) = self.retry_after() {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        if matches!(self, ProxyError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"rfaas\""),
            );
        }
        response
    }
}
