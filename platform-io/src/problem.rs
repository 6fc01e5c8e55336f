//! problem+json over axum: a [`Problem`] (from `rfa-wire`, which knows no axum) as a response.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rfa_wire::Problem;
use rfa_wire::problem::CONTENT_TYPE;

/// A [`Problem`] answered as `application/problem+json` with its status.
///
/// Handlers return it (or `Result<T, ProblemResponse>`; `?` converts a `Problem`), and code
/// that needs a [`Response`] calls `ProblemResponse(problem).into_response()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemResponse(pub Problem);

impl From<Problem> for ProblemResponse {
    fn from(problem: Problem) -> Self {
        ProblemResponse(problem)
    }
}

impl IntoResponse for ProblemResponse {
    fn into_response(self) -> Response {
        let status = self.0.status_code();
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_status_and_the_media_type() {
        let response = ProblemResponse(Problem::not_found("no such thing")).into_response();
        assert_eq!(response.status().as_u16(), 404);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }
}
