//! The gateway's listener: one HTTP/1.1 connection per accepted socket, under limits.
//!
//! - At most `max_connections` connections are served at once. The next one is answered at once
//!   with `503` (problem+json, `Retry-After`) and closed, and counted in
//!   `rfa_gateway_connections_rejected_total`; `rfa_gateway_connections` is the number open.
//! - A request head must arrive whole within `header_timeout`, counted from the connection's
//!   opening or from the end of the previous response; so a client dribbling its headers
//!   (slowloris) and an idle keep-alive connection are both closed after it.
//! - More than `max_headers` header fields, or a head larger than `max_header_bytes`, get
//!   hyper's `431 Request Header Fields Too Large` and the connection is closed.
//! - On shutdown the listener closes, idle connections close, and in-flight requests finish.
//!
//! axum's own `serve` does not expose hyper's connection builder, hence this accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntCounter, IntGauge};
use rfa_wire::Problem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::Service;

use crate::config::Limits;

/// What a refused client is told to wait before trying again.
pub const RETRY_AFTER_SECONDS: u64 = 1;
/// Refusals written at once; past this, surplus connections are closed without an answer.
const REJECTERS: usize = 64;
/// How long a refusal waits for the client's request head before answering.
const REJECT_READ: Duration = Duration::from_millis(250);
/// How long a refusal drains what the client still sends after the answer, so closing does not
/// reset the connection under it.
const REJECT_DRAIN: Duration = Duration::from_secs(1);

/// The connection counts the listener keeps up to date.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    pub rejected: IntCounter,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = limits.max_connections.clamp(1, u32::MAX as usize >> 3);
    let slots = Arc::new(Semaphore::new(max));
    let rejecters = Arc::new(Semaphore::new(REJECTERS));
    let builder = Arc::new(builder(&limits));
    let (stop, stopped) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        // Small proxied answers must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(
                    tcp,
                    remote,
                    app.clone(),
                    builder.clone(),
                    stopped.clone(),
                    slot,
                    metrics.open.clone(),
                ));
            }
            Err(_) => {
                metrics.rejected.inc();
                tracing::warn!(%remote, max, "connection refused: the gateway's connection limit is reached");
                if let Ok(rejecter) = rejecters.clone().try_acquire_owned() {
                    tokio::spawn(reject(tcp, max, rejecter));
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(());
    // Every connection holds a slot until it ends: all slots back means all connections done.
    let _ = slots.acquire_many(max as u32).await;
}

/// The HTTP/1.1 connection settings for `limits`.
fn builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    // hyper keeps up to 100 headers on the stack; only another limit needs the heap.
    if limits.max_headers != 100 {
        builder.max_headers(limits.max_headers);
    }
    builder
}

/// Serves one connection; `_slot` is given back when it ends.
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    app: Router,
    builder: Arc<http1::Builder>,
    mut stopped: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
    open: IntGauge,
) {
    let _open = Open::new(open);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        app.clone().call(req)
    });
    let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(tcp), service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            tracing::debug!(%remote, "connection closed: no whole request head within the header timeout");
        } else {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
        }
    }
}

/// Counts one open connection for as long as it lives.
struct Open(IntGauge);

