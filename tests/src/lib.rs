//! Helpers for the end-to-end tests: each test runs the real `proxyCli` against the real Docker
//! engine in a platform instance of its own (`--instance`, its own port and config directory),
//! so tests run in parallel and never touch a platform the user runs.
//!
//! The binaries are the release builds in `target/release` (the test command builds them first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub mod browser;
pub mod inner_engine;
pub mod otlp;
pub mod swarm;

pub use reqwest;
pub use serde_json;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `target/release/proxyCli`.
pub fn cli_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let path = target.join("release").join("proxyCli");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --workspace` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The result of one CLI run, with its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the whole output unless the command succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed:\n{self}");
        self
    }

    /// Panics unless the command failed.
    pub fn failed(self) -> Run {
        assert_ne!(self.code, 0, "command should have failed:\n{self}");
        self
    }

    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One platform instance owned by a test. Dropping it removes everything it made.
pub struct Platform {
    pub instance: String,
    pub port: u16,
    config: tempfile::TempDir,
    started: bool,
}

impl Platform {
    /// A new, not yet started instance named after `test`.
    pub fn new(test: &str) -> Platform {
        let suffix: u32 = rand::random::<u32>() % 100_000;
        let instance = format!("t-{}-{suffix}", test.replace('_', "-"));
        Platform {
            instance,
            port: free_port(),
            config: tempfile::tempdir().expect("a temp dir"),
            started: false,
        }
    }

    /// Starts it and waits until `startFaas` reports it up.
    pub fn start(test: &str) -> Platform {
        let mut p = Platform::new(test);
        p.start_faas(&[]).ok();
        p
    }

    /// Runs `proxyCli startFaas --port <port> <extra>`.
    pub fn start_faas(&mut self, extra: &[&str]) -> Run {
        self.started = true;
        let port = self.port.to_string();
        let mut args = vec!["startFaas", "--port", port.as_str()];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    /// Runs `proxyCli startFaas --port <port> <extra>` with extra environment variables.
    pub fn start_faas_env(&mut self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        self.started = true;
        let port = self.port.to_string();
        let mut args = vec!["startFaas", "--port", port.as_str()];
        args.extend_from_slice(extra);
        self.cli_env(&args, env)
    }

    /// Runs `proxyCli <args>` for this instance.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[])
    }

    /// Runs `proxyCli <args>` for this instance with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(cli_path());
        cmd.args(args)
            .env("RFAAS_INSTANCE", &self.instance)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env_remove("RFAAS_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("proxyCli runs"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The admin token `startFaas` wrote.
    pub fn token(&self) -> String {
        let path = self
            .config
            .path()
            .join("rfaas")
            .join(format!("token-{}", self.instance));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("token at {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    pub fn token_path(&self) -> PathBuf {
        self.config
            .path()
            .join("rfaas")
            .join(format!("token-{}", self.instance))
    }

    /// `<base>-<instance>`: the name of one of this instance's objects.
    pub fn object(&self, base: &str) -> String {
        format!("{base}-{}", self.instance)
    }

    /// `nats://<ip>:4222` of this instance's NATS container, as the host reaches it (the host
    /// reaches container IPs on the bridge directly). The IP can change when it is recreated.
    pub fn nats_url(&self) -> String {
        let c = inspect(&self.object("rfa-nats"));
        let ip = c["NetworkSettings"]["Networks"]
            .as_object()
            .and_then(|n| n.values().next())
            .and_then(|n| n["IPAddress"].as_str())
            .unwrap_or_else(|| panic!("no IP address for {}", self.object("rfa-nats")))
            .to_string();
        format!("nats://{ip}:{}", rfa_wire::NATS_PORT)
    }

    /// Names of containers labelled as this instance's.
    pub fn containers(&self) -> Vec<String> {
        docker_lines(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.rfaas.instance={}", self.instance),
            "--format",
            "{{.Names}}",
        ])
    }
}

