//! The HTTP API (axum): routes, request validation and the mapping of every error to an
//! `application/problem+json` body ([`Problem`]).
//!
//! Validation happens before anything is written, in this order: table name (400), id (400 on
//! PUT, 404 elsewhere: such an id cannot exist), body size (413), body is JSON (400), body is a
//! JSON object (400). Conditions (`If-Match`, 412) and existence (404) are checked inside the
//! write's transaction, so a failed condition writes nothing either.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{
    BytesRejection, PathRejection, QueryRejection, RawPathParamsRejection,
};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use rfa_wire::names::{TABLE_NAME_RULE, is_valid_table_name};
use rfa_wire::store::EventKind;
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::db::{Committed, DbError, IfMatch};
use crate::id::{ID_RULE, is_valid_id, new_id};
use crate::writer::Change;
use crate::{Shared, WriteError};

/// Default page size of `GET /tables/<t>/docs`.
pub const DEFAULT_LIMIT: usize = rfa_wire::store::DEFAULT_PAGE_LIMIT;
/// Largest page size.
pub const MAX_LIMIT: usize = rfa_wire::store::MAX_PAGE_LIMIT;
/// Deepest nesting of objects and arrays a body may have. serde_json reads at most 128 levels,
/// a stored document is one level deeper than its data and its event two, and a merge patch
/// never nests deeper than the document or the patch: so every stored document and event stays
/// readable, by the store and by the functions.
pub const MAX_DEPTH: usize = 100;

type Result<T, E = Problem> = std::result::Result<T, E>;
/// What a document handler answers: the response, or the problem as problem+json.
type Answer = Result<Response, ProblemResponse>;

/// The store's router.
pub fn router(shared: Arc<Shared>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/tables", get(list_tables))
        .route("/tables/{table}/docs", get(list_docs).post(create_doc))
        .route(
            "/tables/{table}/docs/{id}",
            get(get_doc)
                .put(put_doc)
                .patch(patch_doc)
                .delete(delete_doc),
        )
        .fallback(|| async { ProblemResponse(Problem::not_found("no such route")) })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// Counts every request and turns axum's bare 405 into a problem (keeping `Allow`).
async fn observe(
    State(shared): State<Arc<Shared>>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let table = params.ok().and_then(|p| {
        p.iter()
            .find(|(k, _)| *k == "table")
            .map(|(_, v)| v.to_string())
            .filter(|t| is_valid_table_name(t))
    });
    let span = request_span(&req);
    let mut response = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ProblemResponse(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed on this route"),
        ))
        .into_response();
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let label = match method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE => method.as_str(),
        _ => "other",
    };
    let seconds = started.elapsed().as_secs_f64();
    let code = response.status().as_u16();
    shared.metrics.observe_request(label, code, seconds);
    if let Some(route) = route {
        let table = table.as_deref();
        (shared.metrics).observe_operation(route.as_str(), &method, table, code, seconds);
    }
    response
}

/// The server span of one store request, continuing the caller's trace. Disabled while tracing is
/// off.
fn request_span(req: &Request) -> tracing::Span {
    if !rfa_telemetry::enabled() {
        return tracing::Span::none();
    }
    let path = req.uri().path();
    // `/tables/<table>/docs[/<id>]`
    let mut segments = path.split('/').skip(1);
    let (table, route) = match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("tables"), Some(table), Some("docs"), None) => (table, "/tables/{table}/docs"),
        (Some("tables"), Some(table), Some("docs"), Some(_)) => {
            (table, "/tables/{table}/docs/{id}")
        }
        _ => ("", path),
    };
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {route}", req.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        url.path = %path,
        rfaas.table = %table,
        http.response.status_code = tracing::field::Empty,
    );
    rfa_telemetry::continue_from(&span, rfa_telemetry::propagate::from_http(req.headers()));
    span
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => ProblemResponse(internal(&e)).into_response(),
    }
}

async fn list_tables(State(shared): State<Arc<Shared>>) -> Response {
    match shared.db.tables() {
        Ok(tables) => axum::Json(tables).into_response(),
        Err(e) => ProblemResponse(internal(&e)).into_response(),
    }
}

/// Query of `GET /tables/<t>/docs`; parsed by hand for precise errors.
#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

async fn list_docs(
    State(shared): State<Arc<Shared>>,
    table: Result<Path<String>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let table = table_name(table.map(|Path(t)| t))?;
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(Problem::bad_request(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, not {text:?}"
                ))
                .into());
            }
        },
    };
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(after) if is_valid_id(after) => Some(after),
        Some(after) => {
            return Err(Problem::bad_request(format!(
                "after must be a document id ({ID_RULE}), not {after:?}"
            ))
            .into());
        }
    };
    let page = shared
        .db
        .list(&table, after, limit)
        .map_err(|e| internal(&e))?;
    Ok(axum::Json(page).into_response())
}

