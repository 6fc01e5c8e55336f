//! [`Ctx`]: the extractor that gives a handler the platform around it: the typed store client,
//! its function's name, the call id, and calls of other functions through the gateway.
//!
//! ```no_run
//! use function_base::prelude::*;
//!
//! #[derive(Deserialize, Serialize)]
//! #[serde(crate = "function_base::serde")]
//! struct Order { item: String }
//!
//! pub async fn order(ctx: Ctx, Json(order): Json<Order>) -> Result<Response, CallError> {
//!     let saved = ctx.store().table("orders").create(&order).await;
//!     let answer = ctx.call("invoice").json(&order).send().await?;
//!     Ok((answer.status(), format!("{saved:?}")).into_response())
//! }
//! ```
//!
//! A call goes to `RFAAS_GATEWAY_URL/functions/<name>` (the platform sets the variable in every
//! function container), so it reaches the function wherever its replicas run, wakes it when it
//! is paused, and is counted and traced like any other call. It carries the caller's trace
//! (`traceparent`), a call id derived from the caller's (`<call id>.<n>`, so that a redelivered
//! async call makes the same chained calls and JetStream drops the repeats of queued ones), and
//! the call depth ([`rfa_wire::headers::CALL_DEPTH`]): the gateway refuses a chain deeper than
//! [`rfa_wire::MAX_CALL_DEPTH`], so functions calling each other in a loop end with
//! [`CallError::CallLoop`] instead of holding every replica.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rfa_wire::{Problem, headers};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::http::HttpClient;
use crate::store::StoreClient;

tokio::task_local! {
    /// Set by the test harness around each call and event handler it runs.
    static CURRENT: Platform;
}

/// How long a call may take by default, connecting included (see [`Call::timeout`]).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer a call reads.
pub const MAX_CALL_ANSWER: usize = 64 << 20;

/// What a handler's [`Ctx`] (and [`crate::store()`]) reaches: the process's, from the
/// environment, or, inside a call or event handler of the test harness, the harness's.
#[derive(Clone)]
pub struct Platform {
    function: Arc<str>,
    gateway: Option<Arc<str>>,
    store: StoreClient,
    client: HttpClient,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("function", &self.function)
            .field("gateway", &self.gateway)
            .field("store", &self.store)
            .finish()
    }
}

impl Platform {
    /// The platform of function `function`: other functions behind `gateway_url` (none: calls
    /// fail with [`CallError::NoGateway`]), the store at `store`.
    pub fn new(function: &str, gateway_url: Option<&str>, store: StoreClient) -> Platform {
        Platform {
            function: function.into(),
            gateway: gateway_url.map(|u| u.trim_end_matches('/').into()),
            store,
            client: crate::http::client(Duration::from_secs(5)),
        }
    }

    /// The platform the current task runs in: the test harness's inside one of its calls or
    /// event handlers, else the process's.
    pub(crate) fn current() -> Platform {
        CURRENT
            .try_with(Platform::clone)
            .unwrap_or_else(|_| Platform::of_process())
    }

    /// Runs `fut` with `self` as the [`Platform::current`] (the test harness does).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The store of [`Platform::current`].
    pub(crate) fn store(&self) -> &StoreClient {
        &self.store
    }

    /// This process's platform, from its settings (`RFAAS_FUNCTION_NAME`, `RFAAS_GATEWAY_URL`,
    /// `RFAAS_STORE_URL`).
    fn of_process() -> Platform {
        static PROCESS: std::sync::OnceLock<Platform> = std::sync::OnceLock::new();
        PROCESS
            .get_or_init(|| {
                let config = crate::config::process();
                Platform::new(
                    config.function_name.as_deref().unwrap_or_default(),
                    config.gateway_url.as_deref(),
                    crate::store::process_store(),
                )
            })
            .clone()
    }
}