impl Drop for Platform {
    /// Removes the instance: its containers and network (`stopFaas`), its volumes and generated
    /// crates. Not `--prune`: that would also remove the shared images other tests are using.
    fn drop(&mut self) {
        if self.started {
            let _ = self.cli(&["stopFaas"]);
            let label = format!("label=io.rfaas.instance={}", self.instance);
            let volumes = Command::new("docker")
                .args(["volume", "ls", "-q", "--filter", &label])
                .output();
            if let Ok(out) = volumes {
                for v in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["volume", "rm", v]).output();
                }
            }
            let _ = std::fs::remove_dir_all(root().join("deployments").join(&self.instance));
        }
    }
}

/// Runs `docker <args>`; panics if docker fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Non-empty output lines of `docker <args>`.
pub fn docker_lines(args: &[&str]) -> Vec<String> {
    docker(args)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// `docker inspect <name>` as JSON (the first object).
pub fn inspect(name: &str) -> serde_json::Value {
    let text = docker(&["inspect", name]);
    let list: serde_json::Value = serde_json::from_str(&text).expect("inspect JSON");
    list[0].clone()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A reqwest client for loopback calls.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests").join("fixtures").join(name)
}

/// Writes `deploy.json` with `entries` into a new temp dir and returns both.
pub fn deploy_file(entries: serde_json::Value) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("deploy.json");
    std::fs::write(&path, serde_json::json!({ "deploy": entries }).to_string()).expect("write");
    (dir, path)
}

/// One deploy entry for the function `name` of the echo fixture (`echo` or `boom`).
pub fn echo_entry(name: &str) -> serde_json::Value {
    let dir = fixture("echo");
    serde_json::json!({
        "name": name,
        "packageDir": dir,
        "filePath": dir.join("src").join("lib.rs"),
    })
}

/// Id of a running container.
pub fn container_id(name: &str) -> String {
    inspect(name)["Id"].as_str().unwrap_or_default().to_string()
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

/// A callback receiver on the host, reachable from containers as
/// `http://host.docker.internal:<port>`. It can refuse the first `fail_first` requests with 503.
pub struct Receiver {
    pub port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        use std::sync::atomic::Ordering;
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (g, a) = (got.clone(), attempts.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (g, a) = (g.clone(), a.clone());
            async move {
                let n = a.fetch_add(1, Ordering::SeqCst);
                if n < fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let path = req.uri().path().to_string();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect();
                let body = axum::body::to_bytes(req.into_body(), 16 << 20)
                    .await
                    .unwrap_or_default();
                g.lock().unwrap().push(Received {
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                axum::http::StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            got,
            attempts,
            _server: server,
        }
    }

    /// The URL functions use to reach this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://host.docker.internal:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were received.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        eventually(timeout, &format!("{n} callbacks"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

/// The ids of every document in `table`, in id order, read page by page through the gateway.
pub async fn all_ids(p: &Platform, table: &str) -> Vec<String> {
    all_docs(p, table)
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every document envelope in `table`, in id order, read page by page through the gateway.
pub async fn all_docs(p: &Platform, table: &str) -> Vec<serde_json::Value> {
    let client = http();
    let mut docs = Vec::new();
    let mut after = String::new();
    loop {
        let mut url = p.url(&format!("/store/tables/{table}/docs?limit=500"));
        if !after.is_empty() {
            url.push_str(&format!("&after={after}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(p.token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        docs.extend(page["docs"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => return docs,
        }
    }
}

/// Every event on `rfa.store.<table>.>` in the platform's JetStream, as (event, id) pairs in
/// stream order, read with an ordered consumer from the host (the host reaches container IPs).
pub async fn all_events(nats_url: &str, table: &str) -> Vec<(String, String)> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    use futures_util::StreamExt;
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(rfa_wire::subjects::STORE_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: format!("rfa.store.{table}.>"),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut events = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return events;
    }
    let mut messages = consumer.messages().await.unwrap();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await
    {
        let payload: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        let (event, id) = (
            payload["event"].as_str().unwrap().to_string(),
            payload["id"].as_str().unwrap().to_string(),
        );
        assert_eq!(
            m.subject.as_str(),
            rfa_wire::subjects::store_event(table, &event, &id),
            "the subject names the event's table, kind and id"
        );
        events.push((event, id));
        if m.info().unwrap().pending == 0 {
            break;
        }
    }
    events
}
