//! `function-base`: the rfaas function SDK and runtime, linked into every function binary.
//!
//! A function crate depends on this crate alone and writes either an axum handler
//! (an HTTP or async function) or a `fn(&mut Service)` (a mainProcess service):
//!
//! ```no_run
//! use function_base::prelude::*;
//!
//! // An HTTP (or async) function: any axum handler.
//! pub async fn method2(_req: Request) -> impl IntoResponse {
//!     (StatusCode::ACCEPTED, "Accepted at method 2\n")
//! }
//!
//! // A mainProcess service: routes and store-event handlers.
//! async fn make_payment(body: String) -> impl IntoResponse {
//!     match store().table("payments").create(&json!({ "body": body })).await {
//!         Ok(doc) => (StatusCode::CREATED, Json(json!({ "id": doc.id }))).into_response(),
//!         Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
//!     }
//! }
//! async fn generate_invoice(event: DocEvent) -> Result<(), std::io::Error> {
//!     println!("invoice for {}", event.id);
//!     Ok(())
//! }
//! pub fn database_events(svc: &mut Service) {
//!     svc.route("/pay", post(make_payment));
//!     svc.on_new_doc("payments", generate_invoice);
//! }
//!
//! // What the CLI's generated `main.rs` does, for one or the other:
//! fn main() -> std::process::ExitCode {
//!     if std::env::args().count() > 1 {
//!         function_base::run_main(database_events)
//!     } else {
//!         function_base::run_http(method2)
//!     }
//! }
//! ```
//!
//! The runtime ([`run_http`], [`run_main`], or [`serve`] in-process) serves the function on
//! `0.0.0.0:$RFAAS_PORT` (6000) together with `GET /healthz` and `GET /metrics`, stops
//! gracefully on SIGTERM/SIGINT, and, when `RFAAS_NATS_URL` is set, also runs the function's
//! async calls and store-event handlers from JetStream. [`store()`] is a client of the
//! document store; [`http::get`] calls another function (or any `http://` URL).

pub mod health;
pub mod http;
pub mod prelude;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

mod callback;
mod config;
mod consume;
mod ctx;
mod events;
mod metrics;
mod nats;
mod panic;
mod runtime;
mod service;
mod stop;
mod trace;
mod worker;

pub use config::{Config, ConfigError};
pub use ctx::{Answer, CALL_TIMEOUT, Call, CallError, Ctx, MAX_CALL_ANSWER, Platform};
pub use runtime::{App, RuntimeError, run_http, run_main, serve};
pub use service::Service;
pub use store::{StoreClient, StoreError, Table, store};

/// A store event as handlers receive it (`rfa.store.<table>.<event>.<id>`).
pub use rfa_wire::store::DocEvent;

pub use axum;
pub use serde;
pub use serde_json;
pub use tokio;
