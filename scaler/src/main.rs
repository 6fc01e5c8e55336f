//! `rfa-scaler`: the one platform container that holds the engine's socket. Configuration comes
//! from the environment (see `Config`).

use std::net::SocketAddr;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = rfa_telemetry::init("rfa-scaler");
    let config = rfa_scaler::Config::from_env()?;
    let addr = SocketAddr::from(([0, 0, 0, 0], config.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let result = rfa_scaler::run(listener, config, rfa_io::shutdown::signal()).await;
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}
