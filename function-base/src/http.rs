//! HTTP from inside a function: the runtime's one client set-up (used by the store client and
//! the callbacks), and [`get`] for a function that calls another one (or any `http://` URL):
//!
//! ```no_run
//! # async fn f() -> Result<(), function_base::http::CallError> {
//! let answer = function_base::http::get("http://rfa-proxy:9999/functions/method2").await?;
//! println!("{} {:?}", answer.status(), answer.body());
//! # Ok(()) }
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, Request, Response, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The client the runtime uses: plain HTTP/1.1, `TCP_NODELAY`, pooled connections.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long a call of [`get`] may take, connecting included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer [`get`] reads.
pub const MAX_ANSWER: usize = 64 << 20;

/// A client whose connections must be made within `connect_timeout`.
pub(crate) fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Why a call of [`get`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0:?} is not an absolute http:// URL")]
    InvalidUrl(String),
    #[error("calling {url}: {reason}")]
    Failed { url: String, reason: String },
}

/// `GET url` with the runtime's shared client (the caller's trace goes along in `traceparent`):
/// the answer's status, headers and whole body (at most [`MAX_ANSWER`] bytes, within
/// [`TIMEOUT`]). Redirects are not followed.
pub async fn get(url: &str) -> Result<Response<Bytes>, CallError> {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    let invalid = || CallError::InvalidUrl(url.to_string());
    let uri: Uri = url.parse().map_err(|_| invalid())?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(invalid());
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .body(Full::default())
        .map_err(|_| invalid())?;
    rfa_telemetry::propagate::to_http(&rfa_telemetry::Context::current(), request.headers_mut());
    let failed = |reason: String| CallError::Failed {
        url: url.to_string(),
        reason,
    };
    let client = CLIENT.get_or_init(|| client(TIMEOUT));
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {TIMEOUT:?}")))?
}
