//! Issue #6 (metrics): every piece's `/metrics` passes `promtool check metrics` and counts what
//! happened, and a real Prometheus server, configured by `docker/prometheus.yml`, finds and
//! scrapes the gateway, the store and the function replicas.
//!
//! Needs Debian's `prometheus` package (`promtool` and `prometheus`); CI installs it.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rfaas_tests::*;
use serde_json::{Value, json};

/// `examples/method2` as the function `method2`, with extra environment.
fn method2(env: Value) -> Value {
    let dir = root().join("examples/method2");
    json!({
        "name": "method2",
        "packageDir": dir,
        "filePath": dir.join("src/lib.rs"),
        "env": env,
    })
}

/// The IP of `container` on the platform's own network.
fn ip_on_network(p: &Platform, container: &str) -> String {
    let net = p.object("rfa-net");
    let c = inspect(container);
    let ip = c["NetworkSettings"]["Networks"][&net]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!ip.is_empty(), "{container} has no IP on {net}");
    ip
}

/// The value of the sample `series` (its name and labels exactly as exposed).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `promtool check metrics` on `page`; panics with its output unless it is content.
fn promtool_check(what: &str, page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian: apt-get install prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool finishes");
    assert!(
        out.status.success(),
        "promtool check metrics refused the {what}'s /metrics (exit {:?}):\n{}{}\n--- page\n{page}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.text().await.unwrap()
}

/// Polls `url` until `series` has the value `want`.
async fn wait_for_sample(client: &reqwest::Client, url: &str, series: &str, want: f64) -> String {
    let mut last = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            last = get_text(client, url).await;
            if sample(&last, series) == Some(want) {
                return last.clone();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{series} never became {want} at {url}:\n{last}"))
}

#[tokio::test]
async fn every_metrics_endpoint_passes_promtool_and_counts_the_calls() {
    const SYNC: usize = 5;
    const QUEUED: usize = 12;
    const MAX_INFLIGHT: usize = 2;
    let p = Platform::start("metrics");
    let mut entry = method2(json!({
        "RFAAS_CALLBACK_ATTEMPTS": "2",
        "RFAAS_CALLBACK_BACKOFF_MS": "50",
    }));
    entry["maxInflight"] = json!(MAX_INFLIGHT);
    let (_d, file) = deploy_file(json!([entry]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();
    let function = p.object("rfa-fn-method2");
    let fn_metrics = format!("http://{}:6000/metrics", ip_on_network(&p, &function));
    let store_metrics = format!(
        "http://{}:5001/metrics",
        ip_on_network(&p, &p.object("rfa-store"))
    );
    let proxy_metrics = p.url("/metrics");

    // Sync calls.
    for _ in 0..SYNC {
        let r = client
            .get(p.url("/functions/method2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // An async call called back, and one whose callback cannot be delivered (dead-lettered).
    let receiver = Receiver::start(0).await;
    let r = client
        .post(p.url("/async-functions/method2"))
        .header("x-callback-url", receiver.url("/done"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    receiver.wait_for(1, Duration::from_secs(60)).await;
    let r = client
        .post(p.url("/async-functions/method2"))
        .header("x-callback-url", "http://host.docker.internal:1/nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for_sample(
        &client,
        &fn_metrics,
        r#"rfa_async_dead_lettered_total{reason="callback_failed"}"#,
        1.0,
    )
    .await;
    // A store write.
    let r = client
        .post(p.url("/store/tables/metrics_t/docs"))
        .bearer_auth(p.token())
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Queued: with the replica paused, calls wait in JetStream; at most MAX_INFLIGHT of them
    // are handed to the (frozen) worker, the rest are counted as queued by the gateway.
    let page = get_text(&client, &proxy_metrics).await;
    assert_eq!(
        sample(&page, r#"rfa_async_queued{function_name="method2"}"#),
        Some(0.0),
        "{page}"
    );
    docker(&["pause", &function]);
    for _ in 0..QUEUED {
        let r = client
            .post(p.url("/async-functions/method2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let page = get_text(&client, &proxy_metrics).await;
    docker(&["unpause", &function]);
    let queued = sample(&page, r#"rfa_async_queued{function_name="method2"}"#)
        .unwrap_or_else(|| panic!("no rfa_async_queued for method2:\n{page}"));
    assert!(
        ((QUEUED - MAX_INFLIGHT) as f64..=QUEUED as f64).contains(&queued),
        "queued {queued} of {QUEUED} calls with the replica paused"
    );
    let completed = 2 + QUEUED;
    wait_for_sample(
        &client,
        &fn_metrics,
        r#"rfa_async_calls_completed_total{code="202"}"#,
        completed as f64,
    )
    .await;
    wait_for_sample(
        &client,
        &proxy_metrics,
        r#"rfa_async_queued{function_name="method2"}"#,
        0.0,
    )
    .await;
    wait_for_sample(&client, &store_metrics, "rfa_store_outbox_pending", 0.0).await;

    // The gateway.
    let page = get_text(&client, &proxy_metrics).await;
    promtool_check("gateway", &page);
    let sync = SYNC as f64;
    for (series, want) in [
        (
            r#"gateway_function_invocation_total{code="202",function_name="method2"}"#,
            sync,
        ),
        (
            r#"gateway_functions_seconds_count{code="202",function_name="method2"}"#,
            sync,
        ),
        (
            r#"gateway_function_invocation_started{function_name="method2"}"#,
            sync,
        ),
        (r#"gateway_service_count{function_name="method2"}"#, 1.0),
        (
            r#"rfa_async_accepted_total{function_name="method2"}"#,
            completed as f64,
        ),
        (r#"rfa_async_queued{function_name="method2"}"#, 0.0),
    ] {
        assert_eq!(sample(&page, series), Some(want), "{series} in\n{page}");
    }
    for line in [
        "# TYPE gateway_function_invocation_total counter",
        "# TYPE gateway_functions_seconds histogram",
        "# TYPE rfa_async_accepted_total counter",
        "# TYPE rfa_async_queued gauge",
    ] {
        assert!(page.lines().any(|l| l == line), "{line} missing:\n{page}");
    }

    // The store.
    let page = get_text(&client, &store_metrics).await;
    promtool_check("store", &page);
    for (series, want) in [
        (
            r#"rfa_store_operations_total{operation="create",result="ok",table="metrics_t"}"#,
            1.0,
        ),
        (
            r#"rfa_store_operation_duration_seconds_count{operation="create",table="metrics_t"}"#,
            1.0,
        ),
        (r#"rfa_store_writes_total{event="new-doc"}"#, 1.0),
        ("rfa_store_events_published_total", 1.0),
        ("rfa_store_outbox_pending", 0.0),
    ] {
        assert_eq!(sample(&page, series), Some(want), "{series} in\n{page}");
    }

    // The function: the watchdog's names, and its async work.
    let page = get_text(&client, &fn_metrics).await;
    promtool_check("function", &page);
    for (series, want) in [
        (r#"http_requests_total{code="202",method="GET"}"#, sync),
        (
            r#"http_request_duration_seconds_count{code="202",method="GET"}"#,
            sync,
        ),
        // Async calls run through the same router, as POST by default.
        (
            r#"http_requests_total{code="202",method="POST"}"#,
            completed as f64,
        ),
        ("http_requests_in_flight", 0.0),
        (
            r#"rfa_async_calls_completed_total{code="202"}"#,
            completed as f64,
        ),
        ("rfa_async_call_duration_seconds_count", completed as f64),
        ("rfa_async_calls_in_flight", 0.0),
        // One delivered at once, two tried for the unreachable receiver.
        ("rfa_async_callback_attempts_total", 3.0),
        (
            r#"rfa_async_callback_failures_total{reason="retries_exhausted"}"#,
            1.0,
        ),
        (
            r#"rfa_async_dead_lettered_total{reason="callback_failed"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&page, series), Some(want), "{series} in\n{page}");
    }
}

/// A Prometheus server on the host, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` with `docker/prometheus.yml` aimed at `p`'s instance, scraping and
    /// discovering every second.
    fn start(p: &Platform) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temp dir");
        let original = std::fs::read_to_string(root().join("docker/prometheus.yml"))
            .expect("docker/prometheus.yml");
        let mut config = original.clone();
        for (from, to) in [
            (
                "io.rfaas.instance=default".to_string(),
                format!("io.rfaas.instance={}", p.instance),
            ),
            (
                "scrape_interval: 15s".to_string(),
                "scrape_interval: 1s".to_string(),
            ),
            (
                "refresh_interval: 15s".to_string(),
                "refresh_interval: 1s".to_string(),
            ),
        ] {
            assert!(
                config.contains(&from),
                "{from} not in docker/prometheus.yml"
            );
            config = config.replace(&from, &to);
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the config");
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("a log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("prometheus runs (Debian: apt-get install prometheus)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` as JSON, if Prometheus answers.
    async fn api(
        &self,
        client: &reqwest::Client,
        path: &str,
        query: &[(&str, &str)],
    ) -> Option<Value> {
        let r = client
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        (v["status"] == "success").then_some(v)
    }

    /// The values of an instant query's series.
    async fn query(&self, client: &reqwest::Client, query: &str) -> Option<Vec<f64>> {
        let v = self.api(client, "query", &[("query", query)]).await?;
        v["data"]["result"]
            .as_array()?
            .iter()
            .map(|s| s["value"][1].as_str()?.parse().ok())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `check` for at most `timeout`, then panics with the Prometheus log.
async fn within<T, Fut: std::future::Future<Output = Option<T>>>(
    prom: &Prometheus,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> T {
    let found = tokio::time::timeout(timeout, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "timed out waiting for {what}; prometheus log:\n{}",
            prom.log()
        )
    })
}

#[tokio::test]
async fn a_prometheus_server_finds_and_scrapes_the_platform_and_its_functions() {
    const CALLS: usize = 3;
    let p = Platform::start("prom");
    let (_d, file) = deploy_file(json!([method2(json!({}))]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();
    for _ in 0..CALLS {
        let r = client
            .get(p.url("/functions/method2"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let r = client
        .post(p.url("/store/tables/prom_t/docs"))
        .bearer_auth(p.token())
        .json(&json!({"n": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let prom = Prometheus::start(&p);
    let calls = CALLS as f64;
    let gateway = r#"gateway_function_invocation_total{function_name="method2"}"#;
    let values = within(&prom, Duration::from_secs(30), gateway, || async {
        let v = prom.query(&client, gateway).await?;
        (v.iter().sum::<f64>() > 0.0).then_some(v)
    })
    .await;
    assert_eq!(values, vec![calls], "{gateway}");

    // Exactly one target per container: the gateway, the store and the one replica, all up; no
    // NATS, nothing of another instance.
    let targets = within(&prom, Duration::from_secs(30), "all targets up", || async {
        let v = prom.api(&client, "targets", &[("state", "active")]).await?;
        let targets = v["data"]["activeTargets"].as_array()?.clone();
        (targets.len() >= 3 && targets.iter().all(|t| t["health"] == "up")).then_some(targets)
    })
    .await;
    let mut seen: Vec<(String, String, String)> = targets
        .iter()
        .map(|t| {
            let l = &t["labels"];
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&l["job"]), s(&l["instance"]), s(&l["function_name"]))
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (
                "rfaas-functions".into(),
                p.object("rfa-fn-method2"),
                "method2".into()
            ),
            ("rfaas-proxy".into(), p.object("rfa-proxy"), String::new()),
            ("rfaas-store".into(), p.object("rfa-store"), String::new()),
        ],
        "{targets:#?}"
    );

    // The function's own series carry its name as a target label, and the store's its table.
    let query = r#"http_requests_total{job="rfaas-functions",function_name="method2",code="202"}"#;
    let v = within(&prom, Duration::from_secs(30), query, || async {
        prom.query(&client, query).await.filter(|v| !v.is_empty())
    })
    .await;
    assert_eq!(v, vec![calls], "{query}");
    let query = r#"rfa_store_operations_total{job="rfaas-store",table="prom_t",operation="create",result="ok"}"#;
    let v = within(&prom, Duration::from_secs(30), query, || async {
        prom.query(&client, query).await.filter(|v| !v.is_empty())
    })
    .await;
    assert_eq!(v, vec![1.0], "{query}");
}
