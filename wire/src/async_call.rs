//! The queued async call: how the gateway turns an HTTP request into the headers of a NATS
//! message on `rfa.async.<name>` ([`encode`]), and how the function's worker reads them back
//! ([`AsyncCall::decode`]) and rebuilds the request ([`AsyncCall::request`]).
//!
//! The message's payload is the request body; its headers are the request's own headers plus
//! [`ASYNC_METHOD`](crate::headers::ASYNC_METHOD), [`ASYNC_PATH`](crate::headers::ASYNC_PATH),
//! [`CALL_ID`](crate::headers::CALL_ID) and [`NATS_MSG_ID`](crate::headers::NATS_MSG_ID).
//! NATS header names are case-sensitive while HTTP's are not, so a request header that spells
//! one of the queue's own names in another case (`rfa-method: DELETE`) is dropped rather than
//! queued beside it: otherwise the worker sees both, and which one wins depends on the order of
//! a hash map.

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::headers;

/// Why a request cannot be queued as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The path (with its query) cannot be a NATS header value.
    Path(String),
    /// The call id cannot be a NATS header value.
    CallId(String),
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::Path(p) => write!(f, "the path {p:?} cannot be queued"),
            EncodeError::CallId(c) => write!(f, "the call id {c:?} cannot be queued"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Whether `name` is one of the queue's own headers (`Rfa-Method`, `Rfa-Path`, `Nats-*`) or the
/// gateway's `rfa-target`, compared without case. Such request headers are not queued and not
/// passed to the function.
pub fn is_queue_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(headers::ASYNC_METHOD)
        || name.eq_ignore_ascii_case(headers::ASYNC_PATH)
        || name.eq_ignore_ascii_case(headers::TARGET)
        || name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
}

/// The NATS headers of an async call: the request's headers (those that are text and not the
/// queue's own, see [`is_queue_header`]), then its method, `path` (inside the function, with
/// `?query`) and `call_id` (also the `Nats-Msg-Id`, so JetStream drops a repeated call id).
pub fn encode(
    method: &Method,
    path: &str,
    call_id: &str,
    request_headers: &HeaderMap,
) -> Result<async_nats::HeaderMap, EncodeError> {
    let path_value =
        async_nats::HeaderValue::from_str(path).map_err(|_| EncodeError::Path(path.into()))?;
    let id_value = async_nats::HeaderValue::from_str(call_id)
        .map_err(|_| EncodeError::CallId(call_id.into()))?;
    let mut out = async_nats::HeaderMap::new();
    for (name, value) in request_headers {
        if is_queue_header(name.as_str()) || name.as_str() == headers::CALL_ID {
            continue;
        }
        let (Ok(name), Some(value)) = (
            async_nats::HeaderName::from_str(name.as_str()),
            value
                .to_str()
                .ok()
                .and_then(|v| async_nats::HeaderValue::from_str(v).ok()),
        ) else {
            continue;
        };
        out.append(name, value);
    }
    let method_value = async_nats::HeaderValue::from_str(method.as_str())
        .map_err(|_| EncodeError::Path(path.into()))?;
    out.insert(headers::ASYNC_METHOD, method_value);
    out.insert(headers::ASYNC_PATH, path_value);
    out.insert(headers::CALL_ID, id_value.clone());
    out.insert(headers::NATS_MSG_ID, id_value);
    Ok(out)
}

/// An async call as the gateway queued it, read back from the message's headers.
#[derive(Debug, Clone)]
pub struct AsyncCall {
    /// The original request's method (`POST` when the message does not say).
    pub method: String,
    /// The path inside the function, with its query; always starts with `/`.
    pub path: String,
    /// `X-Call-Id`, else `Nats-Msg-Id`, else empty (the worker then names the call by its
    /// stream sequence).
    pub call_id: String,
    /// `X-Callback-Url`, when given and not blank.
    pub callback_url: Option<String>,
    /// The original request's headers, without the queue's own.
    pub headers: HeaderMap,
}

