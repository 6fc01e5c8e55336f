//! A client for the rfaas document store (`RFAAS_STORE_URL`, `http://rfa-store:5001` inside
//! the platform): `function_base::store().table("payments").create(&doc).await?`.

use std::time::Duration;

use axum::http::{Method, Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rfa_wire::Problem;

use crate::http::HttpClient;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use rfa_wire::store::{Envelope, Page, TableInfo};

/// Where the store is when `RFAAS_STORE_URL` is not set.
pub const DEFAULT_STORE_URL: &str = "http://rfa-store:5001";
/// How long one store request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from the store.
const MAX_ANSWER: usize = 64 << 20;

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL (or a URL built from it) is not a usable http URL.
    #[error("invalid store URL {0:?}")]
    InvalidUrl(String),
    /// The store could not be reached or did not answer in time.
    #[error("cannot reach the store: {0}")]
    Unreachable(String),
    /// The store refused the request; its problem detail says why.
    #[error("the store answered {} {}: {}", .0.status, .0.title, .0.detail)]
    Api(Problem),
    /// The document could not be encoded as JSON.
    #[error("cannot encode the document: {0}")]
    Encode(#[source] serde_json::Error),
    /// The store's answer was not what the API promises.
    #[error("unexpected answer from the store: {0}")]
    Decode(String),
}

impl StoreError {
    /// The HTTP status of an [`StoreError::Api`] error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            StoreError::Api(problem) => Some(problem.status_code()),
            _ => None,
        }
    }
}

/// A client of the store. Cheap to clone; clones share their connections.
#[derive(Clone)]
pub struct StoreClient {
    base: String,
    client: HttpClient,
}

impl std::fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreClient")
            .field("base", &self.base)
            .finish()
    }
}

/// A client of the platform's store: `RFAAS_STORE_URL` (default `http://rfa-store:5001`), or,
/// inside the test harness, its in-memory store. Clones share their connections.
pub fn store() -> StoreClient {
    crate::ctx::Platform::current().store().clone()
}

/// The store of `RFAAS_STORE_URL` (default `http://rfa-store:5001`).
pub(crate) fn process_store() -> StoreClient {
    let url = crate::config::process().store_url.as_deref();
    StoreClient::new(url.unwrap_or(DEFAULT_STORE_URL))
}

impl StoreClient {
    /// A client of the store at `base_url` (e.g. `http://127.0.0.1:5001`).
    pub fn new(base_url: impl Into<String>) -> Self {
        StoreClient {
            base: base_url.into().trim_end_matches('/').to_string(),
            client: crate::http::client(TIMEOUT),
        }
    }

    /// The store's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The documents of one table.
    pub fn table(&self, name: &str) -> Table {
        Table {
            client: self.clone(),
            name: name.to_string(),
        }
    }

    /// Every table with its document count.
    pub async fn tables(&self) -> Result<Vec<TableInfo>, StoreError> {
        let (status, body) = self.send(Method::GET, "/tables".to_string(), None).await?;
        expect(status, &body, &[StatusCode::OK])?;
        decode(&body)
    }

    /// One request: the answer's status and body.
    async fn send(
        &self,
        method: Method,
        path: String,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), StoreError> {
        let url = format!("{}{path}", self.base);
        let uri: Uri = url
            .parse()
            .map_err(|_| StoreError::InvalidUrl(url.clone()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(StoreError::InvalidUrl(url));
        }
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let mut request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?;
        // The store's span continues the caller's (a request, async call or event handler).
        rfa_telemetry::propagate::to_http(
            &rfa_telemetry::Context::current(),
            request.headers_mut(),
        );
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| StoreError::Unreachable(rfa_telemetry::error_chain(&e)))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| StoreError::Unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| StoreError::Unreachable(format!("no answer within {TIMEOUT:?}")))?
    }
}

/// The documents of one table of the store.
#[derive(Clone, Debug)]
pub struct Table {
    client: StoreClient,
    name: String,
}

impl Table {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn docs_path(&self) -> String {
        format!("/tables/{}/docs", encode(&self.name))
    }

