//! Async calls: the request is stored on JetStream (`rfa.async.<name>`) and answered `202` with
//! `X-Call-Id` once the stream has acknowledged it, so a 202 means the call is durable. The
//! function's own worker (in `function-base`) runs it and POSTs the result to `X-Callback-Url`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rfa_io::backoff::retry;
use rfa_io::nats::{Connect, ensure_stream};
use rfa_telemetry::{FutureExt as _, KeyValue, RequestSpan};
use rfa_wire::headers;
use rfa_wire::route::Power;

use crate::load::Live;
use crate::target::{finish, server_span, split_target, strip_hop_by_hop};
use crate::{ProxyError, SharedState};

/// How long the gateway waits for JetStream to acknowledge a call before answering 503.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway's NATS connection, made in the background and replaced by nothing while down.
#[derive(Clone, Default)]
pub struct Nats {
    inner: Arc<RwLock<Option<(async_nats::Client, jetstream::Context)>>>,
    configured: bool,
}

impl Nats {
    /// Connects to `url` in the background, retrying until it succeeds, then makes sure the
    /// async-call stream exists. `None` means no NATS: async calls are answered 503.
    pub fn start(url: Option<String>) -> Nats {
        let nats = Nats {
            inner: Arc::default(),
            configured: url.is_some(),
        };
        if let Some(url) = url {
            let slot = nats.inner.clone();
            tokio::spawn(async move {
                if let Some(pair) = connect(&url).await
                    && let Ok(mut guard) = slot.write()
                {
                    *guard = Some(pair);
                }
            });
        }
        nats
    }

    fn get(&self) -> Result<(async_nats::Client, jetstream::Context), ProxyError> {
        let guard = self
            .inner
            .read()
            .map_err(|_| ProxyError::QueueUnavailable("internal lock poisoned".into()))?;
        match &*guard {
            Some((client, js)) => {
                if client.connection_state() == async_nats::connection::State::Connected {
                    Ok((client.clone(), js.clone()))
                } else {
                    Err(ProxyError::QueueUnavailable(
                        "the connection is down".into(),
                    ))
                }
            }
            None if self.configured => {
                Err(ProxyError::QueueUnavailable("not connected yet".into()))
            }
            None => Err(ProxyError::QueueUnavailable(
                "this gateway was started without a NATS URL".into(),
            )),
        }
    }

    /// The async-call queue of `function`, when NATS is up and the function's worker has
    /// created its consumer.
    pub async fn queue_stats(&self, function: &str) -> Option<rfa_wire::route::QueueStats> {
        let (_, js) = self.get().ok()?;
        let stream = js.get_stream(rfa_wire::subjects::ASYNC_STREAM).await.ok()?;
        let info = stream
            .consumer_info(rfa_wire::subjects::async_consumer(function))
            .await
            .ok()?;
        Some(rfa_wire::route::QueueStats {
            pending: info.num_pending,
            inflight: info.num_ack_pending as u64,
        })
    }

    /// Async calls given up and kept on the dead-letter stream, per function (only functions
    /// with some); `None` when NATS is down. No dead-letter stream yet: none given up.
    pub async fn dead_counts(&self) -> Option<Vec<rfa_wire::dashboard::DeadCount>> {
        use futures_util::TryStreamExt as _;
        let (_, js) = self.get().ok()?;
        let Ok(stream) = js.get_stream(rfa_wire::subjects::DEAD_STREAM).await else {
            return Some(Vec::new());
        };
        let prefix = rfa_wire::subjects::dead_letter("");
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .ok()?
            .try_collect()
            .await
            .ok()?;
        let mut counts: Vec<_> = subjects
            .into_iter()
            .filter_map(|(subject, n)| {
                Some(rfa_wire::dashboard::DeadCount {
                    function: subject.strip_prefix(&prefix)?.to_string(),
                    calls: n as u64,
                })
            })
            .collect();
        counts.sort_by(|a, b| a.function.cmp(&b.function));
        Some(counts)
    }

    /// Whether the gateway can queue calls right now.
    pub fn is_connected(&self) -> bool {
        self.get().is_ok()
    }
}

/// Connects to `url` and makes sure the async-call stream exists, retrying each step until it
/// works (for as long as the gateway runs).
async fn connect(url: &str) -> Option<(async_nats::Client, jetstream::Context)> {
    let connect = Connect {
        connection_timeout: Duration::from_secs(3),
        ..Connect::new("rfa-proxy")
    };
    let client = connect.with_retry(url, std::future::pending()).await?;
    let js = jetstream::new(client.clone());
    retry(
        "setting up the async-call stream",
        connect.retry,
        std::future::pending(),
        || ensure_stream(&js, rfa_wire::streams::async_calls()),
    )
    .await?;
    tracing::info!(%url, "async-call stream ready");
    Some((client, js))
}

