//! The `rfa-store` binary: reads its configuration from the environment, logs JSON lines to
//! stdout and serves until SIGTERM or SIGINT, then flushes the database and exits.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `RFAAS_PORT` | 5001 | port to listen on (all interfaces) |
//! | `RFAAS_DATA_DIR` | `/data` | where the database lives |
//! | `RFAAS_NATS_URL` | unset | NATS to publish events to; unset keeps them in the outbox |
//! | `RUST_LOG` | `info` | log filter |

use std::net::Ipv4Addr;

use anyhow::Context;
use rfa_io::env::{Env, EnvError};
use rfa_wire::{STORE_PORT, env};
use tokio::net::TcpListener;

/// mimalloc rather than glibc's malloc: a write allocates and frees across the tokio workers
/// and the writer thread, where glibc's arenas cost ~17 µs of CPU per create (an A/B run:
/// 89 → 72 µs, creates/s +19 %; see docs/BENCHMARKS.md, issue #5). Built with `no_thp`: with
/// transparent huge pages, mimalloc's eagerly committed arena made the idle store 48 MiB
/// instead of 8.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rfa_telemetry::init("rfa-store");

    let (port, config) = from_env()?;

    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        .await
        .with_context(|| format!("cannot listen on port {port}"))?;

    let shutdown = rfa_io::shutdown::signal();

    let result = rfa_store::run(listener, config, shutdown)
        .await
        .context("rfa-store failed");
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

/// The port to listen on and the store's configuration, read from the environment once.
fn from_env() -> Result<(u16, rfa_store::Config), EnvError> {
    let vars = Env::process();
    let port = vars.number(env::PORT, STORE_PORT)?;
    let data_dir = vars
        .text(env::DATA_DIR)
        .unwrap_or_else(|| "/data".to_string());
    let mut config = rfa_store::Config::new(data_dir);
    config.nats_url = vars.text(env::NATS_URL);
    Ok((port, config))
}