/// The platform around one call, as a handler argument: `async fn f(ctx: Ctx, …)`. Taking it
/// never fails and reads no body, so it may stand anywhere among the arguments.
#[derive(Debug)]
pub struct Ctx {
    platform: Platform,
    call_id: Option<String>,
    depth: u32,
    traceparent: Option<HeaderValue>,
    trace: rfa_telemetry::Context,
    chained: AtomicU32,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Ctx, Infallible> {
        Ok(Ctx::new(Platform::current(), &parts.headers))
    }
}

impl Ctx {
    /// The context of a call that came with `headers`.
    pub(crate) fn new(platform: Platform, headers: &HeaderMap) -> Ctx {
        let call_id = headers
            .get(headers::CALL_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        // A depth the gateway let through is a number; anything else counts as a first call.
        let depth = headers
            .get(headers::CALL_DEPTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ctx {
            platform,
            call_id,
            depth,
            traceparent: headers.get(headers::TRACEPARENT).cloned(),
            // The handler runs under its request's span (`trace::http`).
            trace: rfa_telemetry::Context::current(),
            chained: AtomicU32::new(0),
        }
    }

    /// The function's name (`RFAAS_FUNCTION_NAME`).
    pub fn function(&self) -> &str {
        &self.platform.function
    }

    /// The call's id: the caller's `X-Call-Id` (every async call has one; a sync call only when
    /// its caller sent one).
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// How many function-to-function calls led to this one (0: called from outside).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The document store.
    pub fn store(&self) -> &StoreClient {
        &self.platform.store
    }

    /// A call of function `function` through the gateway: `POST /functions/<function>/` unless
    /// [`Call::method`] and [`Call::path`] say otherwise.
    pub fn call(&self, function: &str) -> Call {
        let n = self.chained.fetch_add(1, Ordering::Relaxed) + 1;
        let call_id = self
            .call_id
            .as_ref()
            .map(|id| format!("{id}.{n}"))
            // The gateway's rule for a call id: at most 128 characters.
            .filter(|id| id.len() <= 128);
        let mut headers = HeaderMap::new();
        if let Some(id) = call_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            headers.insert(headers::CALL_ID, id);
        }
        headers.insert(headers::CALL_DEPTH, HeaderValue::from(self.depth + 1));
        rfa_telemetry::propagate::to_http(&self.trace, &mut headers);
        if !headers.contains_key(headers::TRACEPARENT)
            && let Some(tp) = &self.traceparent
        {
            // Tracing is off here: the caller's trace still goes on, unchanged.
            headers.insert(headers::TRACEPARENT, tp.clone());
        }
        Call {
            platform: self.platform.clone(),
            function: function.to_string(),
            method: Method::POST,
            path: "/".to_string(),
            headers,
            body: Ok(Bytes::new()),
            timeout: CALL_TIMEOUT,
        }
    }
}

/// Why a call of another function did not get an answer from it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The gateway has no function of that name (its 404 `unknown-function` problem).
    #[error("calling function '{function}': {detail}")]
    UnknownFunction { function: String, detail: String },
    /// The chain of calls went deeper than the gateway serves: functions calling each other in
    /// a loop (the gateway's 508 `call-loop` problem).
    #[error("calling function '{function}': {detail}")]
    CallLoop { function: String, detail: String },
    /// Not a function name (`^[a-z][a-z0-9_]{{0,62}}$`), or a path that is not one.
    #[error("cannot call function {function:?} at {path:?}: {why}")]
    Invalid {
        function: String,
        path: String,
        why: String,
    },
    /// No gateway to call through: `RFAAS_GATEWAY_URL` is not set (outside the platform and
    /// outside the test harness).
    #[error(
        "cannot call function '{0}': no gateway (RFAAS_GATEWAY_URL is not set; the platform sets \
         it, and function_base::testing gives one in tests)"
    )]
    NoGateway(String),
    /// The body could not be encoded as JSON.
    #[error("cannot encode the body as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The gateway could not be reached or the answer not read.
    #[error("calling function '{function}': {reason}")]
    Failed { function: String, reason: String },
    /// No whole answer within the call's timeout.
    #[error("calling function '{function}': no answer within {after:?}")]
    Timeout { function: String, after: Duration },
    /// [`Answer::json`] on a body that is not that JSON.
    #[error("the answer of function '{function}' is not the JSON expected: {reason}")]
    Decode { function: String, reason: String },
}

