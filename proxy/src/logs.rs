//! `GET /system/logs/<name>?tail=N` (token): the function's last log lines from every replica,
//! as `[LogLine]` (`rfa_wire::dashboard`), oldest first. The gateway knows nothing of Docker, so
//! it relays the scaler's `GET /logs/<name>` (the one container that holds the engine's socket,
//! and reads only its instance's labelled function containers). 404 for an unknown function,
//! 400 for a `tail` that is not a whole number from 1 to `MAX_LOG_TAIL`, 503 without a scaler.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use rfa_wire::dashboard::{DEFAULT_LOG_TAIL, MAX_LOG_TAIL};

use crate::scaler;
use crate::{ProxyError, SharedState, auth};

/// Longest the gateway waits for the scaler to read the logs.
const LOGS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, serde::Deserialize)]
pub struct LogQuery {
    tail: Option<String>,
}

/// `tail` as asked, or a 400 that says what is allowed.
pub fn parse_tail(tail: Option<&str>) -> Result<usize, ProxyError> {
    let Some(text) = tail else {
        return Ok(DEFAULT_LOG_TAIL);
    };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_LOG_TAIL).contains(&n) => Ok(n),
        _ => Err(ProxyError::BadRequest(format!(
            "tail={text} is not a line count: give a whole number from 1 to {MAX_LOG_TAIL}"
        ))),
    }
}

/// `GET /system/logs/<name>`.
pub async fn handler(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ProxyError> {
    auth::check(&state.token, &headers)?;
    if state.routes.get(&name).is_none() {
        return Err(ProxyError::UnknownFunction(name));
    }
    let tail = parse_tail(query.tail.as_deref())?;
    let action = format!("read the logs of '{name}'");
    let answer = scaler::call(
        &state,
        Method::GET,
        &format!("/logs/{name}?tail={tail}"),
        None,
        LOGS_TIMEOUT,
    )
    .await
    .map_err(|e| e.refusing(action))?;
    Ok(answer.relay())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_is_a_bounded_line_count() {
        assert_eq!(parse_tail(None).unwrap(), DEFAULT_LOG_TAIL);
        assert_eq!(parse_tail(Some("5")).unwrap(), 5);
        for bad in ["0", "-1", "x", "1001", ""] {
            let e = parse_tail(Some(bad)).unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.to_string().contains("from 1 to 1000"), "{e}");
        }
    }
}
