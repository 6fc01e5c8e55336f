//! A test harness (feature `testing`): `cargo test` in a function crate calls its handlers, its
//! mainProcess routes and its store-event handlers in-process, with an in-memory store and no
//! Docker, NATS or platform.
//!
//! ```no_run
//! # async fn hello(ctx: function_base::Ctx) -> &'static str { "hi" }
//! # fn shop(svc: &mut function_base::Service) {}
//! use function_base::testing::TestPlatform;
//!
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! let platform = TestPlatform::start().await?;
//! platform.http("hello", hello);                 // an HTTP or async function
//! platform.main("shop", shop)?;                  // a mainProcess service: routes and events
//! let answer = platform.call("hello").json(&serde_json::json!({"name": "Ann"})).send().await?;
//! assert_eq!(answer.status(), 200);
//! platform.store().table("orders").create(&serde_json::json!({"item": "tea"})).await?;
//! let failures = platform.settle().await;        // every event handler has run
//! assert!(failures.is_empty(), "{failures:?}");
//! # Ok(()) }
//! ```
//!
//! What it is: a gateway on `127.0.0.1:<free port>` that routes `/functions/<name>/…` to the
//! functions registered here (an unknown name: the platform's 404 problem; a call chain deeper
//! than [`rfa_wire::MAX_CALL_DEPTH`]: its 508), so [`crate::Ctx::call`] works as deployed; and an
//! in-memory store behind the same API as the real one (`/store/…`, so [`crate::StoreClient`]
//! works unchanged) that runs the registered event handlers after each write. What it is not:
//! a queue (an async function's handler is called directly and its answer returned, what the
//! callback would get), durable, or retried (a failing event handler runs once; [`settle`]
//! returns its error).
//!
//! [`settle`]: TestPlatform::settle

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use rfa_wire::store::{DocEvent, Envelope, EventKind, Page, TableInfo};
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::Service;
use crate::ctx::{Call, Ctx, Platform};
use crate::events::Subscription;
use crate::store::StoreClient;

/// Why the harness could not start or take a function.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    #[error("'{0}' is not a function name: {rule}", rule = rfa_wire::names::FUNCTION_NAME_RULE)]
    InvalidName(String),
    #[error("the setup of '{function}' is wrong: {errors}")]
    Setup { function: String, errors: String },
}

/// An in-process platform for tests: see the [module](self).
pub struct TestPlatform {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    functions: RwLock<HashMap<String, Router>>,
    /// Each with the platform of the function that subscribed.
    subscriptions: RwLock<Vec<(Platform, Subscription)>>,
    store: Mutex<MemStore>,
    /// Event handlers started and not yet awaited by `settle`.
    running: Mutex<Vec<JoinHandle<Result<(), String>>>>,
}

impl Drop for TestPlatform {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestPlatform {
    /// Starts the gateway and the store on a free port of 127.0.0.1.
    pub async fn start() -> Result<TestPlatform, TestError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(TestError::Listen)?;
        let addr = listener.local_addr().map_err(TestError::Listen)?;
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            functions: RwLock::default(),
            subscriptions: RwLock::default(),
            store: Mutex::default(),
            running: Mutex::default(),
        });
        let app = Router::new().fallback(gateway).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(TestPlatform {
            url,
            shared,
            server,
        })
    }

    /// Serves `handler` as the HTTP (or async) function `name`, as the runtime would: every
    /// method and path under `/functions/<name>/`, `Path<T>` being the path inside it.
    ///
    /// # Panics
    /// If `name` is not a function name: a mistake in the test itself.
    pub fn http<H, T>(&self, name: &str, handler: H) -> &Self
    where
        H: Handler<T, ()>,
        T: 'static,
    {
        assert!(
            rfa_wire::names::is_valid_function_name(name),
            "{}",
            TestError::InvalidName(name.to_string())
        );
        let router = Router::new()
            .route("/", axum::routing::any(handler.clone()))
            .route("/{*path}", axum::routing::any(handler));
        self.add(name, router);
        self
    }

    /// Runs the mainProcess `setup` as function `name`: its routes, and its event handlers run
    /// after each write to the store. The mistakes the runtime would refuse at start (a bad
    /// path, two handlers for one table and event) are an error here too.
    pub fn main(&self, name: &str, setup: fn(&mut Service)) -> Result<&Self, TestError> {
        if !rfa_wire::names::is_valid_function_name(name) {
            return Err(TestError::InvalidName(name.to_string()));
        }
        let mut service = Service::new();
        setup(&mut service);
        let (router, subscriptions, errors) = service.into_parts();
        if !errors.is_empty() {
            return Err(TestError::Setup {
                function: name.to_string(),
                errors: errors.join("; "),
            });
        }
        self.add(name, router);
        let platform = Platform::new(name, Some(&self.url), self.store());
        if let Ok(mut subs) = self.shared.subscriptions.write() {
            subs.extend(subscriptions.into_iter().map(|s| (platform.clone(), s)));
        }
        Ok(self)
    }

    fn add(&self, name: &str, router: Router) {
        let platform = Platform::new(name, Some(&self.url), self.store());
        let router = router
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                crate::runtime::panic_response,
            ))
            .layer(axum::middleware::from_fn(
                move |req: Request, next: axum::middleware::Next| {
                    platform.clone().scope(next.run(req))
                },
            ));
        if let Ok(mut functions) = self.shared.functions.write() {
            functions.insert(name.to_string(), router);
        }
    }

    /// A call of function `name` from outside (a client's, depth 0), through the gateway:
    /// `POST /` unless told otherwise (see [`Call`]).
    pub fn call(&self, name: &str) -> Call {
        let outside = Platform::new("test", Some(&self.url), self.store());
        Ctx::new(outside, &HeaderMap::new()).call(name)
    }

    /// The gateway's URL (`http://127.0.0.1:<port>`): `<url>/functions/<name>/…` reaches a
    /// function, e.g. for a client of the test's own.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of the in-memory store.
    pub fn store(&self) -> StoreClient {
        StoreClient::new(format!("{}/store", self.url))
    }

    /// Waits until every event handler started so far (and those their writes started) has
    /// finished; returns the errors (and panics) of those that failed.
    pub async fn settle(&self) -> Vec<String> {
        let mut failures = Vec::new();
        loop {
            let batch: Vec<_> = match self.shared.running.lock() {
                Ok(mut running) => running.drain(..).collect(),
                Err(_) => return failures,
            };
            if batch.is_empty() {
                return failures;
            }
            for task in batch {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(e),
                    Err(e) => failures.push(format!("the event handler panicked: {e}")),
                }
            }
        }
    }
}

