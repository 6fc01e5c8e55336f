//! The admin API of scaling (token required):
//!
//! - `GET /system/load` → `[FunctionLoad]` (`rfa_wire::scale`), one per registered function: sync
//!   calls in flight (held ones too), calls accepted, idle time (from [`crate::load`]), and the
//!   async calls pending and running from the function's JetStream consumer. What the scaler
//!   polls.
//! - `POST /system/scale-function/<name>` with `{"replicas": n}`: checked here (404 unknown
//!   function; 400 for a body that is not that, or n outside the function's `scale` bounds or
//!   above `MAX_REPLICAS`), then sent to the scaler's `POST /scale/<name>`, whose answer
//!   (status and body) is relayed. No scaler, or one that does not answer: 503.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use rfa_wire::scale::{FunctionLoad, MAX_REPLICAS, ScaleRequest};

use crate::scaler;
use crate::{ProxyError, SharedState, auth};

/// Longest `/system/load` waits for JetStream's queue counts; past it they read 0.
const QUEUE_STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the gateway waits for the scaler to carry out a scale (new replicas must be healthy).
const SCALE_TIMEOUT: Duration = Duration::from_secs(120);

/// `GET /system/load`.
pub async fn load(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<Vec<FunctionLoad>>, ProxyError> {
    auth::check(&state.token, &headers)?;
    let functions = state.routes.all_live();
    let stats = futures_util::future::join_all(
        functions
            .iter()
            .map(|(route, _)| state.nats.queue_stats(&route.name)),
    );
    let stats = match tokio::time::timeout(QUEUE_STATS_TIMEOUT, stats).await {
        Ok(stats) => stats,
        Err(_) => {
            tracing::warn!("NATS did not give the queue counts in time; /system/load reports 0");
            vec![None; functions.len()]
        }
    };
    Ok(Json(
        functions
            .iter()
            .zip(stats)
            .map(|((route, live), queue)| live.report(&route.name, queue))
            .collect(),
    ))
}

/// `POST /system/scale-function/<name>`.
pub async fn scale_function(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ProxyError> {
    auth::check(&state.token, &headers)?;
    let route = state
        .routes
        .get(&name)
        .ok_or_else(|| ProxyError::UnknownFunction(name.clone()))?;
    let request = parse_scale_request(&body)?;
    let n = request.replicas;
    if n > MAX_REPLICAS {
        return Err(ProxyError::BadRequest(format!(
            "{n} replicas is more than one function may have ({MAX_REPLICAS}): ask for \
             {MAX_REPLICAS} or fewer"
        )));
    }
    if let Some(scale) = route.run.as_ref().and_then(|run| run.scale)
        && !scale.allows(n)
    {
        return Err(ProxyError::BadRequest(format!(
            "function '{name}' scales between {} and {} replicas (the scale block of its \
             deploy.json), so it cannot have {n}: ask for {}..={}, or change scale.min and \
             scale.max and deploy it again",
            scale.min, scale.max, scale.min, scale.max
        )));
    }
    let action = format!("scale function '{name}' to {n}");
    let body = serde_json::to_vec(&request)
        .map_err(|e| ProxyError::BadRequest(format!("cannot encode the request: {e}")))?;
    let answer = scaler::call(
        &state,
        Method::POST,
        &format!("/scale/{name}"),
        Some(body.into()),
        SCALE_TIMEOUT,
    )
    .await
    .map_err(|e| e.refusing(action))?;
    tracing::info!(function = %name, replicas = n, status = %answer.status, "scale request relayed to the scaler");
    Ok(answer.relay())
}

/// The body of a scale request, or a 400 that says what is wrong with it.
pub fn parse_scale_request(body: &[u8]) -> Result<ScaleRequest, ProxyError> {
    const SHAPE: &str = "send {\"replicas\": n} with n a whole number from 0";
    let bad = |what: String| ProxyError::BadRequest(format!("{what}: {SHAPE} to {MAX_REPLICAS}"));
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON ({e})")))?;
    let Some(object) = value.as_object() else {
        return Err(bad("the body is not a JSON object".to_string()));
    };
    if let Some(unknown) = object.keys().find(|k| k.as_str() != "replicas") {
        return Err(bad(format!(
            "unknown field '{unknown}' (the only field is \"replicas\")"
        )));
    }
    let Some(replicas) = object.get("replicas") else {
        return Err(bad("the field \"replicas\" is missing".to_string()));
    };
    let n = match replicas {
        serde_json::Value::Number(n) => n,
        other => {
            return Err(bad(format!("\"replicas\" is {other}, not a number")));
        }
    };
    if let Some(n) = n.as_u64() {
        return u32::try_from(n)
            .map(|replicas| ScaleRequest { replicas })
            .map_err(|_| bad(format!("\"replicas\" {n} is far too large")));
    }
    if n.as_i64().is_some() {
        return Err(bad(format!("\"replicas\" is negative ({n})")));
    }
    Err(bad(format!("\"replicas\" is not a whole number ({n})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_request_bodies() {
        assert_eq!(
            parse_scale_request(br#"{"replicas": 3}"#).unwrap(),
            ScaleRequest { replicas: 3 }
        );
        assert_eq!(
            parse_scale_request(br#"{"replicas":0}"#).unwrap().replicas,
            0
        );
        for (body, says) in [
            (&br#"{"replicas": -1}"#[..], "negative (-1)"),
            (br#"{"replicas": 1.5}"#, "not a whole number (1.5)"),
            (br#"{"replicas": "2"}"#, "not a number"),
            (
                br#"{"replicas": 2, "force": true}"#,
                "unknown field 'force'",
            ),
            (br#"{}"#, "missing"),
            (br#"[2]"#, "not a JSON object"),
            (b"two", "not JSON"),
            (br#"{"replicas": 99999999999}"#, "far too large"),
        ] {
            let e = parse_scale_request(body).unwrap_err();
            assert_eq!(e.status().as_u16(), 400);
            let text = e.to_string();
            assert!(text.contains(says), "{text}");
            assert!(text.contains("{\"replicas\": n}"), "{text}");
        }
    }
}
