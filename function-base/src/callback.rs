//! Delivering an async call's result to its `X-Callback-Url`, with retries.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rfa_wire::{HOP_BY_HOP, headers};
use tracing::{debug, warn};

use rfa_io::Backoff;

use crate::config::Config;
use crate::http::HttpClient;

/// Longest `Retry-After` honoured; a receiver asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a callback was given up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallbackError {
    #[error("the callback URL {0:?} is not an absolute http URL")]
    InvalidUrl(String),
    #[error("the callback URL uses {0}, which this runtime cannot call (http only)")]
    UnsupportedScheme(String),
    #[error("cannot build the callback request: {0}")]
    Request(#[from] axum::http::Error),
    #[error("gave up after {attempts} attempts, last: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// What the receiver finally answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub status: StatusCode,
    pub attempts: u32,
}

/// Posts callbacks; one per runtime, cheap to clone.
#[derive(Clone)]
pub(crate) struct Callbacks {
    client: HttpClient,
    attempts: u32,
    backoff: Backoff,
    timeout: Duration,
}

impl Callbacks {
    pub(crate) fn new(config: &Config) -> Self {
        Callbacks {
            client: crate::http::client(config.callback_timeout),
            attempts: config.callback_attempts.max(1),
            backoff: Backoff::new(config.callback_backoff, config.callback_backoff_max),
            timeout: config.callback_timeout,
        }
    }

    /// Posts `body` with `headers` to `url` until the receiver answers with a status that ends
    /// it (2xx, 3xx, or a 4xx other than 429), retrying connection errors, timeouts, 5xx and
    /// 429 with backoff (`Retry-After` seconds honoured).
    pub(crate) async fn deliver(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Delivered, CallbackError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| CallbackError::InvalidUrl(url.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(CallbackError::UnsupportedScheme(other.to_string())),
            None => return Err(CallbackError::InvalidUrl(url.to_string())),
        }
        if uri.authority().is_none() {
            return Err(CallbackError::InvalidUrl(url.to_string()));
        }

        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(uri.clone())
                .body(Full::new(body.clone()))?;
            *request.headers_mut() = headers.clone();

            let retry_after = match tokio::time::timeout(self.timeout, self.attempt(request)).await
            {
                Ok(Ok((status, retry_after))) => {
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Ok(Delivered {
                            status,
                            attempts: attempt,
                        });
                    }
                    last = format!("the receiver answered {status}");
                    retry_after
                }
                Ok(Err(e)) => {
                    last = format!("request failed: {e}");
                    None
                }
                Err(_) => {
                    last = format!("no answer within {:?}", self.timeout);
                    None
                }
            };
            if attempt == self.attempts {
                break;
            }
            let wait = retry_after.unwrap_or_else(|| self.backoff.delay(attempt - 1));
            debug!(url, attempt, wait_ms = wait.as_millis() as u64, reason = %last, "callback failed; retrying");
            tokio::time::sleep(wait).await;
        }
        Err(CallbackError::GaveUp {
            attempts: self.attempts,
            last,
        })
    }

    /// One attempt: the status and the `Retry-After` (in seconds) of the answer. The answer's
    /// body is read to the end so the connection can be reused.
    async fn attempt(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Option<Duration>), hyper_util::client::legacy::Error> {
        let response = self.client.request(request).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        if let Err(e) = response.into_body().collect().await {
            debug!(error = %e, "cannot read the callback receiver's answer");
        }
        Ok((status, retry_after))
    }
}

/// The callback's headers: the function's response headers without hop-by-hop ones (nor
/// `Content-Length`, which is recomputed), plus the OpenFaaS call headers.
pub(crate) fn callback_headers(
    response: &HeaderMap,
    call_id: &str,
    function: &str,
    status: StatusCode,
    duration: Duration,
) -> HeaderMap {
    let mut out = response.clone();
    let named_in_connection: Vec<HeaderName> = response
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named_in_connection {
        out.remove(name);
    }
    for name in HOP_BY_HOP {
        out.remove(name);
    }
    out.remove(header::CONTENT_LENGTH);
    out.remove(header::HOST);
    let mut set = |name: &'static str, value: &str| match HeaderValue::from_str(value) {
        Ok(v) => {
            out.insert(HeaderName::from_static(name), v);
        }
        Err(_) => warn!(
            header = name,
            "cannot send a header value that is not valid text"
        ),
    };
    set(headers::CALL_ID, call_id);
    set(headers::FUNCTION_NAME, function);
    set(headers::FUNCTION_STATUS, status.as_str());
    set(
        headers::DURATION_SECONDS,
        &format!("{:.6}", duration.as_secs_f64()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_headers_drop_hop_by_hop_and_add_call_headers() {
        let mut response = HeaderMap::new();
        response.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        response.insert(header::CONNECTION, HeaderValue::from_static("x-private"));
        response.insert("x-private", HeaderValue::from_static("1"));
        response.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        response.insert("x-custom", HeaderValue::from_static("kept"));
        let out = callback_headers(
            &response,
            "call-1",
            "method2",
            StatusCode::ACCEPTED,
            Duration::from_millis(1500),
        );
        assert_eq!(out["content-type"], "text/plain");
        assert_eq!(out["x-custom"], "kept");
        for gone in [
            "content-length",
            "connection",
            "x-private",
            "transfer-encoding",
        ] {
            assert!(!out.contains_key(gone), "{gone} kept");
        }
        assert_eq!(out["x-call-id"], "call-1");
        assert_eq!(out["x-function-name"], "method2");
        assert_eq!(out["x-function-status"], "202");
        assert_eq!(out["x-duration-seconds"], "1.500000");
    }
}
