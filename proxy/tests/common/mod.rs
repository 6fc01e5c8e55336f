//! What the gateway's in-process tests share: a real gateway (`rfa_proxy::run`) on 127.0.0.1
//! port 0, stopped when its handle drops, and route registration through its admin API.

use std::path::PathBuf;
use std::time::Duration;

use rfa_proxy::Config;
use rfa_wire::route::FunctionRoute;
use tokio::net::TcpListener;

/// The admin token of every test gateway.
pub const TOKEN: &str = "test-token";

/// A test gateway's configuration: no NATS, an unreachable store, the given scaler.
pub fn config(
    port: u16,
    scaler: Option<String>,
    upstream_timeout: Duration,
    data_dir: Option<PathBuf>,
) -> Config {
    Config {
        port,
        token: TOKEN.to_string(),
        token_file: None,
        store_url: "http://127.0.0.1:9".to_string(),
        nats_url: None,
        data_dir,
        max_body: 1 << 20,
        max_async_body: 1 << 16,
        upstream_timeout,
        limits: Default::default(),
        scaler_url: scaler,
    }
}

/// Runs a gateway on `listener` with `config`; it stops when the returned sender drops.
pub fn start(listener: TcpListener, config: Config) -> (String, tokio::sync::oneshot::Sender<()>) {
    let addr = listener.local_addr().expect("the listener's address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        rfa_proxy::run(listener, config, async move {
            let _ = stopped.await;
        })
        .await
    });
    (format!("http://{addr}"), stop)
}

/// Registers `route` with the gateway at `gateway` (the CLI's and the scaler's way).
pub async fn put_route(client: &reqwest::Client, gateway: &str, route: &FunctionRoute) {
    let r = client
        .put(format!("{gateway}/system/functions/{}", route.name))
        .bearer_auth(TOKEN)
        .json(route)
        .send()
        .await
        .expect("the gateway answers");
    assert!(r.status().is_success(), "put: {}", r.status());
}
