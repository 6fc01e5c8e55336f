//! The runtime: builds the router around the user's code, serves it, and stops gracefully.
//!
//! [`serve`] does the work and runs in-process in tests; [`run_http`] and [`run_main`] are
//! what a function binary's `main` calls: they read the environment, start logging and a
//! tokio runtime, bind `0.0.0.0:$RFAAS_PORT` and serve until SIGTERM or SIGINT.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rfa_io::ProblemResponse;
use rfa_wire::Problem;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::{error, info, warn};

use crate::config::{self, Config, ConfigError};
use crate::events::{EventConsumer, Subscription};
use crate::metrics::{self, Metrics};
use crate::nats;
use crate::panic::panic_message;
use crate::service::Service;
use crate::stop::stopped;
use crate::worker::Worker;

/// Why the runtime could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid service setup: {0}")]
    Setup(String),
    #[error("cannot start the tokio runtime: {0}")]
    Tokio(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A function ready to be served: the user's routes and the runtime settings.
pub struct App {
    router: Router,
    subscriptions: Vec<Subscription>,
    config: Config,
}

impl App {
    /// An HTTP (or async) function: `handler` answers every method on every path. The path
    /// inside the function (after `/functions/<name>/`) is its one path parameter, so
    /// `Path<String>` (or `Path<u32>`, …) reads it; at the function's root there is none (take
    /// `Option<Path<T>>` to serve both).
    pub fn from_handler<H, T>(handler: H, config: Config) -> App
    where
        H: Handler<T, ()>,
        T: 'static,
    {
        App {
            router: Router::new()
                .route("/", axum::routing::any(handler.clone()))
                .route("/{*path}", axum::routing::any(handler)),
            subscriptions: Vec::new(),
            config,
        }
    }

    /// A mainProcess service, as its setup function filled it in.
    pub fn from_service(service: Service, config: Config) -> Result<App, RuntimeError> {
        let (router, subscriptions, errors) = service.into_parts();
        if !errors.is_empty() {
            return Err(RuntimeError::Setup(errors.join("; ")));
        }
        Ok(App {
            router,
            subscriptions,
            config,
        })
    }

    /// The settings this app will run with.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Serves an HTTP function: `handler` answers every method on every path.
///
/// This is what the generated `main` of an HTTP or async function calls. Returns when the
/// process got SIGTERM/SIGINT and in-flight requests finished (exit code 0), or when the
/// function could not start (non-zero, the reason is logged).
///
/// Started as `<binary> healthcheck`, it checks the function serving beside it instead
/// ([`crate::health`]).
pub fn run_http<H, T>(handler: H) -> ExitCode
where
    H: Handler<T, ()>,
    T: 'static,
{
    if crate::health::requested() {
        return crate::health::run();
    }
    match Config::from_env() {
        Ok(config) => run(Ok(App::from_handler(handler, config))),
        Err(e) => run(Err(e.into())),
    }
}

/// Serves a mainProcess function: `setup` adds its routes (and event handlers) to a
/// [`Service`]. Exit codes as for [`run_http`].
pub fn run_main(setup: fn(&mut Service)) -> ExitCode {
    if crate::health::requested() {
        return crate::health::run();
    }
    let app = Config::from_env()
        .map_err(RuntimeError::from)
        .and_then(|config| {
            let mut service = Service::new();
            setup(&mut service);
            App::from_service(service, config)
        });
    run(app)
}

/// Starts the tokio runtime and telemetry, binds the port and serves until a shutdown signal.
fn run(app: Result<App, RuntimeError>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("function runtime failed: {}", RuntimeError::Tokio(e));
            return ExitCode::FAILURE;
        }
    };
    if let Ok(app) = &app {
        config::set_process(&app.config);
    }
    let function = app
        .as_ref()
        .ok()
        .and_then(|a| a.config.function_name.as_deref());
    let telemetry = {
        let _inside = runtime.enter();
        rfa_telemetry::init(&service_name(function))
    };
    let result = app.and_then(|app| {
        runtime.block_on(async move {
            let addr = SocketAddr::from(([0, 0, 0, 0], app.config.port));
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| RuntimeError::Bind { addr, source })?;
            serve(listener, app, rfa_io::shutdown::signal()).await
        })
    });
    let code = match result {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "function runtime failed");
            ExitCode::FAILURE
        }
    };
    // The runtime still runs the exporter's connection while the last spans are flushed.
    telemetry.shutdown();
    code
}

/// `rfa-fn-<name>` for the deployed function `name`.
fn service_name(function: Option<&str>) -> String {
    match function {
        Some(name) => format!("rfa-fn-{name}"),
        None => "rfa-fn".to_string(),
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting connections,
/// lets in-flight requests finish for at most the configured drain time, and returns.
///
/// Besides the user's routes, the server answers `GET /healthz` (`ok`) and `GET /metrics`
/// (Prometheus text). A panicking handler gives a 500 problem and the server keeps serving.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let metrics = Metrics::new()?;
    let config = app.config;
    let router = build_router(app.router, metrics.clone(), config.function_name.as_deref());
    let drain = config.drain_timeout;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let mut background = start_background(
        &config,
        &router,
        app.subscriptions,
        &metrics,
        stop_rx.clone(),
    );

    if let Ok(addr) = listener.local_addr() {
        info!(%addr, function = config.function_name.as_deref().unwrap_or("-"),
            kind = %config.kind, "listening");
    }
    let signal = {
        let stop_tx = stop_tx.clone();
        async move {
            shutdown.await;
            info!("shutting down: no new connections, finishing in-flight work");
            stop_tx.send_replace(true);
        }
    };
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);

    let finished = tokio::select! {
        result = &mut server => Some(result),
        () = stopped(&mut stop_rx) => None,
    };
    let deadline = tokio::time::Instant::now() + drain;
    let result = match finished {
        Some(result) => result,
        None => match tokio::time::timeout_at(deadline, &mut server).await {
            Ok(result) => result,
            Err(_) => {
                warn!(
                    seconds = drain.as_secs_f64(),
                    "requests still running after the drain time; stopping anyway"
                );
                Ok(())
            }
        },
    };
    // Also when the server ended on its own: the background work stops too.
    stop_tx.send_replace(true);
    if let Some(task) = background.as_mut()
        && tokio::time::timeout_at(deadline, &mut *task).await.is_err()
    {
        warn!("async work still running after the drain time; it will be redelivered");
        task.abort();
    }
    result.map_err(RuntimeError::Serve)
}

