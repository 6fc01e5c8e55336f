//! Helpers for the store's integration tests: a real `nats-server` child process, the store
//! served in-process on a loopback port, an HTTP client and an event reader.
//!
//! Every wait is a bounded polling loop ([`WAIT`]); nothing asserts after a fixed sleep.
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures_util::StreamExt;
use rfa_wire::store::DocEvent;
use rfa_wire::{Problem, headers, problem};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The longest any test waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(20);
/// Pause between two polls.
pub const POLL: Duration = Duration::from_millis(20);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `check` until it returns `Some`, for at most [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Res<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A `nats-server -js` child process, killed on drop.
pub struct Nats {
    child: Child,
    pub port: u16,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts on a free port.
    pub async fn start() -> Res<Nats> {
        Self::start_on(free_port()).await
    }

    /// Starts on `port` and waits until JetStream answers.
    pub async fn start_on(port: u16) -> Res<Nats> {
        let dir = tempfile::tempdir()?;
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {binary} (apt-get install nats-server): {e}"))?;
        let nats = Nats {
            child,
            port,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        let url = nats.url.clone();
        eventually("JetStream to answer", || {
            let url = url.clone();
            async move {
                let client = async_nats::connect(url.as_str()).await.ok()?;
                let js = jetstream::new(client);
                rfa_io::nats::ensure_stream(&js, rfa_wire::streams::store_events())
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await?;
        Ok(nats)
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> Res<jetstream::Context> {
        Ok(jetstream::new(
            async_nats::connect(self.url.as_str()).await?,
        ))
    }

    /// Messages in the store-events stream.
    pub async fn stream_len(&self) -> Res<u64> {
        let js = self.jetstream().await?;
        let mut stream = js.get_stream(rfa_wire::subjects::STORE_STREAM).await?;
        Ok(stream.info().await?.state.messages)
    }

    /// Reads the first `n` events of the stream (waiting for them), in stream order.
    pub async fn events(&self, n: usize) -> Res<Vec<Event>> {
        let js = self.jetstream().await?;
        let stream = js.get_stream(rfa_wire::subjects::STORE_STREAM).await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: "rfa.store.>".into(),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let deadline = Instant::now() + WAIT;
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match tokio::time::timeout(left, messages.next()).await {
                Ok(Some(msg)) => msg?,
                Ok(None) => return Err("the consumer ended".into()),
                Err(_) => {
                    return Err(
                        format!("only {} of {n} events arrived in time", events.len()).into(),
                    );
                }
            };
            let msg_id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(headers::NATS_MSG_ID))
                .map(|v| v.as_str().to_string())
                .ok_or("an event has no Nats-Msg-Id")?;
            events.push(Event {
                subject: msg.subject.to_string(),
                msg_id,
                event: serde_json::from_slice(&msg.payload)?,
            });
        }
        Ok(events)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One event as read from JetStream.
#[derive(Debug, Clone)]
pub struct Event {
    pub subject: String,
    pub msg_id: String,
    pub event: DocEvent,
}

/// A store served in-process, on its own task.
pub struct Store {
    pub base: String,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), rfa_store::Error>>>,
}

impl Store {
    /// Serves a store on `dir` on a fresh loopback port.
    pub async fn start(dir: &Path, nats_url: Option<&str>) -> Res<Store> {
        let mut config = rfa_store::Config::new(dir);
        config.nats_url = nats_url.map(str::to_string);
        config.nats_backoff_max = Duration::from_millis(500);
        Self::start_with(config).await
    }

    pub async fn start_with(config: rfa_store::Config) -> Res<Store> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let dir = config.data_dir.clone();
        let task = tokio::spawn(rfa_store::run(listener, config, async move {
            let _ = rx.await;
        }));
        Ok(Store {
            base,
            dir,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Shuts the store down gracefully and waits until its database is closed.
    pub async fn stop(mut self) -> TestResult {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await???;
        }
        Ok(())
    }

    /// The value of one unlabelled metric.
    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> Res<f64> {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .ok_or_else(|| format!("no metric {name}").into())
    }

    /// Waits until the outbox is empty (every event acknowledged).
    pub async fn outbox_drained(&self, client: &reqwest::Client) -> TestResult {
        eventually("the outbox to drain", || async {
            let pending = self.metric(client, "rfa_store_outbox_pending").await.ok()?;
            (pending == 0.0).then_some(())
        })
        .await
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts that `resp` is a problem with `status`, and returns it.
pub async fn expect_problem(resp: reqwest::Response, status: u16) -> Res<Problem> {
    let got = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await?;
    if got != status {
        return Err(format!("expected {status}, got {got}: {body}").into());
    }
    if ctype != problem::CONTENT_TYPE {
        return Err(format!("expected problem+json, got {ctype:?}: {body}").into());
    }
    let p: Problem = serde_json::from_str(&body)?;
    if p.status != status {
        return Err(format!("problem status {} != {status}", p.status).into());
    }
    Ok(p)
}

/// The `ETag` of a response.
pub fn etag(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