async fn get_doc(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Answer {
    let (table, id) = doc_path(path, false)?;
    match shared.db.get_raw(&table, &id) {
        // The stored bytes are the envelope's JSON: answered as they are, not re-serialized.
        Ok(Some((bytes, version))) => {
            let mut response = Bytes::copy_from_slice(&bytes).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::ETAG, etag(version));
            Ok(response)
        }
        Ok(None) => Err(not_found(&table, &id).into()),
        Err(e) => Err(internal(&e).into()),
    }
}

async fn create_doc(
    State(shared): State<Arc<Shared>>,
    table: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let table = table_name(table.map(|Path(t)| t))?;
    let data = json_object(body)?;
    let id = new_id();
    let committed = shared
        .write(&table, &id, Change::Create(data), None)
        .await
        .map_err(|e| write_problem(e, &table, &id))?;
    Ok(committed_response(
        StatusCode::CREATED,
        &table,
        committed,
        true,
    ))
}

async fn put_doc(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let (table, id) = doc_path(path, true)?;
    let if_match = if_match(&headers)?;
    let data = json_object(body)?;
    let committed = shared
        .write(&table, &id, Change::Put(data), if_match)
        .await
        .map_err(|e| write_problem(e, &table, &id))?;
    Ok(match committed.kind {
        EventKind::NewDoc => committed_response(StatusCode::CREATED, &table, committed, true),
        _ => committed_response(StatusCode::OK, &table, committed, false),
    })
}

async fn patch_doc(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let (table, id) = doc_path(path, false)?;
    let if_match = if_match(&headers)?;
    let patch = json_object(body)?;
    let committed = shared
        .write(&table, &id, Change::Patch(patch), if_match)
        .await
        .map_err(|e| write_problem(e, &table, &id))?;
    Ok(committed_response(StatusCode::OK, &table, committed, false))
}

async fn delete_doc(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Answer {
    let (table, id) = doc_path(path, false)?;
    let if_match = if_match(&headers)?;
    shared
        .write(&table, &id, Change::Delete, if_match)
        .await
        .map_err(|e| write_problem(e, &table, &id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The written envelope's JSON, as stored, with its `ETag` (and `Location` for a created
/// document).
fn committed_response(
    status: StatusCode,
    table: &str,
    committed: Committed,
    location: bool,
) -> Response {
    let mut response = (status, committed.doc).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, etag(committed.version));
    if location {
        let path = format!("/tables/{table}/docs/{}", committed.id);
        if let Ok(path) = HeaderValue::from_str(&path) {
            headers.insert(header::LOCATION, path);
        }
    }
    response
}

/// The strong entity tag of a version: `"<version>"`.
fn etag(version: u64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn table_name(table: Result<String, PathRejection>) -> Result<String> {
    let table = table.map_err(|e| Problem::bad_request(e.body_text()))?;
    if is_valid_table_name(&table) {
        Ok(table)
    } else {
        Err(Problem::bad_request(format!(
            "invalid table name {table:?}: a table name is {TABLE_NAME_RULE}"
        )))
    }
}

/// Table and id of a document route. An id that breaks the rule is a 400 where it would be
/// created (PUT) and a 404 elsewhere.
fn doc_path(
    path: Result<Path<(String, String)>, PathRejection>,
    creating: bool,
) -> Result<(String, String)> {
    let Path((table, id)) = path.map_err(|e| Problem::bad_request(e.body_text()))?;
    let table = table_name(Ok(table))?;
    if !is_valid_id(&id) {
        return Err(if creating {
            Problem::bad_request(format!("invalid document id {id:?}: an id is {ID_RULE}"))
        } else {
            not_found(&table, &id)
        });
    }
    Ok((table, id))
}

fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>> {
    let values: Vec<&str> = headers
        .get_all(header::IF_MATCH)
        .iter()
        .map(|v| {
            v.to_str()
                .map_err(|_| Problem::bad_request("If-Match is not valid ASCII"))
        })
        .collect::<Result<_>>()?;
    if values.is_empty() {
        Ok(None)
    } else {
        Ok(Some(IfMatch::parse(&values.join(","))))
    }
}

/// The body as a JSON object, or the problem with it.
fn json_object(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>> {
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(status, "the request body is larger than the store accepts")
        } else {
            Problem::new(status, e.body_text())
        }
    })?;
    parse_object(&body)
}

/// A request body as a JSON object: the data of a `POST`/`PUT`, or the merge patch of a
/// `PATCH`. Anything else is a 400 problem saying what the body is instead.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) if depth(&value) > MAX_DEPTH => {
            Err(Problem::bad_request(format!(
                "the body is nested more than {MAX_DEPTH} objects or arrays deep; the store \
                 accepts at most {MAX_DEPTH}"
            )))
        }
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(Problem::bad_request(format!(
            "the body must be a JSON object, not {}",
            json_kind(&other)
        ))),
        Err(e) => Err(Problem::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// How many objects and arrays deep `value` is (a scalar is 0), without recursion.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn not_found(table: &str, id: &str) -> Problem {
    Problem::not_found(format!("no document {id:?} in table {table:?}"))
}

fn write_problem(e: WriteError, table: &str, id: &str) -> Problem {
    let e = match e {
        WriteError::Refused(e) => e,
        e @ WriteError::NotDurable(_) => return internal(&e),
    };
    match e {
        DbError::NotFound => not_found(table, id),
        DbError::PreconditionFailed => Problem::new(
            StatusCode::PRECONDITION_FAILED,
            format!("If-Match does not match the current version of document {id:?}"),
        ),
        e @ DbError::TooLarge { .. } => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        e @ DbError::ShuttingDown => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; retry shortly"),
        ),
        e => internal(&e),
    }
}