    fn doc_path(&self, id: &str) -> String {
        format!("{}/{}", self.docs_path(), encode(id))
    }

    /// Stores `doc` (which must serialize to a JSON object) under a new id.
    pub async fn create<T: Serialize + ?Sized>(&self, doc: &T) -> Result<Envelope, StoreError> {
        let body = to_body(doc)?;
        let (status, answer) = self
            .client
            .send(Method::POST, self.docs_path(), Some(body))
            .await?;
        expect(status, &answer, &[StatusCode::CREATED, StatusCode::OK])?;
        decode(&answer)
    }

    /// The document `id`, or `None` when there is none.
    pub async fn get(&self, id: &str) -> Result<Option<Envelope>, StoreError> {
        let (status, answer) = self
            .client
            .send(Method::GET, self.doc_path(id), None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        expect(status, &answer, &[StatusCode::OK])?;
        decode(&answer).map(Some)
    }

    /// Replaces the data of document `id` (creating it if there is none).
    pub async fn replace<T: Serialize + ?Sized>(
        &self,
        id: &str,
        doc: &T,
    ) -> Result<Envelope, StoreError> {
        let body = to_body(doc)?;
        let (status, answer) = self
            .client
            .send(Method::PUT, self.doc_path(id), Some(body))
            .await?;
        expect(status, &answer, &[StatusCode::OK, StatusCode::CREATED])?;
        decode(&answer)
    }

    /// Applies a JSON Merge Patch (RFC 7386) to the data of document `id`.
    pub async fn patch(&self, id: &str, patch: &serde_json::Value) -> Result<Envelope, StoreError> {
        let body = to_body(patch)?;
        let (status, answer) = self
            .client
            .send(Method::PATCH, self.doc_path(id), Some(body))
            .await?;
        expect(status, &answer, &[StatusCode::OK])?;
        decode(&answer)
    }

    /// Deletes document `id`: `true` if it existed.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let (status, answer) = self
            .client
            .send(Method::DELETE, self.doc_path(id), None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect(status, &answer, &[StatusCode::NO_CONTENT, StatusCode::OK])?;
        Ok(true)
    }

    /// Up to `limit` documents in id order, after the id `after` (the previous page's `next`).
    pub async fn list(&self, limit: usize, after: Option<&str>) -> Result<Page, StoreError> {
        let mut path = format!("{}?limit={limit}", self.docs_path());
        if let Some(after) = after {
            path.push_str("&after=");
            path.push_str(&encode(after));
        }
        let (status, answer) = self.client.send(Method::GET, path, None).await?;
        expect(status, &answer, &[StatusCode::OK])?;
        decode(&answer)
    }
}

fn to_body<T: Serialize + ?Sized>(doc: &T) -> Result<Bytes, StoreError> {
    serde_json::to_vec(doc)
        .map(Bytes::from)
        .map_err(StoreError::Encode)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::Decode(e.to_string()))
}

/// `Ok` for an expected status, else the store's problem (or one made from the answer).
fn expect(status: StatusCode, body: &[u8], ok: &[StatusCode]) -> Result<(), StoreError> {
    if ok.contains(&status) {
        return Ok(());
    }
    let problem = serde_json::from_slice::<Problem>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let text: String = text.chars().take(500).collect();
        Problem::new(status, text)
    });
    Err(StoreError::Api(problem))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a path segment or a
/// query value).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode("01HX-a_b"), "01HX-a_b");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn problems_are_kept() {
        let body = br#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"not an object"}"#;
        let e = expect(StatusCode::BAD_REQUEST, body, &[StatusCode::OK]);
        let Err(StoreError::Api(problem)) = e else {
            panic!("expected a problem");
        };
        assert_eq!(problem.detail, "not an object");
        let e = expect(StatusCode::BAD_GATEWAY, b"oops", &[StatusCode::OK]);
        assert!(e.is_err_and(
            |e| e.status() == Some(StatusCode::BAD_GATEWAY) && e.to_string().contains("oops")
        ));
    }
}
