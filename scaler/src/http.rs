//! The scaler's HTTP API on the instance's private network: the gateway asks it to wake a
//! function, relays `proxyCli scale`, and relays the dashboard's log view (read only, this
//! instance's function containers only). All need the platform's admin token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rfa_engine::FunctionEngine;
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use rfa_wire::names::is_valid_function_name;
use rfa_wire::scale::ScaleRequest;

use crate::act::{ActError, Actor};
use crate::policy::Reason;
use rfa_io::Token;

pub struct Api<E> {
    pub actor: Arc<Actor<E>>,
    pub token: Token,
}

impl<E> Clone for Api<E> {
    fn clone(&self) -> Self {
        Api {
            actor: self.actor.clone(),
            token: self.token.clone(),
        }
    }
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    ProblemResponse(Problem::new(status, detail)).into_response()
}

fn refuse<E>(api: &Api<E>, headers: &HeaderMap, name: &str) -> Option<Response> {
    if !api.token.accepts(headers) {
        return Some(problem(
            StatusCode::UNAUTHORIZED,
            "the scaler needs the platform's admin token (Authorization: Bearer <token>)",
        ));
    }
    if !is_valid_function_name(name) {
        return Some(problem(
            StatusCode::BAD_REQUEST,
            format!("'{name}' is not a valid function name"),
        ));
    }
    None
}

fn failed(e: ActError) -> Response {
    let status = match &e {
        ActError::NotDeployed(_) => StatusCode::NOT_FOUND,
        ActError::TooMany(_) => StatusCode::BAD_REQUEST,
        ActError::Redeployed { .. } => StatusCode::CONFLICT,
        ActError::NotOnSwarm(_) => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    problem(status, e.to_string())
}

/// `POST /wake/<name>`.
pub async fn wake<E: FunctionEngine + 'static>(
    State(api): State<Api<E>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse(&api, &headers, &name) {
        return refused;
    }
    match api.actor.wake(&name).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => {
            tracing::error!(function = %name, error = %e, "cannot wake");
            failed(e)
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct LogQuery {
    tail: Option<usize>,
}

/// `GET /logs/<name>?tail=N`: the function's last log lines from every replica, as
/// `[LogLine]`, oldest first (the gateway relays it as `GET /system/logs/<name>`).
pub async fn logs<E: FunctionEngine + 'static>(
    State(api): State<Api<E>>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<LogQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse(&api, &headers, &name) {
        return refused;
    }
    let tail = query
        .tail
        .unwrap_or(rfa_wire::dashboard::DEFAULT_LOG_TAIL)
        .clamp(1, rfa_wire::dashboard::MAX_LOG_TAIL);
    match api.actor.recent_logs(&name, tail).await {
        Ok(lines) => Json(lines).into_response(),
        Err(e) => {
            tracing::warn!(function = %name, error = %e, "cannot read the logs");
            failed(e)
        }
    }
}

/// `POST /scale/<name>` with a [`ScaleRequest`].
pub async fn scale<E: FunctionEngine + 'static>(
    State(api): State<Api<E>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = refuse(&api, &headers, &name) {
        return refused;
    }
    let request: ScaleRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("not a scale request ({{\"replicas\": <0..=64>}}): {e}"),
            );
        }
    };
    let guard = api.actor.lock(&name).await;
    match api
        .actor
        .scale_to(guard, &name, request.replicas, Reason::Manual)
        .await
    {
        Ok(route) => Json(route).into_response(),
        Err(e) => {
            tracing::error!(function = %name, error = %e, "cannot scale");
            failed(e)
        }
    }
}