impl AsyncCall {
    /// Reads a queued call from its message's headers. Never fails: what cannot be an HTTP
    /// header is left out, and a call without method or path is a `POST /`.
    pub fn decode(nats_headers: Option<&async_nats::HeaderMap>) -> AsyncCall {
        let mut call = AsyncCall {
            method: Method::POST.to_string(),
            path: "/".to_string(),
            call_id: String::new(),
            callback_url: None,
            headers: HeaderMap::new(),
        };
        let mut msg_id = None;
        if let Some(nats_headers) = nats_headers {
            for (name, values) in nats_headers.iter() {
                let name = name.to_string();
                let name = name.as_str();
                let first = values.first().map(|v| v.as_str().to_string());
                if name.eq_ignore_ascii_case(headers::ASYNC_METHOD) {
                    call.method = first.unwrap_or(call.method);
                    continue;
                }
                if name.eq_ignore_ascii_case(headers::ASYNC_PATH) {
                    call.path = first.unwrap_or(call.path);
                    continue;
                }
                if name.eq_ignore_ascii_case(headers::NATS_MSG_ID) {
                    msg_id = first;
                    continue;
                }
                if is_queue_header(name)
                    || name.eq_ignore_ascii_case(header::CONTENT_LENGTH.as_str())
                {
                    continue;
                }
                if name.eq_ignore_ascii_case(headers::CALL_ID) {
                    call.call_id = first.clone().unwrap_or_default();
                }
                if name.eq_ignore_ascii_case(headers::CALLBACK_URL) {
                    call.callback_url = first.clone().filter(|u| !u.trim().is_empty());
                }
                let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                    continue;
                };
                for value in values {
                    if let Ok(value) = HeaderValue::from_str(value.as_str()) {
                        call.headers.append(name.clone(), value);
                    }
                }
            }
        }
        if !call.path.starts_with('/') {
            call.path.insert(0, '/');
        }
        if call.call_id.is_empty() {
            call.call_id = msg_id.unwrap_or_default();
        }
        call
    }

    /// The HTTP request the function runs, or why the message cannot be one (a method or path
    /// that is not valid HTTP).
    pub fn request<B>(&self, body: B) -> Result<http::Request<B>, http::Error> {
        let mut request = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.path.as_str())
            .body(body)?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn round_trip() {
        let h = request_headers(&[
            ("content-type", "application/json"),
            ("x-callback-url", "http://cb:8000/r"),
            ("x-tag", "a"),
            ("x-tag", "b"),
        ]);
        let nats = encode(&Method::PUT, "/items/3?x=1", "call-1", &h).unwrap();
        let call = AsyncCall::decode(Some(&nats));
        assert_eq!(call.method, "PUT");
        assert_eq!(call.path, "/items/3?x=1");
        assert_eq!(call.call_id, "call-1");
        assert_eq!(call.callback_url.as_deref(), Some("http://cb:8000/r"));
        let tags: Vec<_> = call.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert!(call.headers.get("rfa-method").is_none());
        let request = call.request(()).unwrap();
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(request.uri(), "/items/3?x=1");
    }

    /// Found by the `async_message` fuzz target: a request header `rfa-method` or `rfa-path`
    /// was queued beside the gateway's own `Rfa-Method`/`Rfa-Path` (NATS header names are
    /// case-sensitive), and the worker took whichever its hash map listed last, so a call could
    /// run with another method or path than the one it was queued with.
    #[test]
    fn request_headers_cannot_override_the_queued_method_or_path() {
        let h = request_headers(&[
            ("rfa-method", "DELETE"),
            ("rfa-path", "/admin"),
            ("nats-msg-id", "other"),
            ("nats-expected-stream", "X"),
            ("rfa-target", "other_function"),
        ]);
        let nats = encode(&Method::POST, "/work", "id-7", &h).unwrap();
        let names: Vec<String> = nats.iter().map(|(n, _)| n.to_string()).collect();
        for name in [
            "rfa-method",
            "rfa-path",
            "nats-msg-id",
            "nats-expected-stream",
            "rfa-target",
        ] {
            assert!(!names.iter().any(|n| n == name), "{name} queued: {names:?}");
        }
        // The hash map's order differs between maps: decode many, every one must agree.
        for _ in 0..32 {
            let nats = encode(&Method::POST, "/work", "id-7", &h).unwrap();
            let call = AsyncCall::decode(Some(&nats));
            assert_eq!(
                (call.method.as_str(), call.path.as_str()),
                ("POST", "/work")
            );
            assert_eq!(call.call_id, "id-7");
        }
    }

    #[test]
    fn decodes_what_it_can() {
        assert_eq!(AsyncCall::decode(None).path, "/");
        let mut nats = async_nats::HeaderMap::new();
        nats.insert("Rfa-Path", "no-slash");
        nats.insert("Nats-Msg-Id", "m1");
        nats.insert("Rfa-Method", "NOT A METHOD");
        let call = AsyncCall::decode(Some(&nats));
        assert_eq!(call.path, "/no-slash");
        assert_eq!(call.call_id, "m1");
        assert!(call.request(()).is_err());
        assert!(encode(&Method::GET, "/a\r\nb", "x", &HeaderMap::new()).is_err());
    }
}