/// `ANY /async-functions/<name>[/<path>]`.
pub async fn handler(State(state): State<SharedState>, req: Request) -> Response {
    let (name, rest) = match split_target(req.uri().path(), "/async-functions/") {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let span = server_span(&req, Some(&name));
    if let Err(e) = crate::target::check_depth(req.headers(), &name) {
        return finish(&span, e.into_response());
    }
    let Some((route, live)) = state.routes.get_live(&name) else {
        return finish(&span, ProxyError::UnknownFunction(name).into_response());
    };
    let response = enqueue(&state, &name, &rest, req, &span, &live, route.power)
        .with_context(span.context().clone())
        .await;
    finish(&span, response)
}

/// Queues `req` for function `name` at `rest` (its path inside the function).
/// The function's worker continues `span`'s trace (its context goes along in the NATS headers).
/// A call accepted for a function that is not running (`power`) asks the scaler to wake it, and
/// does not wait for that.
pub async fn enqueue(
    state: &SharedState,
    name: &str,
    rest: &str,
    req: Request,
    span: &RequestSpan,
    live: &Arc<Live>,
    power: Power,
) -> Response {
    match try_enqueue(state, name, rest, req, span).await {
        Ok(call_id) => {
            span.set_attribute(KeyValue::new("rfaas.call_id", call_id.clone()));
            state.metrics.async_accepted(name, &call_id);
            live.accepted();
            if !power.is_running() {
                crate::wake::request_wake(state, name, live);
            }
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&call_id) {
                response.headers_mut().insert(headers::CALL_ID, v);
            }
            response
        }
        Err(e) => {
            state.metrics.async_rejected(name, e.status().as_u16());
            tracing::warn!(function = %name, error = %e, "async call refused");
            e.into_response()
        }
    }
}

async fn try_enqueue(
    state: &SharedState,
    name: &str,
    rest: &str,
    req: Request,
    span: &RequestSpan,
) -> Result<String, ProxyError> {
    let (parts, body) = req.into_parts();
    let mut http_headers = parts.headers;
    check_callback_url(&http_headers)?;
    let call_id = call_id(&http_headers)?;
    let limit = state.config.max_async_body;
    let body = read_body(body, &http_headers, limit).await?;
    let (_client, js) = state.nats.get()?;

    strip_hop_by_hop(&mut http_headers);
    let path = match parts.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut nats_headers =
        rfa_wire::async_call::encode(&parts.method, &path, &call_id, &http_headers)
            .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    rfa_telemetry::propagate::to_nats(span.context(), &mut nats_headers);

    let subject = rfa_wire::subjects::async_call(name);
    let ack = js
        .publish_with_headers(subject, nats_headers, body)
        .await
        .map_err(|e| ProxyError::QueueUnavailable(e.to_string()))?;
    match tokio::time::timeout(ACK_TIMEOUT, ack).await {
        Ok(Ok(_)) => Ok(call_id),
        Ok(Err(e)) => Err(ProxyError::QueueUnavailable(e.to_string())),
        Err(_) => Err(ProxyError::QueueUnavailable(
            "JetStream did not acknowledge the call in time".into(),
        )),
    }
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: u64,
) -> Result<bytes::Bytes, ProxyError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    axum::body::to_bytes(body, limit as usize)
        .await
        .map_err(|_| ProxyError::BodyTooLarge { limit })
}

/// `X-Callback-Url`, when given, must be an absolute http(s) URL.
fn check_callback_url(headers: &HeaderMap) -> Result<(), ProxyError> {
    let Some(value) = headers.get(headers::CALLBACK_URL) else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| ProxyError::BadRequest("X-Callback-Url is not valid text".into()))?;
    let bad = || {
        ProxyError::BadRequest(format!(
            "X-Callback-Url must be an absolute http:// or https:// URL, not '{text}'"
        ))
    };
    let uri: Uri = text.parse().map_err(|_| bad())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

/// The caller's `X-Call-Id` if it is a sane token, or a new random one.
fn call_id(headers: &HeaderMap) -> Result<String, ProxyError> {
    match headers.get(headers::CALL_ID) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            let ok = !text.is_empty()
                && text.len() <= 128
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
            if ok {
                Ok(text.to_string())
            } else {
                Err(ProxyError::BadRequest(
                    "X-Call-Id must be 1 to 128 of A-Z, a-z, 0-9, '-', '_', '.' or ':'".into(),
                ))
            }
        }
        None => {
            let bits: u128 = rand::random();
            Ok(format!("{bits:032x}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn callback_urls() {
        assert!(check_callback_url(&HeaderMap::new()).is_ok());
        assert!(
            check_callback_url(&with(
                "x-callback-url",
                "http://host.docker.internal:8000/cb"
            ))
            .is_ok()
        );
        assert!(check_callback_url(&with("x-callback-url", "https://example.org/x")).is_ok());
        assert!(check_callback_url(&with("x-callback-url", "/relative")).is_err());
        assert!(check_callback_url(&with("x-callback-url", "ftp://x/y")).is_err());
        assert!(check_callback_url(&with("x-callback-url", "not a url")).is_err());
    }

    #[test]
    fn call_ids() {
        assert_eq!(call_id(&with("x-call-id", "abc-1")).unwrap(), "abc-1");
        assert!(call_id(&with("x-call-id", "a b")).is_err());
        let a = call_id(&HeaderMap::new()).unwrap();
        let b = call_id(&HeaderMap::new()).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