/// The harness's one HTTP entry: `/functions/<name>/…` and `/store/…`.
async fn gateway(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/store") {
        return store_api(&shared, rest, req).await;
    }
    let Some(tail) = path.strip_prefix("/functions/") else {
        return problem(
            StatusCode::NOT_FOUND,
            "the harness serves /functions/<name>/… and /store/…",
        );
    };
    let (name, rest) = match tail.find('/') {
        Some(i) => (&tail[..i], &tail[i..]),
        None => (tail, "/"),
    };
    if let Some(depth) = req
        .headers()
        .get(rfa_wire::headers::CALL_DEPTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        && depth > rfa_wire::MAX_CALL_DEPTH
    {
        let p = Problem::new(
            StatusCode::LOOP_DETECTED,
            format!(
                "the call to function '{name}' is {depth} function-to-function calls deep, more \
                 than the {} the gateway serves",
                rfa_wire::MAX_CALL_DEPTH
            ),
        )
        .with_type(rfa_wire::problem::types::CALL_LOOP);
        return ProblemResponse(p).into_response();
    }
    let router = shared
        .functions
        .read()
        .ok()
        .and_then(|f| f.get(name).cloned());
    let Some(router) = router else {
        let p = Problem::not_found(format!("function '{name}' is not deployed"))
            .with_type(rfa_wire::problem::types::UNKNOWN_FUNCTION);
        return ProblemResponse(p).into_response();
    };
    let target = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = match target.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => return problem(StatusCode::BAD_REQUEST, "not a valid path"),
    };
    match router.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn problem(status: StatusCode, detail: &str) -> Response {
    ProblemResponse(Problem::new(status, detail)).into_response()
}

/// The store's documents, in memory: table → id → envelope.
#[derive(Default)]
struct MemStore {
    tables: BTreeMap<String, BTreeMap<String, Envelope>>,
    seq: u64,
}

