//! Active health checks of ejected replicas: a replica the gateway could not reach gets no calls
//! until it answers `GET /healthz` again (as the function it is meant to be: the probe carries
//! `rfa-target`, so an address Docker gave to another function's container stays ejected). The
//! check backs off from 100 ms to 1 s (`rfa_io::Backoff`) and stops when the replica answers, when a new route
//! clears the ejection, or when no route sends calls to the replica any more.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use rfa_io::Backoff;

use crate::SharedState;

/// The longest pause between two checks of one ejected replica.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How long one check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Ejects `upstream` of `function` (it could not be reached) and, when it was not ejected yet,
/// starts checking its health until it can be readmitted.
pub fn eject(state: &SharedState, function: &str, upstream: &str) {
    if !state.routes.eject(upstream) {
        return;
    }
    tracing::warn!(
        function,
        upstream,
        "replica unreachable: no calls go to it until it answers its health check"
    );
    let state = state.clone();
    let (function, upstream) = (function.to_string(), upstream.to_string());
    tokio::spawn(async move {
        let mut pause = Backoff::new(Duration::from_millis(100), MAX_PAUSE);
        loop {
            pause.wait().await;
            if !state.routes.is_ejected(&upstream) {
                return; // a new route cleared it
            }
            if !state.routes.is_routed(&upstream) {
                state.routes.readmit(&upstream);
                return; // its function was redeployed or removed
            }
            if healthy(&state, &function, &upstream).await {
                if let Some(ejected_for) = state.routes.readmit(&upstream) {
                    tracing::info!(
                        function,
                        upstream,
                        ejected_ms = ejected_for.as_millis() as u64,
                        "replica answers its health check again: calls go to it again"
                    );
                }
                return;
            }
        }
    });
}

/// Whether `upstream` answers `GET /healthz` with 200 as `function`.
async fn healthy(state: &SharedState, function: &str, upstream: &str) -> bool {
    let Ok(request) = Request::get(format!("http://{upstream}/healthz"))
        .header(rfa_wire::headers::TARGET, function)
        .body(Body::empty())
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, state.client.request(request)).await,
        Ok(Ok(response)) if response.status() == axum::http::StatusCode::OK
    )
}
