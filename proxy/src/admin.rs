//! `/system/functions`: the admin API the CLI registers routes with (and the scaler rewrites
//! them with). Token required.
//!
//! A put that changes a running function's `power` to `paused` or `stopped` answers once no call
//! is being forwarded to its replicas any more (at most 5 s; the scaler's client waits 10 s):
//! from the put on, new calls are held, so when the answer comes the scaler can freeze the
//! replicas without catching a call.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rfa_wire::names::{FUNCTION_NAME_RULE, is_valid_function_name};
use rfa_wire::route::FunctionRoute;

use crate::{ProxyError, SharedState, auth};

/// Longest a put that pauses or stops a function waits for the calls already forwarded to it.
const DRAIN_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn list(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    if let Err(e) = auth::check(&state.token, &headers) {
        return e.into_response();
    }
    let mut routes = state.routes.all();
    for route in &mut routes {
        route.queue = state.nats.queue_stats(&route.name).await;
    }
    Json(routes).into_response()
}

pub async fn get_one(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<FunctionRoute>, ProxyError> {
    auth::check(&state.token, &headers)?;
    let mut route = state
        .routes
        .get(&name)
        .ok_or(ProxyError::UnknownFunction(name))?;
    route.queue = state.nats.queue_stats(&route.name).await;
    Ok(Json(route))
}

pub async fn put(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ProxyError> {
    auth::check(&state.token, &headers)?;
    if !is_valid_function_name(&name) {
        return Err(ProxyError::BadRequest(format!(
            "'{name}' is not a valid function name: {FUNCTION_NAME_RULE}"
        )));
    }
    let route: FunctionRoute = serde_json::from_slice(&body)
        .map_err(|e| ProxyError::BadRequest(format!("not a function route: {e}")))?;
    if route.name != name {
        return Err(ProxyError::BadRequest(format!(
            "the body names function '{}' but the path names '{name}'",
            route.name
        )));
    }
    let before = state.routes.live(&name).map(|live| live.power());
    let created = state.routes.put(route.clone())?;
    if let Some(name_to_find) = &route.discover
        && state
            .routes
            .get(&name)
            .is_some_and(|r| r.upstreams.is_empty())
    {
        crate::discover::lookup_once(
            &state.routes,
            &crate::discover::SystemDns,
            &name,
            name_to_find,
        )
        .await;
    }
    state.metrics.set_service_counts(&state.routes.all());
    tracing::info!(function = %name, upstreams = ?route.upstreams, power = %route.power, "route registered");
    if !route.power.is_running()
        && before.is_some_and(|p| p.is_running())
        && let Some(live) = state.routes.live(&name)
    {
        // The scaler pauses or stops the replicas once this answers: no call may be on its way
        // into them then. New calls are held from the put on; wait for the ones forwarded.
        let bound = crate::wake::bound(&state.config).min(DRAIN_BOUND);
        if !live.drained(bound).await {
            tracing::warn!(
                function = %name,
                forwarding = live.forwarding(),
                bound_ms = bound.as_millis() as u64,
                "route set to {} while calls were still being forwarded",
                route.power
            );
        }
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(route)).into_response())
}

pub async fn delete(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ProxyError> {
    auth::check(&state.token, &headers)?;
    if state.routes.remove(&name)? {
        state.metrics.set_service_counts(&state.routes.all());
        tracing::info!(function = %name, "route removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ProxyError::UnknownFunction(name))
    }
}