/// `/tables`, `/tables/<t>/docs`, `/tables/<t>/docs/<id>`, as the real store answers them.
async fn store_api(shared: &Arc<Shared>, rest: &str, req: Request) -> Response {
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()),
    };
    let segments: Vec<String> = rest
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut events = Vec::new();
    let response = {
        let Ok(mut mem) = shared.store.lock() else {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store's lock is poisoned",
            );
        };
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["tables"]) => {
                let tables: Vec<TableInfo> = mem
                    .tables
                    .iter()
                    .map(|(name, docs)| TableInfo {
                        name: name.clone(),
                        count: docs.len() as u64,
                    })
                    .collect();
                axum::Json(tables).into_response()
            }
            (_, ["tables", table, "docs", ..]) if !rfa_wire::names::is_valid_table_name(table) => {
                problem(
                    StatusCode::BAD_REQUEST,
                    &format!("table name {table:?}: {}", rfa_wire::names::TABLE_NAME_RULE),
                )
            }
            ("GET", ["tables", table, "docs"]) => {
                let limit = param(&query, "limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(100)
                    .clamp(1, 1000);
                let after = param(&query, "after");
                let docs: Vec<Envelope> = mem
                    .tables
                    .get(*table)
                    .map(|t| {
                        t.values()
                            .filter(|d| after.as_deref().is_none_or(|a| d.id.as_str() > a))
                            .take(limit + 1)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                let next = (docs.len() > limit).then(|| docs[limit - 1].id.clone());
                let docs = docs.into_iter().take(limit).collect();
                axum::Json(Page { docs, next }).into_response()
            }
            ("POST", ["tables", table, "docs"]) => match object(&body) {
                Ok(data) => {
                    mem.seq += 1;
                    let id = format!("{:020}", mem.seq);
                    let doc = mem.write(table, &id, data, None);
                    events.push(mem.event(EventKind::NewDoc, &doc));
                    (StatusCode::CREATED, axum::Json(doc)).into_response()
                }
                Err(why) => problem(StatusCode::BAD_REQUEST, &why),
            },
            ("GET", ["tables", table, "docs", id]) => {
                match mem.tables.get(*table).and_then(|t| t.get(*id)) {
                    Some(doc) => axum::Json(doc.clone()).into_response(),
                    None => no_doc(table, id),
                }
            }
            ("PUT", ["tables", table, "docs", id]) => match object(&body) {
                Ok(data) => {
                    let old = mem.tables.get(*table).and_then(|t| t.get(*id)).cloned();
                    let created = old.is_none();
                    let doc = mem.write(table, id, data, old);
                    let kind = if created {
                        EventKind::NewDoc
                    } else {
                        EventKind::UpdatedDoc
                    };
                    events.push(mem.event(kind, &doc));
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    (status, axum::Json(doc)).into_response()
                }
                Err(why) => problem(StatusCode::BAD_REQUEST, &why),
            },
            ("PATCH", ["tables", table, "docs", id]) => {
                let Some(old) = mem.tables.get(*table).and_then(|t| t.get(*id)).cloned() else {
                    return no_doc(table, id);
                };
                match serde_json::from_slice::<Value>(&body) {
                    Ok(patch @ Value::Object(_)) => {
                        let mut data = Value::Object(old.data.clone());
                        merge(&mut data, &patch);
                        let Value::Object(data) = data else {
                            return problem(
                                StatusCode::BAD_REQUEST,
                                "the patch must keep an object",
                            );
                        };
                        let doc = mem.write(table, id, data, Some(old));
                        events.push(mem.event(EventKind::UpdatedDoc, &doc));
                        axum::Json(doc).into_response()
                    }
                    _ => problem(StatusCode::BAD_REQUEST, "a merge patch is a JSON object"),
                }
            }
            ("DELETE", ["tables", table, "docs", id]) => {
                match mem.tables.get_mut(*table).and_then(|t| t.remove(*id)) {
                    Some(doc) => {
                        events.push(mem.event(EventKind::DeletedDoc, &doc));
                        StatusCode::NO_CONTENT.into_response()
                    }
                    None => no_doc(table, id),
                }
            }
            _ => problem(
                StatusCode::NOT_FOUND,
                &format!("no store route {method} {rest}"),
            ),
        }
    };
    for event in events {
        shared.dispatch(event);
    }
    response
}

impl MemStore {
    fn write(
        &mut self,
        table: &str,
        id: &str,
        data: Map<String, Value>,
        old: Option<Envelope>,
    ) -> Envelope {
        let now = rfa_wire::time::now();
        let doc = Envelope {
            id: id.to_string(),
            table: table.to_string(),
            version: old.as_ref().map_or(1, |o| o.version + 1),
            created_at: old.map_or_else(|| now.clone(), |o| o.created_at),
            updated_at: now,
            data,
        };
        self.tables
            .entry(table.to_string())
            .or_default()
            .insert(id.to_string(), doc.clone());
        doc
    }

    fn event(&mut self, event: EventKind, doc: &Envelope) -> DocEvent {
        self.seq += 1;
        DocEvent {
            event,
            table: doc.table.clone(),
            id: doc.id.clone(),
            seq: self.seq,
            at: rfa_wire::time::now(),
            doc: doc.clone(),
        }
    }
}

impl Shared {
    /// Starts every handler subscribed to `event`'s table and kind.
    fn dispatch(&self, event: DocEvent) {
        let Ok(subs) = self.subscriptions.read() else {
            return;
        };
        for (platform, sub) in subs
            .iter()
            .filter(|(_, s)| s.table == event.table && s.event == event.event)
        {
            let task = tokio::spawn(platform.clone().scope((sub.handler)(event.clone())));
            if let Ok(mut running) = self.running.lock() {
                running.push(task);
            }
        }
    }
}

