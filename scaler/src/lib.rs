//! The rfaas scaler (`rfa-scaler`).
//!
//! The only platform container that talks to the container engine, and the only one given its
//! socket. It decides and acts: it scales functions with load, pauses and stops idle ones, and
//! wakes them when the gateway holds a call for them. It acts only on containers carrying its
//! instance's labels (docs/RELIABILITY.md, "The scaler's trust boundary").
//!
//! - `POST /wake/<name>` (token): resume or start the function; answers once it is healthy.
//! - `POST /scale/<name>` (token, [`ScaleRequest`](rfa_wire::scale::ScaleRequest)): set replicas.
//! - `GET /healthz`, `GET /metrics`.

pub mod config;

use std::future::Future;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

pub use config::Config;

/// Builds the scaler's router.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

/// Serves the scaler on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(
        addr = %listener.local_addr()?,
        instance = %config.instance,
        gateway = %config.gateway_url,
        "rfa-scaler listening"
    );
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