/// A 500, logged with its cause; the client gets no internals.
fn internal(e: &dyn std::fmt::Display) -> Problem {
    tracing::error!(error = %e, "request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the store failed to handle the request; see its log",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, DbError, Op};
    use rfa_wire::store::DocEvent;

    /// `{"a":{"a":…1…}}`, `depth` objects deep.
    fn nested(depth: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }

    /// Found while writing the `store_body` fuzz target's invariant (an accepted body reads back):
    /// serde_json refuses input nested deeper than 128, and the stored envelope is one level
    /// deeper than the body (the event two), so a body 127 levels deep was stored with 201 and
    /// then every GET, write and listing of its table answered 500.
    #[test]
    fn every_accepted_body_reads_back_and_its_event_parses() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let mut accepted = 0;
        for depth in 1..=130 {
            let Ok(body) = parse_object(nested(depth).as_bytes()) else {
                continue;
            };
            accepted = depth;
            db.write("t", "x", Op::Put(&body), None, "now", None)?;
            let stored = db.get("t", "x")?.map(|e| e.data);
            assert_eq!(stored.as_ref(), Some(&body), "depth {depth}");
            assert_eq!(db.list("t", None, 10)?.docs.len(), 1, "depth {depth}");
            for entry in db.outbox_batch(u64::MAX, 10)? {
                serde_json::from_slice::<DocEvent>(&entry.payload)?;
                db.outbox_remove(entry.seq)?;
            }
        }
        assert_eq!(accepted, MAX_DEPTH);
        Ok(())
    }

    /// Found by the `store_patch` fuzz target: without serde_json's exact float parsing, a
    /// number such as 1 followed by 127 zeros was read as a neighbouring double, written back in
    /// its shortest form and read as another one: a document's number changed between the write
    /// and the next read (and again on every PATCH).
    #[test]
    fn numbers_read_back_exactly() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Storage(e.into()))?;
        let db = Db::open(dir.path(), 1 << 20, 1 << 20)?;
        let numbers = [
            format!("1{}", "0".repeat(127)),
            "1e127".to_string(),
            "0.1".to_string(),
            "2.2250738585072014e-308".to_string(),
            "9007199254740993".to_string(),
            "1.7976931348623157e308".to_string(),
            "123456789.123456789e-30".to_string(),
        ];
        for n in numbers {
            let body = parse_object(format!(r#"{{"n":{n}}}"#).as_bytes()).unwrap();
            db.write("t", "x", Op::Put(&body), None, "now", None)?;
            let stored = db.get("t", "x")?.map(|e| e.data);
            assert_eq!(stored.as_ref(), Some(&body), "{n}");
            db.write("t", "x", Op::Patch(&Map::new()), None, "now", None)?;
            let patched = db.get("t", "x")?.map(|e| e.data);
            assert_eq!(patched.as_ref(), Some(&body), "{n} after PATCH");
        }
        Ok(())
    }

    #[test]
    fn too_deep_bodies_are_a_400_saying_so() {
        let problem = parse_object(nested(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert_eq!(problem.status, 400);
        assert!(problem.detail.contains("nested"), "{}", problem.detail);
        assert!(problem.detail.contains(&MAX_DEPTH.to_string()));
        let deep_array = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse_object(deep_array.as_bytes()).unwrap_err().status, 400);
        assert!(parse_object(nested(MAX_DEPTH).as_bytes()).is_ok());
    }
}