/// The document in `body`, or why it is none (the 400 problem's detail).
fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("a document is a JSON object".to_string()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn no_doc(table: &str, id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        &format!("no document {id:?} in table {table:?}"),
    )
}

/// RFC 7386 JSON Merge Patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                merge(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

/// Percent-decoding of a path segment or query value (what `StoreClient` encodes).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2))
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use crate::{Answer, CallError, store};

    async fn hello(ctx: Ctx, Path(who): Path<String>) -> String {
        format!("hello {who} from {}", ctx.function())
    }

    async fn relay(
        ctx: Ctx,
        Query(q): Query<HashMap<String, String>>,
    ) -> Result<Answer, CallError> {
        let to = q.get("to").cloned().unwrap_or_else(|| "hello".into());
        ctx.call(&to)
            .method(Method::GET)
            .path(&format!("/{}", ctx.function()))
            .send()
            .await
    }

    async fn ping(ctx: Ctx) -> Result<Answer, CallError> {
        ctx.call("pong").send().await
    }

    async fn pong(ctx: Ctx) -> Result<Answer, CallError> {
        ctx.call("ping").send().await
    }

    async fn invoice(event: DocEvent) -> Result<(), String> {
        if event.doc.data.get("fail").is_some() {
            return Err(format!("cannot invoice {}", event.id));
        }
        store()
            .table("invoices")
            .create(&json!({ "payment": event.id }))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn shop(svc: &mut Service) {
        svc.route(
            "/pay",
            post(|ctx: Ctx, Json(v): Json<Value>| async move {
                let doc = ctx
                    .store()
                    .table("payments")
                    .create(&v)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((StatusCode::CREATED, doc.id))
            }),
        );
        svc.on_new_doc("payments", invoice);
    }

    #[tokio::test]
    async fn functions_chain_and_events_run_in_process() {
        let p = TestPlatform::start().await.unwrap();
        p.http("hello", hello)
            .http("relay", relay)
            .http("ping", ping)
            .http("pong", pong);
        let a = p.call("hello").path("/ann").send().await.unwrap();
        assert_eq!(
            (a.status(), a.text()),
            (StatusCode::OK, "hello ann from hello".into())
        );
        let a = p.call("relay").send().await.unwrap();
        assert_eq!(a.text(), "hello relay from hello");
        // relay exists; the function it needs does not: its answer, not an unknown relay.
        let a = p.call("relay").path("/?to=nothere").send().await.unwrap();
        assert_eq!(a.status(), StatusCode::BAD_GATEWAY, "{}", a.text());
        assert!(
            a.text().contains("'nothere' is not deployed"),
            "{}",
            a.text()
        );
        assert!(!a.text().contains("unknown-function"), "{}", a.text());
        let e = p.call("nothere").send().await.unwrap_err();
        assert!(matches!(e, CallError::UnknownFunction { .. }), "{e}");
        // ping → pong → ping → …: the depth limit ends it, and every hop passes the 508 back.
        let e = p.call("ping").send().await.unwrap_err();
        assert!(matches!(e, CallError::CallLoop { .. }), "{e}");
        assert!(
            e.to_string().contains("17 function-to-function calls deep"),
            "{e}"
        );

        // store() in an event handler (and in a handler) is the harness's.
        p.main("shop", shop).unwrap();
        let a = p
            .call("shop")
            .path("/pay")
            .json(&json!({"amount": 3}))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), StatusCode::CREATED, "{}", a.text());
        p.store()
            .table("payments")
            .create(&json!({"fail": true}))
            .await
            .unwrap();
        let failures = p.settle().await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("cannot invoice"), "{failures:?}");
        let invoices = p.store().table("invoices").list(10, None).await.unwrap();
        assert_eq!(invoices.docs.len(), 1);
        assert_eq!(invoices.docs[0].data["payment"], a.text().as_str());
        // The store behaves as the real one: update, patch, page, delete.
        let t = p.store().table("t");
        let d = t.replace("x", &json!({"a": 1, "b": 2})).await.unwrap();
        assert_eq!(d.version, 1);
        let d = t.patch("x", &json!({"b": null, "c": 3})).await.unwrap();
        assert_eq!(
            (d.version, Value::Object(d.data)),
            (2, json!({"a": 1, "c": 3}))
        );
        assert!(t.get("y").await.unwrap().is_none());
        for i in 0..5 {
            t.create(&json!({ "i": i })).await.unwrap();
        }
        let page = t.list(4, None).await.unwrap();
        assert_eq!(page.docs.len(), 4);
        let rest = t.list(4, page.next.as_deref()).await.unwrap();
        assert_eq!((rest.docs.len(), rest.next), (2, None));
        assert!(t.delete("x").await.unwrap());
        assert!(!t.delete("x").await.unwrap());
        assert!(t.create(&json!([1])).await.is_err());
        assert!(p.main("Bad", shop).is_err());
    }
}
