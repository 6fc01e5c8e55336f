//! Calls to a paused or stopped function: held while the scaler wakes it, never sent into a
//! frozen container and never answered 502.
//!
//! - A sync call finds the route's `power` not `running` ([`crate::routes::RouteTable::pick`]
//!   gives it no upstream) and is held here ([`hold`]); it counts as in flight meanwhile.
//! - The gateway asks the scaler `POST <scaler>/wake/<name>` (bearer: the admin token), at most
//!   one request in flight per function ([`request_wake`]), retried with `rfa_io::Backoff` while
//!   the scaler cannot be reached.
//! - The scaler resumes (or starts) the replicas, waits for their health, then puts the route
//!   with `power: running` through the admin API; that put wakes every held call
//!   ([`crate::load::Live`]'s power watch), which picks a replica and is forwarded.
//! - Bound: min(30 s, the upstream timeout), then `503` with `Retry-After` saying whether the
//!   function is still waking or the scaler is not answering. No scaler configured: `503` at
//!   once. A wake the scaler refuses: `503` with `Retry-After` for every call held, logged.
//! - An async call to a paused or stopped function is queued as always and asks for a wake too,
//!   without waiting for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use rfa_io::Backoff;
use rfa_wire::route::Power;
use rfa_wire::scale::WakeReport;

use crate::load::Live;
use crate::routes::Picked;
use crate::scaler::{self, CallError};
use crate::{ProxyError, SharedState};

/// The longest a call is held (less when the upstream timeout is shorter).
pub const HOLD_BOUND: Duration = Duration::from_secs(30);
/// How long the gateway keeps trying to reach a scaler that does not answer, per wake.
const WAKE_RETRY_BOUND: Duration = Duration::from_secs(30);
/// How often a held call asks again (when no wake is in flight): covers a wake answered while the
/// route stays asleep, and a refusal a call subscribed too late to see.
const ASK_AGAIN: Duration = Duration::from_secs(2);

/// How long a call may be held under `config`.
pub fn bound(config: &crate::Config) -> Duration {
    HOLD_BOUND.min(config.upstream_timeout)
}

/// The `kind` label of `rfa_wake_seconds` for a function that was `power`.
pub fn kind(power: Power) -> &'static str {
    match power {
        Power::Stopped => "cold",
        _ => "resume",
    }
}

/// Holds a call whose function is paused or stopped until the function runs again (then the
/// call is picked a replica and returned, to be forwarded) or the bound passes.
pub async fn hold(state: &SharedState, name: &str, picked: Picked) -> Result<Picked, ProxyError> {
    let was = picked.route.power;
    if state.config.scaler_url.is_none() {
        return Err(ProxyError::NoScaler {
            name: name.to_string(),
            power: was,
        });
    }
    let started = Instant::now();
    let bound = bound(&state.config);
    let deadline = tokio::time::Instant::now() + bound;
    let live = picked.live.clone();
    // Subscribed before looking: a change after the look is seen.
    let mut power = live.watch_power();
    let mut failure = live.wake_failure.subscribe();
    let mut call = picked.call;
    tracing::debug!(function = name, power = %was, "call held while the function wakes");
    loop {
        let picked = state.routes.repick(name, call)?;
        if picked.upstream.is_some() {
            let waited = started.elapsed();
            state.metrics.woken(name, kind(was), waited);
            tracing::debug!(
                function = name,
                was = %was,
                waited_ms = waited.as_millis() as u64,
                "held call forwarded: the function runs again"
            );
            return Ok(picked);
        }
        call = picked.call;
        request_wake(state, name, &live);
        let changed = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                _ = power.changed() => None,
                _ = failure.changed() => failure.borrow_and_update().clone(),
                _ = tokio::time::sleep(ASK_AGAIN) => None,
            }
        })
        .await;
        match changed {
            Ok(None) => {
                power.borrow_and_update();
            }
            Ok(Some(reason)) => {
                return Err(ProxyError::WakeFailed {
                    name: name.to_string(),
                    reason: reason.to_string(),
                });
            }
            Err(_) => {
                let seconds = bound.as_secs();
                let power = picked.route.power;
                let unreachable = live
                    .scaler_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let error = match unreachable {
                    Some(reason) => ProxyError::ScalerUnreachable {
                        name: name.to_string(),
                        power,
                        reason,
                        seconds,
                    },
                    None => ProxyError::Waking {
                        name: name.to_string(),
                        power,
                        seconds,
                    },
                };
                return Err(error); // logged with the answer (forward.rs)
            }
        }
    }
}

/// Asks the scaler to wake `name`, unless a wake request for it is already in flight or no
/// scaler is configured. Does not wait: the route put that follows a wake wakes the held calls.
pub fn request_wake(state: &SharedState, name: &str, live: &Arc<Live>) {
    if state.config.scaler_url.is_none() {
        tracing::debug!(
            function = name,
            "no scaler configured: nothing wakes the function"
        );
        return;
    }
    if live.waking.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let (state, name, live) = (state.clone(), name.to_string(), live.clone());
    tokio::spawn(async move {
        wake(&state, &name, &live).await;
        live.waking
            .store(false, std::sync::atomic::Ordering::Release);
    });
}

/// One wake: `POST /wake/<name>` until the scaler answers (or the function runs anyway, or the
/// scaler has not been reachable for [`WAKE_RETRY_BOUND`]).
async fn wake(state: &SharedState, name: &str, live: &Live) {
    let path = format!("/wake/{name}");
    let given_up = Instant::now() + WAKE_RETRY_BOUND;
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let set_error = |error: Option<String>| {
        *live.scaler_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    };
    loop {
        if live.power().is_running() {
            return;
        }
        match scaler::call(state, Method::POST, &path, None, HOLD_BOUND).await {
            Ok(answer) if answer.status.is_success() => {
                set_error(None);
                match serde_json::from_slice::<WakeReport>(&answer.body) {
                    Ok(report) => tracing::info!(
                        function = name,
                        was = %report.was,
                        millis = report.millis,
                        "the scaler woke the function"
                    ),
                    Err(_) => tracing::info!(function = name, "the scaler woke the function"),
                }
                return;
            }
            Ok(answer) => {
                set_error(None);
                let reason = answer.reason();
                tracing::error!(function = name, %reason, "the scaler could not wake the function");
                live.wake_failure.send_replace(Some(Arc::from(reason)));
                return;
            }
            Err(e @ (CallError::Unreachable { .. } | CallError::Timeout(_))) => {
                let reason = e.to_string();
                set_error(Some(reason.clone()));
                if Instant::now() >= given_up {
                    tracing::error!(function = name, error = %reason, "giving up waking the function: the scaler is not answering");
                    return;
                }
                tracing::warn!(function = name, error = %reason, attempt = backoff.attempt(), "cannot reach the scaler to wake the function; retrying");
                backoff.wait().await;
            }
            Err(CallError::NotConfigured) => return,
        }
    }
}
