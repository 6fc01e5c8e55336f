//! Everything that crosses a process boundary in rfaas and must be spelled the same on both
//! sides: ports, environment variables, HTTP headers, NATS subjects and streams, the store's
//! document envelope and event payload, the route records the CLI registers with the proxy, and
//! the `application/problem+json` error body.
//!
//! This crate knows no I/O: it holds names, shapes and validation rules only.

pub mod dashboard;
pub mod health;
pub mod names;
pub mod problem;
pub mod route;
pub mod scale;
pub mod store;
pub mod time;

pub use problem::Problem;

/// Port the gateway listens on inside `rfa-net` (and, by default, on the host's loopback).
pub const PROXY_PORT: u16 = 9999;
/// Port the document store listens on inside `rfa-net`.
pub const STORE_PORT: u16 = 5001;
/// Port every function container listens on.
pub const FUNCTION_PORT: u16 = 6000;
/// NATS client port inside `rfa-net`.
pub const NATS_PORT: u16 = 4222;
/// Port the scaler (`rfa-scaler`) listens on inside `rfa-net` (never published).
pub const SCALER_PORT: u16 = 7070;
/// NATS monitoring port (its `/healthz` tells when JetStream is ready).
pub const NATS_MONITOR_PORT: u16 = 8222;

/// Environment variables the platform sets in its containers.
pub mod env {
    /// URL of the NATS server (`nats://rfa-nats:4222` inside an instance).
    pub const NATS_URL: &str = "RFAAS_NATS_URL";
    /// Base URL of the document store (`http://rfa-store:5001`).
    pub const STORE_URL: &str = "RFAAS_STORE_URL";
    /// The deployed function's name.
    pub const FUNCTION_NAME: &str = "RFAAS_FUNCTION_NAME";
    /// The function's kind: `http`, `async` or `main`.
    pub const FUNCTION_KIND: &str = "RFAAS_FUNCTION_KIND";
    /// The admin bearer token (proxy only; the CLI passes it as a file, see `TOKEN_FILE`).
    pub const TOKEN: &str = "RFAAS_TOKEN";
    /// A file holding the admin bearer token (proxy only); re-read on `SIGHUP`.
    pub const TOKEN_FILE: &str = "RFAAS_TOKEN_FILE";
    /// Where a platform server keeps its data (`/data`).
    pub const DATA_DIR: &str = "RFAAS_DATA_DIR";
    /// The port a server listens on.
    pub const PORT: &str = "RFAAS_PORT";
    /// Largest request body the gateway accepts for sync calls, in bytes.
    pub const MAX_BODY: &str = "RFAAS_MAX_BODY_BYTES";
    /// Largest async call body, in bytes.
    pub const MAX_ASYNC_BODY: &str = "RFAAS_MAX_ASYNC_BODY_BYTES";
    /// Upstream timeout of the gateway, in seconds.
    pub const UPSTREAM_TIMEOUT: &str = "RFAAS_UPSTREAM_TIMEOUT_SECONDS";
    /// Most client connections the gateway holds open at once; more get `503` and are closed.
    pub const MAX_CONNECTIONS: &str = "RFAAS_MAX_CONNECTIONS";
    /// Seconds a client has to send a whole request head (also how long an idle keep-alive
    /// connection is kept).
    pub const HEADER_TIMEOUT: &str = "RFAAS_HEADER_TIMEOUT_SECONDS";
    /// Most header fields in one request (more: `431`).
    pub const MAX_HEADERS: &str = "RFAAS_MAX_HEADERS";
    /// Largest request head (request line and headers), in bytes (larger: `431`).
    pub const MAX_HEADER_BYTES: &str = "RFAAS_MAX_HEADER_BYTES";
    /// Most async calls one function replica runs at once (default 8); also the `max_ack_pending`
    /// of the function's shared JetStream consumer.
    pub const MAX_INFLIGHT: &str = "RFAAS_MAX_INFLIGHT";
    /// Base URL of the scaler (`http://rfa-scaler:7070`), for the gateway: where it asks for a
    /// wake or a scale.
    pub const SCALER_URL: &str = "RFAAS_SCALER_URL";
    /// Base URL of the gateway inside the instance's network (`http://rfa-proxy:9999`): for the
    /// scaler (load and routes) and for functions (`Ctx::call` calls other functions there).
    pub const GATEWAY_URL: &str = "RFAAS_GATEWAY_URL";
    /// The platform instance's label value (`default` or the `--instance` name), for the scaler:
    /// it acts only on containers carrying it.
    pub const INSTANCE: &str = "RFAAS_INSTANCE";
    /// The scaler: `swarm` when the instance runs on Docker Swarm (functions are services),
    /// anything else or unset for containers on one engine.
    pub const ENGINE_MODE: &str = "RFAAS_ENGINE_MODE";
}

