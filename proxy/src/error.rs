//! Errors the gateway answers with, each mapped to its problem+json status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rfa_io::ProblemResponse;
use rfa_wire::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("function '{0}' is not deployed")]
    UnknownFunction(String),
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
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownFunction(_) => StatusCode::NOT_FOUND,
            ProxyError::NoReplica(_) | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::StoreUnavailable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::QueueUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let mut response =
            ProblemResponse(Problem::new(self.status(), self.to_string())).into_response();
        if matches!(self, ProxyError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"rfaas\""),
            );
        }
        response
    }
}