impl CallError {
    /// What a handler answers when it passes a failed call on with `?`: 508 for a loop (its
    /// caller is in the loop too), 500 for what the handler got wrong, 502 for a function it
    /// needs that is not deployed (the handler itself exists: a 404 would say otherwise), 504 for
    /// no answer in time.
    pub fn status(&self) -> StatusCode {
        match self {
            CallError::UnknownFunction { .. } => StatusCode::BAD_GATEWAY,
            CallError::CallLoop { .. } => StatusCode::LOOP_DETECTED,
            CallError::Invalid { .. } | CallError::NoGateway(_) | CallError::Encode(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            CallError::Failed { .. } | CallError::Decode { .. } => StatusCode::BAD_GATEWAY,
            CallError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// A failed call as a problem+json answer (so a handler may return `Result<_, CallError>`).
/// Only a loop keeps its problem type: an unknown function two hops away must not read as this
/// function being unknown to the caller's `Ctx`.
impl IntoResponse for CallError {
    fn into_response(self) -> Response {
        let mut problem = Problem::new(self.status(), self.to_string());
        if matches!(self, CallError::CallLoop { .. }) {
            problem = problem.with_type(rfa_wire::problem::types::CALL_LOOP);
        }
        rfa_io::ProblemResponse(problem).into_response()
    }
}

/// A call being made: [`Ctx::call`], then what to send, then [`Call::send`].
#[must_use = "a call is made only by .send().await"]
pub struct Call {
    platform: Platform,
    function: String,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Result<Bytes, CallError>,
    timeout: Duration,
}

impl Call {
    /// The method (default `POST`).
    pub fn method(mut self, method: Method) -> Call {
        self.method = method;
        self
    }

    /// The path inside the function, with its query (default `/`): `.path("/orders/7?full=1")`.
    pub fn path(mut self, path: &str) -> Call {
        self.path = path.to_string();
        self
    }

    /// One more header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Call {
        self.headers.append(name, value);
        self
    }

    /// `body` as JSON, with `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Call {
        self.body = serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(CallError::Encode);
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    /// `body` as it is.
    pub fn body(mut self, body: impl Into<Bytes>) -> Call {
        self.body = Ok(body.into());
        self
    }

    /// How long the call may take, connecting and reading the answer included (default
    /// [`CALL_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = timeout;
        self
    }

    /// Makes the call. Any answer of the function is `Ok`, whatever its status; the gateway's
    /// own "no such function" and "loop" answers are errors.
    pub async fn send(self) -> Result<Answer, CallError> {
        let function = self.function;
        let invalid = |why: &str| CallError::Invalid {
            function: function.clone(),
            path: self.path.clone(),
            why: why.to_string(),
        };
        if !rfa_wire::names::is_valid_function_name(&function) {
            return Err(invalid(rfa_wire::names::FUNCTION_NAME_RULE));
        }
        if !self.path.starts_with('/') {
            return Err(invalid("the path must start with '/'"));
        }
        let body = self.body?;
        let Some(gateway) = &self.platform.gateway else {
            return Err(CallError::NoGateway(function));
        };
        let uri: Uri = format!("{gateway}/functions/{function}{}", self.path)
            .parse()
            .map_err(|_| invalid("not a valid URL path"))?;
        let mut request = Request::builder()
            .method(self.method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| invalid(&e.to_string()))?;
        *request.headers_mut() = self.headers;
        let failed = |reason: String| CallError::Failed {
            function: function.clone(),
            reason,
        };
        let exchange = async {
            let response = self
                .platform
                .client
                .request(request)
                .await
                .map_err(|e| failed(rfa_telemetry::error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_CALL_ANSWER)
                .collect()
                .await
                .map_err(|e| failed(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, CallError>((parts.status, parts.headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                function: function.clone(),
                after: self.timeout,
            })??;
        if let Some(problem) = gateway_problem(status, &headers, &body) {
            let detail = problem.detail;
            match problem.kind.as_str() {
                rfa_wire::problem::types::UNKNOWN_FUNCTION => {
                    return Err(CallError::UnknownFunction { function, detail });
                }
                rfa_wire::problem::types::CALL_LOOP => {
                    return Err(CallError::CallLoop { function, detail });
                }
                _ => {}
            }
        }
        Ok(Answer {
            function,
            status,
            headers,
            body,
        })
    }
}

/// The gateway's own problem answer, if `body` is one.
fn gateway_problem(status: StatusCode, headers: &HeaderMap, body: &Bytes) -> Option<Problem> {
    if !matches!(status, StatusCode::NOT_FOUND | StatusCode::LOOP_DETECTED) {
        return None;
    }
    let problem_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(rfa_wire::problem::CONTENT_TYPE));
    if !problem_json {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Another function's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    function: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| CallError::Decode {
            function: self.function.clone(),
            reason: e.to_string(),
        })
    }
}

/// Relays the answer: its status, its `Content-Type` and its body.
impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        if let Some(ct) = self.headers.get(header::CONTENT_TYPE) {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, ct.clone());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(headers: &[(&str, &str)]) -> Ctx {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let platform = Platform::new(
            "method1",
            Some("http://gw:9999/"),
            StoreClient::new("http://s"),
        );
        Ctx::new(platform, &map)
    }

    #[test]
    fn a_call_carries_the_trace_a_derived_call_id_and_the_next_depth() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = ctx(&[
            ("x-call-id", "abc"),
            ("rfa-call-depth", "3"),
            ("traceparent", tp),
        ]);
        assert_eq!(
            (c.function(), c.call_id(), c.depth()),
            ("method1", Some("abc"), 3)
        );
        let first = c.call("method2");
        let second = c.call("method2");
        assert_eq!(first.headers["x-call-id"], "abc.1");
        assert_eq!(second.headers["x-call-id"], "abc.2");
        assert_eq!(first.headers["rfa-call-depth"], "4");
        assert_eq!(first.headers["traceparent"], tp);
        assert_eq!(first.method, Method::POST);
        assert_eq!(first.platform.gateway.as_deref(), Some("http://gw:9999"));
        // A call from outside: no id (the gateway gives an async one its own), depth 1.
        let c = ctx(&[("rfa-call-depth", "nonsense")]);
        let call = c.call("x");
        assert!(call.headers.get("x-call-id").is_none());
        assert_eq!(call.headers["rfa-call-depth"], "1");
        // An id too long to extend is not sent.
        let long = "a".repeat(127);
        let c = ctx(&[("x-call-id", &long)]);
        assert!(c.call("x").headers.get("x-call-id").is_none());
    }

    #[tokio::test]
    async fn bad_calls_fail_before_sending() {
        let c = ctx(&[]);
        let e = c.call("Bad-Name").send().await.unwrap_err();
        assert!(matches!(e, CallError::Invalid { .. }), "{e}");
        let e = c.call("ok").path("no-slash").send().await.unwrap_err();
        assert!(e.to_string().contains("must start with '/'"), "{e}");
        let platform = Platform::new("f", None, StoreClient::new("http://s"));
        let c = Ctx::new(platform, &HeaderMap::new());
        let e = c.call("other").send().await.unwrap_err();
        assert!(
            matches!(e, CallError::NoGateway(_)) && e.to_string().contains("RFAAS_GATEWAY_URL")
        );
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn only_the_gateways_own_problems_are_errors() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let unknown = Problem::not_found("function 'x' is not deployed")
            .with_type(rfa_wire::problem::types::UNKNOWN_FUNCTION);
        let body = Bytes::from(serde_json::to_vec(&unknown).unwrap());
        assert_eq!(
            gateway_problem(StatusCode::NOT_FOUND, &h, &body),
            Some(unknown)
        );
        // A function's own 404 (plain text, or another problem) is its answer.
        assert_eq!(
            gateway_problem(StatusCode::NOT_FOUND, &HeaderMap::new(), &body),
            None
        );
        assert_eq!(gateway_problem(StatusCode::OK, &h, &body), None);
    }
}
