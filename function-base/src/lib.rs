//! `function-base`: the rfaas function SDK and runtime, linked into every function binary.
//!
//! A function crate depends on this crate alone and writes either an axum handler
//! (an HTTP or async function) or a `fn(&mut Service)` (a mainProcess service):
//!
//! ```no_run
//! use function_base::prelude::*;
//!
//! pub async fn method2(_req: Request) -> impl IntoResponse {
//!     (StatusCode::ACCEPTED, "Accepted at method 2\n")
//! }
//!
//! pub fn shop(svc: &mut Service) {
//!     svc.route("/pay", post(|| async { "paid" }));
//! }
//!
//! // What the CLI's generated `main.rs` does:
//! fn main() -> std::process::ExitCode {
//!     function_base::run_http(method2)
//! }
//! ```
//!
//! The runtime ([`run_http`], [`run_main`], or [`serve`] in-process) serves the function on
//! `0.0.0.0:$RFAAS_PORT` (6000) together with `GET /healthz` and `GET /metrics`, stops
//! gracefully on SIGTERM/SIGINT, and, when `RFAAS_NATS_URL` is set, also runs the function's
//! async calls from JetStream.

pub mod prelude;

mod backoff;
mod callback;
mod config;
mod metrics;
mod nats;
mod runtime;
mod service;
mod worker;

pub use config::{Config, ConfigError};
pub use runtime::{App, RuntimeError, run_http, run_main, serve};
pub use service::Service;

/// A store event as handlers receive it (`rfa.store.<table>.<event>.<id>`).
pub use rfa_wire::store::DocEvent;

pub use axum;
pub use serde;
pub use serde_json;
pub use tokio;
