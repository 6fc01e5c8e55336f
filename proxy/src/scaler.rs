//! The gateway's client of the scaler (`RFAAS_SCALER_URL`): wake and scale requests carry the
//! admin token as a bearer token; `/metrics` is fetched to be appended to the gateway's own.
//! Over the pooled upstream client ([`crate::forward::Client`]): no second HTTP stack.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::SharedState;

/// Largest answer read from the scaler.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What the scaler answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Why the scaler refused, in words: the problem+json `detail` when there is one, else the
    /// body's text, else the status.
    pub fn reason(&self) -> String {
        let detail = serde_json::from_slice::<rfa_wire::Problem>(&self.body)
            .ok()
            .map(|p| p.detail)
            .filter(|d| !d.is_empty());
        match detail {
            Some(detail) => format!("{} ({})", detail, self.status),
            None => {
                let text = String::from_utf8_lossy(&self.body);
                let text = text.trim();
                if text.is_empty() {
                    format!("it answered {}", self.status)
                } else {
                    format!("{text} ({})", self.status)
                }
            }
        }
    }
}

impl Answer {
    /// The scaler's answer as the gateway's own: its status and body, its content type (JSON
    /// when it gave none) and `Retry-After`.
    pub fn relay(self) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let mut response = (self.status, self.body).into_response();
        let content_type = self
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json"));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type);
        if let Some(retry) = self.headers.get(header::RETRY_AFTER) {
            headers.insert(header::RETRY_AFTER, retry.clone());
        }
        response
    }
}

/// Why there is no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no scaler is configured")]
    NotConfigured,
    #[error("cannot reach the scaler at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the scaler did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

impl CallError {
    /// The gateway's error for `action` (e.g. "scale function 'x' to 3"), which could not be
    /// carried out for this reason.
    pub fn refusing(self, action: String) -> crate::ProxyError {
        use crate::ProxyError;
        match self {
            CallError::NotConfigured => ProxyError::ScalerNotConfigured { action },
            CallError::Unreachable { .. } => ProxyError::ScalerUnavailable {
                action,
                reason: self.to_string(),
            },
            CallError::Timeout(t) => ProxyError::ScalerTimeout {
                action,
                seconds: t.as_secs(),
            },
        }
    }
}

/// Sends `method path` to the scaler with the admin token (and `body` as JSON when given),
/// waiting at most `timeout` for the whole answer.
pub async fn call(
    state: &SharedState,
    method: axum::http::Method,
    path: &str,
    body: Option<Bytes>,
    timeout: Duration,
) -> Result<Answer, CallError> {
    let base = state
        .config
        .scaler_url
        .as_deref()
        .ok_or(CallError::NotConfigured)?;
    let url = format!("{base}{path}");
    let unreachable = |reason: String| CallError::Unreachable {
        url: url.clone(),
        reason,
    };
    let token = state.token.current();
    let mut request = Request::builder().method(method).uri(&url);
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        request = request.header(header::AUTHORIZATION, v);
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body)),
        None => request.body(Body::empty()),
    }
    .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let response = state
            .client
            .request(request)
            .await
            .map_err(|e| unreachable(rfa_telemetry::error_chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(format!("its answer broke off: {e}")))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CallError::Timeout(timeout))?
}

/// The scaler's own `/metrics` text, or `None` (logged) when it does not answer 200 in `timeout`.
pub async fn metrics(state: &SharedState, timeout: Duration) -> Option<String> {
    state.config.scaler_url.as_ref()?;
    match call(state, axum::http::Method::GET, "/metrics", None, timeout).await {
        Ok(answer) if answer.status == StatusCode::OK => {
            Some(String::from_utf8_lossy(&answer.body).into_owned())
        }
        Ok(answer) => {
            tracing::warn!(reason = %answer.reason(), "the scaler's /metrics left out");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the scaler's /metrics left out");
            None
        }
    }
}
