//! The reverse proxy: `/functions/<name>[/<path>]` to a replica of the function and `/store/<path>`
//! to the document store. Bodies are streamed both ways, never buffered whole; connections to
//! upstreams are pooled and kept alive.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rfa_telemetry::{FutureExt as _, RequestSpan, propagate};
use rfa_wire::route::FunctionKind;

use crate::load::InFlight;
use crate::routes::Picked;
use crate::target::{check_rest, finish, server_span, split_target, strip_hop_by_hop};
use crate::{ProxyError, SharedState, async_calls, auth};

pub type Client = hyper_util::client::legacy::Client<HttpConnector, Body>;

/// The pooled HTTP/1.1 client used for every upstream.
pub fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// `ANY /functions/<name>[/<path>]`.
pub async fn function(State(state): State<SharedState>, req: Request) -> Response {
    let (name, rest) = match split_target(req.uri().path(), "/functions/") {
        Ok(target) => target,
        Err(e) => return e.into_response(),
    };
    let span = server_span(&req, Some(&name));
    if let Err(e) = crate::target::check_depth(req.headers(), &name) {
        return finish(&span, e.into_response());
    }
    let picked = match state.routes.pick(&name) {
        Ok(picked) => picked,
        Err(e) => {
            // Not for unknown names: a client could grow the label set without bound.
            if !matches!(e, ProxyError::UnknownFunction(_)) {
                state.metrics.invocation(&name, e.status().as_u16(), None);
            }
            return finish(&span, e.into_response());
        }
    };
    if picked.route.kind == FunctionKind::Async {
        let power = picked.route.power;
        let response = async_calls::enqueue(&state, &name, &rest, req, &span, &picked.live, power)
            .with_context(span.context().clone())
            .await;
        return finish(&span, response);
    }
    state.metrics.started(&name);
    let started = Instant::now();
    let picked = if picked.upstream.is_some() {
        Ok(picked)
    } else {
        crate::wake::hold(&state, &name, picked).await
    };
    let (upstream, replicas, mut in_flight) = match picked {
        Ok(Picked {
            route,
            upstream: Some(upstream),
            call,
            ..
        }) => (upstream, route.upstreams.len(), call),
        Ok(_) => {
            return not_forwarded(
                &state,
                &name,
                &span,
                started,
                ProxyError::NoReplica(name.clone()),
            );
        }
        Err(e) => return not_forwarded(&state, &name, &span, started, e),
    };
    let mut req = req;
    match HeaderValue::from_str(&name) {
        Ok(v) => req.headers_mut().insert(rfa_wire::headers::TARGET, v),
        Err(_) => req.headers_mut().remove(rfa_wire::headers::TARGET),
    };
    let sent = call(
        &state,
        &name,
        &rest,
        upstream,
        replicas,
        req,
        &span,
        &mut in_flight,
    )
    .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            let _in_span = span.context().clone().attach();
            tracing::warn!(function = %name, error = %e, "call failed");
            e.into_response()
        }
    };
    state
        .metrics
        .invocation(&name, response.status().as_u16(), Some(started.elapsed()));
    finish(&span, response)
}

/// The answer to a sync call that was never forwarded (its function did not wake in time, or
/// has no replica), counted like any answer.
fn not_forwarded(
    state: &SharedState,
    name: &str,
    span: &RequestSpan,
    started: Instant,
    e: ProxyError,
) -> Response {
    let _in_span = span.context().clone().attach();
    tracing::warn!(function = %name, error = %e, "call not forwarded");
    state
        .metrics
        .invocation(name, e.status().as_u16(), Some(started.elapsed()));
    finish(span, e.into_response())
}