/// HTTP header names used across rfaas (OpenFaaS spellings where one exists).
pub mod headers {
    pub const CALL_ID: &str = "x-call-id";
    pub const CALLBACK_URL: &str = "x-callback-url";
    pub const FUNCTION_NAME: &str = "x-function-name";
    pub const FUNCTION_STATUS: &str = "x-function-status";
    pub const DURATION_SECONDS: &str = "x-duration-seconds";
    pub const TRACEPARENT: &str = "traceparent";
    pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
    /// On an async call's NATS message: the HTTP method of the original request.
    pub const ASYNC_METHOD: &str = "Rfa-Method";
    /// On an async call's NATS message: the path inside the function (`/` + rest), with `?query`.
    pub const ASYNC_PATH: &str = "Rfa-Path";
    /// On a dead-lettered message: why it was given up.
    pub const DEAD_REASON: &str = "Rfa-Dead-Reason";
    /// Set by the gateway on every call it forwards to a function: the function's name. A replica
    /// of another function (an address Docker gave to a new container after the old one died)
    /// answers `421` with this header naming itself, so a call never runs in the wrong function.
    pub const TARGET: &str = "rfa-target";
    /// How many function-to-function hops led to this call (`Ctx::call` sends its own call's
    /// depth plus one). The gateway refuses a call deeper than [`MAX_CALL_DEPTH`] with `508`, so
    /// a loop of functions calling each other ends instead of holding every replica.
    ///
    /// [`MAX_CALL_DEPTH`]: crate::MAX_CALL_DEPTH
    pub const CALL_DEPTH: &str = "rfa-call-depth";
}

/// The deepest chain of function-to-function calls the gateway serves (see
/// [`headers::CALL_DEPTH`]).
pub const MAX_CALL_DEPTH: u32 = 16;

/// NATS subjects and JetStream streams.
pub mod subjects {
    /// Stream holding async calls (work queue, file storage).
    pub const ASYNC_STREAM: &str = "RFA_ASYNC";
    /// Stream holding store events.
    pub const STORE_STREAM: &str = "RFA_STORE";
    /// Stream holding given-up async calls and events, for inspection.
    pub const DEAD_STREAM: &str = "RFA_DEAD";

    /// `rfa.async.<name>`: the async calls of one function.
    pub fn async_call(function: &str) -> String {
        format!("rfa.async.{function}")
    }

    /// `rfa.store.<table>.<event>.<id>`.
    pub fn store_event(table: &str, event: &str, id: &str) -> String {
        format!("rfa.store.{table}.{event}.{id}")
    }

    /// The durable consumer through which a function's replicas share its async calls.
    pub fn async_consumer(function: &str) -> String {
        format!("fn-{function}")
    }

    /// `rfa.dead.<name>`: given-up work of one function.
    pub fn dead_letter(function: &str) -> String {
        format!("rfa.dead.{function}")
    }
}

/// Headers that describe one connection rather than a message (RFC 9110 §7.6.1); a proxy drops
/// them, along with any header named in `Connection`.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[cfg(feature = "nats")]
pub mod async_call;
#[cfg(feature = "nats")]
pub mod streams;