impl Open {
    fn new(gauge: IntGauge) -> Open {
        gauge.inc();
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The answer to a connection past the limit.
pub fn refusal(max: usize) -> Vec<u8> {
    let problem = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the gateway already serves its limit of {max} connections: retry in \
             {RETRY_AFTER_SECONDS} s"
        ),
    );
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
         retry-after: {RETRY_AFTER_SECONDS}\r\nconnection: close\r\n\r\n",
        rfa_wire::problem::CONTENT_TYPE,
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

/// Answers `503` and closes: reads the request head first (briefly), answers, then drains.
async fn reject(mut tcp: TcpStream, max: usize, _rejecter: OwnedSemaphorePermit) {
    let mut buf = [0u8; 4096];
    let read_head = async {
        let mut tail: Vec<u8> = Vec::new();
        let mut total = 0usize;
        loop {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            total += n;
            tail.extend_from_slice(&buf[..n]);
            if tail.windows(4).any(|w| w == b"\r\n\r\n") || total > 64 * 1024 {
                return Ok(true);
            }
            let keep = tail.len().saturating_sub(3);
            tail.drain(..keep);
        }
    };
    if let Ok(Ok(false)) | Ok(Err(_)) = tokio::time::timeout(REJECT_READ, read_head).await {
        return; // The client left.
    }
    if tcp.write_all(&refusal(max)).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(REJECT_DRAIN, async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Accept errors: a client that left before it was accepted is nothing; anything else (out of
/// file descriptors, most often) is logged and waited out, as axum's `serve` does.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use tokio::io::AsyncBufReadExt;

    fn limits() -> Limits {
        Limits {
            max_connections: 2,
            header_timeout: Duration::from_millis(500),
            max_headers: 10,
            max_header_bytes: 2048,
        }
    }

    async fn start(limits: Limits) -> (SocketAddr, ConnectionMetrics, watch::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = ConnectionMetrics {
            open: IntGauge::new("open", "open").unwrap(),
            rejected: IntCounter::new("rejected", "rejected").unwrap(),
        };
        let app = Router::new().route(
            "/ip",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (tx, mut rx) = watch::channel(());
        let m = metrics.clone();
        tokio::spawn(async move {
            serve(listener, app, limits, m, async move {
                let _ = rx.changed().await;
            })
            .await
        });
        (addr, metrics, tx)
    }

    /// Sends `request` and reads until the server closes; `None` if it closed without a byte.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_with_connect_info() {
        let (addr, _, _stop) = start(limits()).await;
        let answer = exchange(
            addr,
            b"GET /ip HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("127.0.0.1"), "{answer}");
    }

    #[tokio::test]
    async fn too_many_or_too_large_headers_get_431() {
        let (addr, _, _stop) = start(limits()).await;
        let many: String = (0..20).map(|i| format!("x-h{i}: v\r\n")).collect();
        let answer = exchange(
            addr,
            format!("GET /ip HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        let big = "v".repeat(4096);
        let answer = exchange(
            addr,
            format!("GET /ip HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }

    #[tokio::test]
    async fn a_dribbled_head_and_an_idle_connection_are_closed_after_the_timeout() {
        let (addr, metrics, _stop) = start(limits()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        tcp.write_all(b"GET /ip HTTP/1.1\r\n").await.unwrap();
        let mut closed = false;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tcp.write_all(b"x-a: b\r\n").await.is_err() {
                closed = true;
                break;
            }
            let mut byte = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut byte)).await
            {
                closed = true;
                break;
            }
        }
        assert!(closed, "the dribbling client was not cut off");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // A keep-alive connection that goes quiet after one answer.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tcp = tokio::io::BufReader::new(tcp);
        tcp.get_mut()
            .write_all(b"GET /ip HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut line = String::new();
        tcp.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let idle = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest))
            .await
            .expect("the idle connection is closed")
            .unwrap();
        assert!(
            idle.elapsed() >= Duration::from_millis(400),
            "{:?}",
            idle.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(metrics.open.get(), 0);
    }

    #[tokio::test]
    async fn connections_past_the_limit_get_503_and_are_counted() {
        let (addr, metrics, stop) = start(Limits {
            header_timeout: Duration::from_secs(30),
            ..limits()
        })
        .await;
        let _held: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        for _ in 0..50 {
            if metrics.open.get() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.open.get(), 2);
        let answer = exchange(addr, b"GET /ip HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(answer.contains("\"status\":503"), "{answer}");
        assert_eq!(metrics.rejected.get(), 1);
        drop(_held);
        // Slots come back: a new connection is served.
        let mut served = false;
        for _ in 0..50 {
            let answer = exchange(
                addr,
                b"GET /ip HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await;
            if answer.starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served);
        let _ = stop.send(());
    }
}