/// Sends a call to `upstream`, and when that replica cannot be reached and nothing of the call
/// was sent (no connection, or a `421` from a container that took its address, before the body
/// was read), to another replica of the function at once: a call fails only when no healthy
/// replica is left. Every unreachable replica is ejected until its health check passes.
#[allow(clippy::too_many_arguments)]
async fn call(
    state: &SharedState,
    name: &str,
    rest: &str,
    upstream: String,
    replicas: usize,
    req: Request,
    span: &RequestSpan,
    in_flight: &mut Option<InFlight>,
) -> Result<Response, ProxyError> {
    let limit = state.config.max_body;
    if replicas < 2 {
        let result = proxy(state, &upstream, rest, req, limit, name, span, in_flight)
            .await
            .and_then(|response| misdirected(response, name));
        if let Err(ProxyError::Upstream {
            unreachable: true, ..
        }) = &result
        {
            crate::health::eject(state, name, &upstream);
        }
        return result;
    }
    let (parts, mut body) = req.into_parts();
    let mut upstream = upstream;
    let mut tried = Vec::new();
    loop {
        let slot = Arc::new(Mutex::new(Some(body)));
        let attempt = Request::from_parts(parts.clone(), Body::new(Replayable::new(slot.clone())));
        let result = proxy(
            state, &upstream, rest, attempt, limit, name, span, in_flight,
        )
        .await
        .and_then(|response| misdirected(response, name));
        let Err(
            e @ ProxyError::Upstream {
                unreachable: true, ..
            },
        ) = result
        else {
            return result;
        };
        crate::health::eject(state, name, &upstream);
        tried.push(upstream);
        let unsent = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (unsent, state.routes.pick_other(name, &tried)) {
            (Some(unsent), Some(next)) => {
                tracing::info!(function = name, failed = %e, to = %next, "retrying the call on another replica");
                body = unsent;
                upstream = next;
            }
            _ => return Err(e),
        }
    }
}

/// A request body that can be taken back, whole, as long as the upstream client has not started
/// reading it: it moves out of `slot` on the first read. A call that could not connect never
/// reads its body, so it can be sent to another replica.
struct Replayable {
    slot: Arc<Mutex<Option<Body>>>,
    taken: Option<Body>,
    end: bool,
    hint: SizeHint,
}

impl Replayable {
    fn new(slot: Arc<Mutex<Option<Body>>>) -> Replayable {
        let (end, hint) = match slot.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(b) => (b.is_end_stream(), b.size_hint()),
            None => (true, SizeHint::with_exact(0)),
        };
        Replayable {
            slot,
            taken: None,
            end,
            hint,
        }
    }
}

impl HttpBody for Replayable {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.taken.is_none() {
            this.taken = this.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        match this.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self.hint,
        }
    }
}

/// A `421` naming another function in `rfa-target` means the upstream's address now belongs to a
/// container of that function (the replica died and Docker reused its address): the call did not
/// run, and the client gets a `502` like for any replica that cannot be reached.
fn misdirected(response: Response, name: &str) -> Result<Response, ProxyError> {
    if response.status() != axum::http::StatusCode::MISDIRECTED_REQUEST {
        return Ok(response);
    }
    match response.headers().get(rfa_wire::headers::TARGET) {
        Some(other) => Err(ProxyError::Upstream {
            name: name.to_string(),
            reason: format!(
                "its address now belongs to function '{}' (the replica was replaced); the call did not run",
                other.to_str().unwrap_or("?")
            ),
            unreachable: true,
        }),
        None => Ok(response),
    }
}

/// `ANY /store/<path>`: the store API, token required.
pub async fn store(State(state): State<SharedState>, req: Request) -> Response {
    if let Err(e) = auth::check(&state.token, req.headers()) {
        return e.into_response();
    }
    let rest = req
        .uri()
        .path()
        .strip_prefix("/store")
        .unwrap_or("/")
        .to_string();
    let rest = if rest.is_empty() {
        "/".to_string()
    } else {
        rest
    };
    if let Err(e) = check_rest(&rest) {
        return e.into_response();
    }
    let authority = state
        .config
        .store_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut req = req;
    req.headers_mut().remove(rfa_wire::headers::TARGET);
    let span = server_span(&req, None);
    let result = proxy(
        &state,
        &authority,
        &rest,
        req,
        state.config.max_body,
        "store",
        &span,
        &mut None,
    )
    .await;
    let response = match result {
        Ok(response) => response,
        Err(ProxyError::Upstream { reason, .. })
        | Err(ProxyError::Timeout { name: reason, .. }) => {
            ProxyError::StoreUnavailable(reason).into_response()
        }
        Err(e) => e.into_response(),
    };
    finish(&span, response)
}

