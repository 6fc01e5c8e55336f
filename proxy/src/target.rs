//! What the sync and the async path share about a call's target, so that neither depends on the
//! other: the function name and path taken from the URL (validated, never decoded), the
//! hop-by-hop headers a proxied request drops, and the gateway's server span of a request.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::Response;
use rfa_telemetry::{KeyValue, RequestSpan, propagate};
use rfa_wire::names::{FUNCTION_NAME_RULE, is_valid_function_name};

use crate::ProxyError;

/// Refuses a call more than [`rfa_wire::MAX_CALL_DEPTH`] function-to-function hops deep
/// (`508`), and a depth header that is not a number (`400`). No header: a call from outside.
pub fn check_depth(headers: &HeaderMap, name: &str) -> Result<(), ProxyError> {
    let Some(value) = headers.get(rfa_wire::headers::CALL_DEPTH) else {
        return Ok(());
    };
    let depth = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            ProxyError::BadRequest(format!(
                "header {} must be a whole number (the function-to-function call depth)",
                rfa_wire::headers::CALL_DEPTH
            ))
        })?;
    if depth > rfa_wire::MAX_CALL_DEPTH {
        return Err(ProxyError::CallLoop {
            name: name.to_string(),
            depth,
        });
    }
    Ok(())
}

/// Splits `/<prefix>/<name>[/<rest>]` into the name and the rest (always starting with `/`),
/// both still percent-encoded as the client sent them.
///
/// The name must follow the deploy rule (`^[a-z][a-z0-9_]{0,62}$`) as it stands: it is never
/// decoded, so `%2F`, `%2e` or any other escape in it is refused (400), as are `.`, `..` and
/// backslashes. The rest must pass [`check_rest`]. Only the name chooses the upstream, so no
/// path can reach another function.
pub fn split_target(path: &str, prefix: &str) -> Result<(String, String), ProxyError> {
    let tail = path
        .strip_prefix(prefix)
        .ok_or_else(|| ProxyError::BadRequest(format!("the path must start with {prefix}")))?;
    let (name, rest) = match tail.find('/') {
        Some(i) => (&tail[..i], &tail[i..]),
        None => (tail, "/"),
    };
    if !is_valid_function_name(name) {
        return Err(ProxyError::BadRequest(format!(
            "'{name}' is not a valid function name: {FUNCTION_NAME_RULE}; names are matched as \
             sent, never percent-decoded"
        )));
    }
    check_rest(rest)?;
    Ok((name.to_string(), rest.to_string()))
}

/// Refuses (400) a path that a server or a function could resolve outside the prefix it was
/// routed by: a `.` or `..` segment, also percent-encoded (`%2e`) or split by an encoded slash
/// (`%2F`) or a backslash, and any backslash (raw or `%5C`). The gateway does not normalize such
/// paths: a well-behaved client (browsers, curl, reqwest) never sends them, and forwarding them
/// would hand the ambiguity to every function.
pub fn check_rest(rest: &str) -> Result<(), ProxyError> {
    let lower = rest.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("%5c") {
        return Err(ProxyError::BadRequest(
            "backslashes (raw or %5C) are not allowed in the path".into(),
        ));
    }
    let decoded = lower.replace("%2e", ".").replace("%2f", "/");
    if decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(ProxyError::BadRequest(
            "'.' and '..' path segments (also percent-encoded) are not allowed: send the \
             normalized path"
                .into(),
        ));
    }
    Ok(())
}

/// The gateway's span for one request, continuing the caller's trace when it sent a
/// `traceparent`. A disabled span (no cost) while tracing is off.
pub fn server_span(req: &Request, function: Option<&str>) -> RequestSpan {
    if !rfa_telemetry::enabled() {
        return RequestSpan::disabled();
    }
    let method = req.method().as_str();
    let path = req.uri().path();
    let name = match function {
        Some(f) if path.starts_with("/async-functions/") => {
            format!("{method} /async-functions/{f}")
        }
        Some(f) => format!("{method} /functions/{f}"),
        None => format!("{method} /store"),
    };
    let mut attributes = vec![KeyValue::new("url.path", path.to_string())];
    if let Some(f) = function {
        attributes.push(KeyValue::new("rfaas.function", f.to_string()));
    }
    RequestSpan::server(name, &propagate::from_http(req.headers()), attributes)
}

/// Records the answer's status on `span` (an error status for 5xx) and passes the answer on.
pub fn finish(span: &RequestSpan, response: Response) -> Response {
    span.record_status(response.status().as_u16());
    response
}

/// Removes the hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| HeaderName::from_bytes(v.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in rfa_wire::HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn splits_targets() {
        let split = |p| split_target(p, "/functions/").unwrap();
        assert_eq!(split("/functions/a"), ("a".into(), "/".into()));
        assert_eq!(split("/functions/a/b/c"), ("a".into(), "/b/c".into()));
        assert_eq!(split("/functions/a/"), ("a".into(), "/".into()));
        assert_eq!(split("/functions/a/x%2Fy"), ("a".into(), "/x%2Fy".into()));
        assert_eq!(
            split("/functions/a/...x/.y"),
            ("a".into(), "/...x/.y".into())
        );
        assert!(split_target("/other/a", "/functions/").is_err());
    }

    #[test]
    fn refuses_names_that_are_not_names() {
        for path in [
            "/functions/",
            "/functions//a",
            "/functions/..",
            "/functions/.",
            "/functions/a%2Fb",
            "/functions/a%2fb/x",
            "/functions/%61",
            "/functions/a%2e%2e",
            "/functions/A",
            "/functions/a\\b",
            "/functions/a%5Cb",
            "/functions/a-b",
        ] {
            let e = split_target(path, "/functions/").expect_err(path);
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{path}");
        }
    }

    #[test]
    fn refuses_dot_segments_and_backslashes_in_the_rest() {
        for path in [
            "/functions/a/..",
            "/functions/a/../b",
            "/functions/a/x/../../b",
            "/functions/a/./x",
            "/functions/a/%2e%2e/b",
            "/functions/a/%2E%2E",
            "/functions/a/.%2e/b",
            "/functions/a/x%2F..%2Fb",
            "/functions/a/x%2f%2e%2e",
            "/functions/a/x\\..\\b",
            "/functions/a/x%5Cy",
        ] {
            let e = split_target(path, "/functions/").expect_err(path);
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{path}");
        }
        assert!(check_rest("/tables/t/docs").is_ok());
        assert!(check_rest("/../metrics").is_err());
    }

    #[test]
    fn strips_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
