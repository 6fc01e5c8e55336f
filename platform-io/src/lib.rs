//! `rfa-io`: the I/O that the platform's processes (proxy, store, function runtime) share, each
//! mechanism once.
//!
//! * [`backoff`]: the one retry policy (exponential, capped, jittered) and the retry loop.
//! * [`nats`]: connecting to NATS with retries, and getting or creating a JetStream stream.
//! * [`problem`]: an RFC 9457 [`Problem`](rfa_wire::Problem) as an axum response.
//! * [`env`]: typed reading of environment variables, with errors naming the variable.
//! * [`token`]: the admin token in force, its bearer check and its reload on `SIGHUP`.
//! * [`shutdown`]: the shutdown signal (`SIGTERM` or `SIGINT`).
//!
//! `rfa-wire` holds the names and shapes (no I/O); this crate does the talking.

pub mod backoff;
pub mod env;
pub mod nats;
pub mod problem;
pub mod shutdown;
pub mod token;

pub use backoff::Backoff;
pub use problem::ProblemResponse;
pub use token::Token;