/// Sends `req` to `http://<authority><path>?<query>` and streams the answer back; the upstream
/// sees `span` as its parent in `traceparent`. A call counted `in_flight` stays counted until the
/// answer's body has been sent (the count moves into the body).
#[allow(clippy::too_many_arguments)]
async fn proxy(
    state: &SharedState,
    authority: &str,
    path: &str,
    req: Request,
    limit: u64,
    name: &str,
    span: &RequestSpan,
    in_flight: &mut Option<InFlight>,
) -> Result<Response, ProxyError> {
    let (mut parts, body) = req.into_parts();
    if content_length(&parts.headers).is_some_and(|length| length > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: Uri = format!("http://{authority}{path}{query}")
        .parse()
        .map_err(|e| ProxyError::BadRequest(format!("cannot forward to this path: {e}")))?;

    let client_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let original_host = parts.headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    add_forwarded(&mut parts.headers, client_ip, original_host, name);
    propagate::to_http(span.context(), &mut parts.headers);
    parts.uri = uri;

    let exceeded = Arc::new(AtomicBool::new(false));
    let body = Body::new(LimitedBody {
        inner: body,
        remaining: limit,
        limit,
        exceeded: exceeded.clone(),
    });
    let upstream_req = Request::from_parts(parts, body);

    let timeout = state.config.upstream_timeout;
    let answer = tokio::time::timeout(timeout, state.client.request(upstream_req)).await;
    let response = match answer {
        Err(_) => {
            return Err(ProxyError::Timeout {
                name: name.to_string(),
                seconds: timeout.as_secs(),
            });
        }
        Ok(Err(e)) => {
            if exceeded.load(Ordering::Relaxed) {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            return Err(ProxyError::Upstream {
                name: name.to_string(),
                reason: rfa_telemetry::error_chain(&e),
                unreachable: e.is_connect(),
            });
        }
        Ok(Ok(response)) => response,
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        Body::new(Answer {
            inner: body,
            _in_flight: in_flight.take(),
        }),
    ))
}

/// An upstream's answer body, holding its call's in-flight count until it is dropped (sent whole,
/// or the client left).
struct Answer {
    inner: Incoming,
    _in_flight: Option<InFlight>,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(axum::Error::new)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn add_forwarded(
    headers: &mut HeaderMap,
    client_ip: Option<String>,
    host: Option<HeaderValue>,
    name: &str,
) {
    if let Some(ip) = client_ip {
        let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("x-forwarded-for", v);
        }
    }
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Ok(v) = HeaderValue::from_str(&format!("/functions/{name}")) {
        headers.insert("x-forwarded-prefix", v);
    }
}

/// A request body that fails once more than `limit` bytes have passed, and says so in `exceeded`.
struct LimitedBody {
    inner: Body,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(axum::Error::new(
                            ProxyError::BodyTooLarge { limit: this.limit },
                        ))));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_421_from_another_function_is_a_502_and_other_answers_pass() {
        let answer = |status: u16, target: Option<&str>| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            if let Some(t) = target {
                r.headers_mut()
                    .insert(rfa_wire::headers::TARGET, HeaderValue::from_str(t).unwrap());
            }
            r
        };
        let e = misdirected(answer(421, Some("database_events")), "echo").unwrap_err();
        assert_eq!(e.status().as_u16(), 502);
        assert!(e.to_string().contains("'database_events'"), "{e}");
        // A function's own 421 (no rfa-target) and every other answer go to the client.
        assert_eq!(
            misdirected(answer(421, None), "echo").unwrap().status(),
            421
        );
        assert_eq!(
            misdirected(answer(200, None), "echo").unwrap().status(),
            200
        );
    }
}