/// Starts the NATS side (async calls, store events) when NATS is configured.
fn start_background(
    config: &Config,
    router: &Router,
    subscriptions: Vec<Subscription>,
    metrics: &Metrics,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let (url, function) = match (&config.nats_url, &config.function_name) {
        (Some(url), Some(function)) => (url.clone(), function.clone()),
        (None, _) => {
            if !subscriptions.is_empty() {
                warn!(
                    "{} is not set: store events are not delivered",
                    rfa_wire::env::NATS_URL
                );
            }
            return None;
        }
        (Some(_), None) => {
            warn!(
                "{} is set but {} is not: async calls and store events are not run",
                rfa_wire::env::NATS_URL,
                rfa_wire::env::FUNCTION_NAME
            );
            return None;
        }
    };
    let events = subscriptions
        .into_iter()
        .map(|s| Arc::new(EventConsumer::new(&function, s, metrics.clone(), config)))
        .collect();
    let worker = Arc::new(Worker::new(
        function,
        router.clone(),
        metrics.clone(),
        config,
    ));
    Some(tokio::spawn(nats::run(url, worker, events, stop)))
}

/// The user's router wrapped in panic catching and metrics, next to the runtime's endpoints.
/// `function` is this function's name, when it has one.
fn build_router(user: Router, metrics: Metrics, function: Option<&str>) -> Router {
    let function: Option<Arc<str>> = function.map(Arc::from);
    let user = user
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            function.clone().unwrap_or_else(|| Arc::from("")),
            crate::trace::http,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::handler).with_state(metrics))
        .fallback_service(user)
        .layer(axum::middleware::from_fn_with_state(function, check_target))
}

/// Refuses a call the gateway meant for another function (`rfa-target` names it): `421` with
/// `rfa-target` naming this one. Happens when a container died and Docker gave its address to a
/// container of another function before the gateway's name lookup caught up.
async fn check_target(
    axum::extract::State(me): axum::extract::State<Option<Arc<str>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let wanted = req
        .headers()
        .get(rfa_wire::headers::TARGET)
        .and_then(|v| v.to_str().ok());
    match misdirected(me.as_deref(), wanted) {
        Some(refusal) => {
            warn!(function = ?me, wanted, "refused a call meant for another function");
            refusal
        }
        None => next.run(req).await,
    }
}

/// The `421` for a call meant for `wanted` arriving at function `me`; `None` when it may run (the
/// names match, or either is unknown: a function run by hand, a caller other than the gateway).
fn misdirected(me: Option<&str>, wanted: Option<&str>) -> Option<Response> {
    let (me, wanted) = (me?, wanted?);
    if me == wanted {
        return None;
    }
    let mut response = ProblemResponse(Problem::new(
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        format!("this is function '{me}', not '{wanted}'"),
    ))
    .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(me) {
        response.headers_mut().insert(rfa_wire::headers::TARGET, v);
    }
    Some(response)
}

#[cfg(test)]
mod target_tests {
    use super::misdirected;

    #[test]
    fn a_call_meant_for_another_function_is_a_421_naming_this_one() {
        let refusal = misdirected(Some("database_events"), Some("echo")).unwrap();
        assert_eq!(refusal.status().as_u16(), 421);
        assert_eq!(
            refusal.headers()[rfa_wire::headers::TARGET],
            "database_events"
        );
        assert!(misdirected(Some("echo"), Some("echo")).is_none());
        assert!(misdirected(None, Some("echo")).is_none());
        assert!(misdirected(Some("echo"), None).is_none());
    }
}

/// The answer to a request whose handler panicked.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error!(panic = %panic_message(panic.as_ref()), "the function panicked");
    ProblemResponse(Problem::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "the function panicked while handling the request",
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_fails_without_panicking() {
        let taken = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let config = Config {
            port: taken.local_addr().expect("addr").port(),
            ..Config::default()
        };
        let code = run(Ok(App::from_handler(|| async { "hi" }, config)));
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[test]
    fn a_bad_setup_fails_without_panicking() {
        let mut service = Service::new();
        service.route("/pay", get(|| async { "a" }));
        service.route("/pay", get(|| async { "b" }));
        service.route("no-slash", get(|| async { "c" }));
        let app = App::from_service(service, Config::default());
        let Err(RuntimeError::Setup(message)) = &app else {
            panic!("expected a setup error");
        };
        assert!(
            message.contains("/pay") && message.contains("no-slash"),
            "{message}"
        );
        assert_eq!(run(app), ExitCode::FAILURE);
    }
}
