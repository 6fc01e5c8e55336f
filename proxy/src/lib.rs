//! The rfaas gateway.
//!
//! One axum server on `:9999` inside `rfa-net` (published on the host's loopback):
//!
//! - `/functions/<name>[/<path>]` is reverse-proxied, streamed, to one of the function's replicas
//!   ([`forward`]); functions deployed `async` are queued instead ([`async_calls`]).
//! - `/async-functions/<name>[/<path>]` queues any function's call on JetStream and answers `202`.
//! - `/system/functions[/<name>]` is the admin API the CLI uses to register routes ([`admin`]),
//!   behind the bearer token ([`auth`]); the route table is persisted ([`routes`]).
//! - `/system/load` and `/system/scale-function/<name>` are the scaling API ([`scaling`]); a
//!   call to a paused or stopped function is held while the scaler wakes it ([`wake`]).
//! - `/store/<path>` is forwarded to the document store, behind the token.
//! - `/system/health` says whether the platform's names resolve on its network
//!   ([`dns_health`]; `startFaas` repairs the network when they do not).
//! - `/healthz` and `/metrics` (OpenFaaS gateway metric names, [`metrics`]).
//! - `/ui` is the web dashboard ([`ui`]): static files that read `/system/activity`
//!   ([`activity`]), `/system/logs/<name>` ([`logs`], relayed from the scaler) and the routes
//!   above, with the token.
//!
//! The gateway knows nothing about Docker: the CLI tells it where each function's replicas are.

pub mod activity;
pub mod admin;
pub mod async_calls;
pub mod auth;
pub mod config;
pub mod discover;
pub mod dns_health;
pub mod error;
pub mod forward;
pub mod health;
pub mod load;
pub mod logs;
pub mod metrics;
pub mod routes;
pub mod scaler;
pub mod scaling;
pub mod server;
pub mod target;
pub mod ui;
pub mod wake;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{any, get};
use tokio::net::TcpListener;

pub use config::Config;
pub use error::ProxyError;

/// Everything a request handler needs, shared by all requests.
pub struct AppState {
    pub config: Config,
    /// The admin token in force (re-read from its file on `SIGHUP`).
    pub token: auth::Token,
    pub routes: routes::RouteTable,
    pub client: forward::Client,
    pub metrics: metrics::Metrics,
    pub nats: async_calls::Nats,
    /// The metrics sampled over the last minutes, for the dashboard.
    pub samples: activity::Samples,
}

pub type SharedState = Arc<AppState>;

/// Builds the gateway's router over `state`.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::handler))
        .route("/functions/{name}", any(forward::function))
        .route("/functions/{name}/", any(forward::function))
        .route("/functions/{name}/{*rest}", any(forward::function))
        .route("/async-functions/{name}", any(async_calls::handler))
        .route("/async-functions/{name}/", any(async_calls::handler))
        .route("/async-functions/{name}/{*rest}", any(async_calls::handler))
        .route("/system/functions", get(admin::list))
        .route("/system/load", get(scaling::load))
        .route(rfa_wire::dashboard::ACTIVITY_PATH, get(activity::handler))
        .route("/system/logs/{name}", get(logs::handler))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/{file}", get(ui::file))
        .route(rfa_wire::health::PATH, get(dns_health::handler))
        .route(
            "/system/scale-function/{name}",
            axum::routing::post(scaling::scale_function),
        )
        .route(
            "/system/functions/{name}",
            get(admin::get_one).put(admin::put).delete(admin::delete),
        )
        .route("/store", any(forward::store))
        .route("/store/{*rest}", any(forward::store))
        .fallback(|| async {
            rfa_io::ProblemResponse(rfa_wire::Problem::not_found(
                "no such route on the rfaas gateway",
            ))
        })
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` completes, then drains in-flight requests.
/// `SIGHUP` makes it re-read the admin token file.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let routes = routes::RouteTable::load(config.data_dir.as_deref())?;
    let metrics = metrics::Metrics::new()?;
    metrics.set_service_counts(&routes.all());
    metrics
        .connections_max
        .set(config.limits.max_connections as i64);
    let nats = async_calls::Nats::start(config.nats_url.clone());
    let state = Arc::new(AppState {
        client: forward::client(),
        token: auth::Token::new(&config.token, config.token_file.clone()),
        config,
        routes,
        metrics,
        nats,
        samples: activity::Samples::default(),
    });
    discover::spawn(state.clone(), discover::SystemDns);
    activity::spawn(state.clone());
    state
        .token
        .reload_on_sighup()
        .context("cannot listen for SIGHUP")?;
    tracing::info!(
        addr = %listener.local_addr()?,
        max_connections = state.config.limits.max_connections,
        scaler = state.config.scaler_url.as_deref().unwrap_or("none"),
        header_timeout_seconds = state.config.limits.header_timeout.as_secs(),
        "rfa-proxy listening"
    );
    let connections = server::ConnectionMetrics {
        open: state.metrics.connections.clone(),
        rejected: state.metrics.connections_rejected.clone(),
    };
    let limits = state.config.limits.clone();
    server::serve(listener, router(state), limits, connections, shutdown).await;
    Ok(())
}
