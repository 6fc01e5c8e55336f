//! Helpers shared by the integration tests: an in-process runtime on a real loopback port,
//! and bounded polling.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use function_base::{App, RuntimeError, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A runtime serving in this process.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Sends the shutdown signal and waits (bounded) for `serve` to return.
    pub async fn stop(mut self) -> Result<(), RuntimeError> {
        self.signal_stop();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("serve did not return in time")
            .expect("serve task panicked")
    }
}

/// Serves `app` on a fresh 127.0.0.1 port.
pub async fn start(app: App) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(serve(listener, app, async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        handle,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Polls `check` every 20 ms until it gives `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A real `nats-server -js` child process with its own store directory; killed on drop.
pub struct NatsServer {
    child: std::process::Child,
    pub port: u16,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        Self::start_on(free_port()).await
    }

    /// Starts the server on `port` and waits (bounded) until JetStream answers.
    pub async fn start_on(port: u16) -> NatsServer {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            if std::path::Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".to_string()
            } else {
                "nats-server".to_string()
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let child = std::process::Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}); install it with `apt-get install nats-server`")
            });
        let server = NatsServer {
            child,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        let url = server.url.clone();
        eventually(Duration::from_secs(15), "nats-server to start", || {
            let url = url.clone();
            async move {
                let client = async_nats::connect(&url).await.ok()?;
                let js = async_nats::jetstream::new(client);
                // (`query_account` cannot parse 2.9's answer; creating a stream shows JetStream
                // is up, and every test may have the dead-letter stream.)
                rfa_io::nats::ensure_stream(&js, rfa_wire::streams::dead_letters())
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
        server
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(&self.url).await.expect("connect");
        async_nats::jetstream::new(client)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request a [`CallbackReceiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
    pub at: Instant,
}

/// An in-process HTTP receiver for callbacks: records every request and answers with the
/// scripted statuses in order (then 200).
pub struct CallbackReceiver {
    pub addr: SocketAddr,
    rx: tokio::sync::mpsc::UnboundedReceiver<Received>,
    task: JoinHandle<()>,
}

impl CallbackReceiver {
    /// `script`: (status, Retry-After) answers for the first requests.
    pub async fn start(script: Vec<(u16, Option<&'static str>)>) -> CallbackReceiver {
        Self::start_with(script, 200).await
    }

    /// Like `start`, answering `then` once the script is used up.
    pub async fn start_with(
        script: Vec<(u16, Option<&'static str>)>,
        then: u16,
    ) -> CallbackReceiver {
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (tx, script) = (tx.clone(), script.clone());
            async move {
                let path = req.uri().to_string();
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 24)
                    .await
                    .unwrap_or_default();
                let _ = tx.send(Received {
                    path,
                    headers: parts.headers,
                    body,
                    at: Instant::now(),
                });
                let next = script.lock().ok().and_then(|mut s| s.pop_front());
                let (status, retry_after) = next.unwrap_or((then, None));
                let status = axum::http::StatusCode::from_u16(status).unwrap_or_default();
                let mut response = (status, "answer").into_response();
                if let Some(v) = retry_after {
                    response.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        axum::http::HeaderValue::from_static(v),
                    );
                }
                response
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CallbackReceiver { addr, rx, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next request, waiting at most `limit`.
    pub async fn next(&mut self, limit: Duration) -> Received {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .expect("timed out waiting for a callback")
            .expect("receiver closed")
    }

    /// A request that is already there, if any.
    pub fn try_next(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }
}

impl Drop for CallbackReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of the sample line `name` (with labels) in a Prometheus text page.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /metrics` of a running runtime.
pub async fn metrics_page(server: &Running) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}
