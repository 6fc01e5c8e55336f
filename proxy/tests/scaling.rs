//! The gateway's side of scaling (issue #16), in process: a real gateway (`rfa_proxy::run`) on
//! 127.0.0.1, a fake function upstream and a fake scaler as small axum servers, all on port 0.
//! The fake scaler wakes a function as the real one does: it puts the route back with
//! `power: running` through the gateway's admin API, then answers.
//!
//! Over 600 lines on purpose: the gateway's whole scaling contract (load, holding and waking,
//! relayed scale requests, admin pauses) sharing one fake scaler and one fake upstream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use rfa_proxy::Config;
use rfa_wire::route::{FunctionKind, FunctionRoute, Power, RunSpec, ScaleSpec};
use rfa_wire::scale::FunctionLoad;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

mod common;

use common::{TOKEN, put_route};

async fn serve(listener: TcpListener, app: Router) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

// ---- the fake function ----------------------------------------------------------------------

/// A function replica: `/` answers `hello`, `/slow` answers after `slow_ms`; counts calls.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

async fn upstream(slow_ms: u64) -> Upstream {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let h2 = hits.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    "hello"
                }
            }),
        )
        .route(
            "/slow",
            get(move || {
                let h = h2.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(slow_ms)).await;
                    "slow hello"
                }
            }),
        );
    Upstream {
        addr: serve(listener().await, app).await,
        hits,
    }
}

// ---- the gateway ----------------------------------------------------------------------------

struct Gateway {
    url: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn gateway(
    scaler: Option<String>,
    upstream_timeout: Duration,
    data_dir: Option<PathBuf>,
) -> Gateway {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    let config = common::config(addr.port(), scaler, upstream_timeout, data_dir);
    gateway_with(listener, config).await
}

async fn gateway_with(listener: TcpListener, config: Config) -> Gateway {
    let (url, stop) = common::start(listener, config);
    Gateway {
        url,
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

fn route(
    name: &str,
    upstream: SocketAddr,
    power: Power,
    scale: Option<ScaleSpec>,
) -> FunctionRoute {
    FunctionRoute {
        name: name.to_string(),
        kind: FunctionKind::Http,
        upstreams: vec![upstream.to_string()],
        image: "img".to_string(),
        deployed_at: "2025-01-01T00:00:00Z".to_string(),
        queue: None,
        run: Some(RunSpec {
            replicas: 1,
            env: Vec::new(),
            memory_bytes: 0,
            nano_cpus: 0,
            pids: 0,
            max_inflight: 8,
            scale,
        }),
        power,
        discover: None,
        previous: None,
    }
}

impl Gateway {
    async fn put(&self, route: &FunctionRoute) {
        put_route(&self.client, &self.url, route).await;
    }

    async fn call(&self, name: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/functions/{name}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn load(&self) -> Vec<FunctionLoad> {
        let r = self
            .client
            .get(format!("{}/system/load", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn load_of(&self, name: &str) -> FunctionLoad {
        self.load()
            .await
            .into_iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("{name} missing from /system/load"))
    }

    async fn scale(&self, name: &str, body: &str) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}/system/scale-function/{name}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The problem+json body of a 503, with its Retry-After.
async fn problem(r: reqwest::Response) -> (u16, Option<String>, String) {
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "status {status}"
    );
    let body: Value = r.json().await.unwrap();
    (status, retry, body["detail"].as_str().unwrap().to_string())
}

// ---- the fake scaler ------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Wake {
    /// Put the route running after the delay, then answer 200.
    Resume,
    /// Answer 500 with a problem.
    Fail,
    /// Answer 200 and never put the route.
    Ignore,
}

struct FakeScaler {
    gateway: Mutex<String>,
    route: Mutex<Option<FunctionRoute>>,
    mode: Wake,
    delay: Duration,
    wakes: AtomicUsize,
    bad_tokens: AtomicUsize,
    scale_bodies: Mutex<Vec<Value>>,
}

impl FakeScaler {
    fn new(mode: Wake, delay: Duration) -> Arc<FakeScaler> {
        Arc::new(FakeScaler {
            gateway: Mutex::new(String::new()),
            route: Mutex::new(None),
            mode,
            delay,
            wakes: AtomicUsize::new(0),
            bad_tokens: AtomicUsize::new(0),
            scale_bodies: Mutex::new(Vec::new()),
        })
    }

    async fn set(&self, gateway: &Gateway, route: &FunctionRoute) {
        *self.gateway.lock().await = gateway.url.clone();
        *self.route.lock().await = Some(route.clone());
    }

    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

fn authorized(scaler: &FakeScaler, headers: &HeaderMap) -> bool {
    let ok = headers
        .get("authorization")
        .is_some_and(|v| v == &format!("Bearer {TOKEN}")[..]);
    if !ok {
        scaler.bad_tokens.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn start_scaler(scaler: Arc<FakeScaler>, listener: TcpListener) -> String {
    let app = Router::new()
        .route("/wake/{name}", post(fake_wake))
        .route("/scale/{name}", post(fake_scale))
        .route(
            "/metrics",
            get(|| async {
                "# HELP rfa_scale_events_total Scale events by direction and reason\n\
                 # TYPE rfa_scale_events_total counter\n\
                 rfa_scale_events_total{function_name=\"f\",direction=\"out\",reason=\"load\"} 2\n\
                 # HELP rfa_functions_paused a family the gateway has too: dropped\n\
                 # TYPE rfa_functions_paused gauge\n\
                 rfa_functions_paused 7\n"
            }),
        )
        .with_state(scaler);
    format!("http://{}", serve(listener, app).await)
}

async fn fake_wake(
    State(scaler): State<Arc<FakeScaler>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !authorized(&scaler, &headers) {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    scaler.wakes.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(scaler.delay).await;
    match scaler.mode {
        Wake::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "about:blank", "title": "Internal Server Error", "status": 500,
                   "detail": format!("docker unpause of {name} failed: container is dead")})
            .to_string(),
        ),
        Wake::Ignore => (
            StatusCode::OK,
            json!({"was": "paused", "millis": 1}).to_string(),
        ),
        Wake::Resume => {
            let mut route = scaler.route.lock().await.clone().expect("route set");
            let was = route.power;
            route.power = Power::Running;
            let gateway = scaler.gateway.lock().await.clone();
            put_route(&reqwest::Client::new(), &gateway, &route).await;
            (
                StatusCode::OK,
                json!({"was": was, "millis": scaler.delay.as_millis() as u64}).to_string(),
            )
        }
    }
}

async fn fake_scale(
    State(scaler): State<Arc<FakeScaler>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    if !authorized(&scaler, &headers) {
        return (StatusCode::UNAUTHORIZED, [("x-fake", "1")], String::new());
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    scaler.scale_bodies.lock().await.push(body.clone());
    (
        StatusCode::OK,
        [("x-fake", "1")],
        json!({"name": name, "scaledTo": body["replicas"]}).to_string(),
    )
}

/// A scaler that is up, with `mode`, answering a wake after `delay`.
async fn up_scaler(mode: Wake, delay: Duration) -> (Arc<FakeScaler>, String) {
    let scaler = FakeScaler::new(mode, delay);
    let url = start_scaler(scaler.clone(), listener().await).await;
    (scaler, url)
}

// ---- tests ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_held_call_is_answered_once_the_scaler_puts_the_route_running() {
    let up = upstream(0).await;
    let (scaler, url) = up_scaler(Wake::Resume, Duration::from_millis(300)).await;
    let gw = gateway(Some(url), Duration::from_secs(60), None).await;
    let paused = route("f", up.addr, Power::Paused, None);
    gw.put(&paused).await;
    scaler.set(&gw, &paused).await;

    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_service_count{function_name=\"f\"} 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nrfa_functions_paused 1\n"), "{metrics}");

    let started = Instant::now();
    let r = gw.call("f").await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello");
    assert!(waited >= Duration::from_millis(300), "not held: {waited:?}");
    assert_eq!(scaler.wakes(), 1);
    assert_eq!(scaler.bad_tokens.load(Ordering::SeqCst), 0);
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        1,
        "forwarded once, after the wake"
    );

    let metrics = gw.metrics().await;
    for line in [
        "gateway_service_count{function_name=\"f\"} 1",
        "rfa_functions_paused 0",
        "rfa_wake_seconds_count{function_name=\"f\",kind=\"resume\"} 1",
        "gateway_function_invocation_total{code=\"200\",function_name=\"f\"} 1",
        // The scaler's own families follow the gateway's, minus the one the gateway has too.
        "rfa_scale_events_total{function_name=\"f\",direction=\"out\",reason=\"load\"} 2",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from\n{metrics}"
        );
    }
    assert!(!metrics.contains("rfa_functions_paused 7"), "{metrics}");
    assert_eq!(metrics.matches("# TYPE rfa_functions_paused").count(), 1);

    // A stopped function is a cold start for the histogram.
    let stopped = route("f", up.addr, Power::Stopped, None);
    gw.put(&stopped).await;
    scaler.set(&gw, &stopped).await;
    assert_eq!(gw.call("f").await.status(), 200);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("rfa_wake_seconds_count{function_name=\"f\",kind=\"cold\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_held_call_past_the_bound_gets_503_with_retry_after_and_is_never_forwarded() {
    let up = upstream(0).await;
    let (scaler, url) = up_scaler(Wake::Ignore, Duration::ZERO).await;
    // The bound is min(30 s, the upstream timeout).
    let gw = gateway(Some(url), Duration::from_secs(2), None).await;
    let paused = route("f", up.addr, Power::Paused, None);
    gw.put(&paused).await;
    scaler.set(&gw, &paused).await;

    let started = Instant::now();
    let r = gw.call("f").await;
    let waited = started.elapsed();
    let (status, retry, detail) = problem(r).await;
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(
        detail.contains("'f'") && detail.contains("waking") && detail.contains("2 s"),
        "{detail}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "never sent to a paused replica"
    );
    assert!(scaler.wakes() >= 1);
    assert_eq!(
        gw.load_of("f").await.inflight,
        0,
        "the held call is no longer counted"
    );
}

#[tokio::test]
async fn without_a_scaler_a_call_to_a_paused_function_gets_503_at_once() {
    let up = upstream(0).await;
    let gw = gateway(None, Duration::from_secs(60), None).await;
    gw.put(&route("f", up.addr, Power::Paused, None)).await;
    let started = Instant::now();
    let (status, _, detail) = problem(gw.call("f").await).await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        detail.contains("'f' is paused") && detail.contains("RFAAS_SCALER_URL"),
        "{detail}"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_scaler_down_at_first_and_up_later_wakes_the_held_call_within_the_bound() {
    let up = upstream(0).await;
    // Reserve a port for the scaler, and start it there only later.
    let reserved = listener().await;
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let gw = gateway(
        Some(format!("http://{addr}")),
        Duration::from_secs(60),
        None,
    )
    .await;
    let paused = route("f", up.addr, Power::Paused, None);
    gw.put(&paused).await;
    let scaler = FakeScaler::new(Wake::Resume, Duration::from_millis(50));
    scaler.set(&gw, &paused).await;

    let call = tokio::spawn({
        let client = gw.client.clone();
        let url = format!("{}/functions/f", gw.url);
        async move {
            let started = Instant::now();
            let r = client.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.text().await.unwrap(),
                started.elapsed(),
            )
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !call.is_finished(),
        "the call is held while the scaler is down"
    );
    let load = gw.load_of("f").await;
    assert_eq!(load.inflight, 1, "a held call counts in flight: {load:?}");
    start_scaler(scaler.clone(), TcpListener::bind(addr).await.unwrap()).await;
    let (status, body, waited) = call.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(scaler.wakes(), 1);
}

#[tokio::test]
async fn the_scaler_down_past_the_bound_is_named_in_the_503() {
    let up = upstream(0).await;
    let reserved = listener().await;
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let gw = gateway(Some(format!("http://{addr}")), Duration::from_secs(1), None).await;
    gw.put(&route("f", up.addr, Power::Stopped, None)).await;
    let (status, retry, detail) = problem(gw.call("f").await).await;
    assert_eq!(status, 503);
    assert!(retry.is_some());
    assert!(
        detail.contains("'f' is stopped")
            && detail.contains("scaler")
            && detail.contains("not answering"),
        "{detail}"
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn twenty_held_calls_make_one_wake_request_and_all_succeed() {
    let up = upstream(0).await;
    let (scaler, url) = up_scaler(Wake::Resume, Duration::from_millis(500)).await;
    let gw = gateway(Some(url), Duration::from_secs(60), None).await;
    let paused = route("f", up.addr, Power::Paused, None);
    gw.put(&paused).await;
    scaler.set(&gw, &paused).await;

    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = gw.client.clone();
            let url = format!("{}/functions/f", gw.url);
            tokio::spawn(async move {
                let r = client.get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    // While they are held, all count in flight.
    let mut seen = 0;
    for _ in 0..40 {
        seen = gw.load_of("f").await.inflight;
        if seen == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen, 20);
    for call in calls {
        assert_eq!(call.await.unwrap(), (200, "hello".to_string()));
    }
    assert_eq!(scaler.wakes(), 1, "one wake request for all held calls");
    assert_eq!(up.hits.load(Ordering::SeqCst), 20);
    let load = gw.load_of("f").await;
    assert_eq!((load.inflight, load.calls), (0, 20));
}

#[tokio::test]
async fn a_wake_the_scaler_refuses_gets_503_with_retry_after_and_its_reason() {
    let up = upstream(0).await;
    let (scaler, url) = up_scaler(Wake::Fail, Duration::ZERO).await;
    let gw = gateway(Some(url), Duration::from_secs(60), None).await;
    let paused = route("f", up.addr, Power::Paused, None);
    gw.put(&paused).await;
    scaler.set(&gw, &paused).await;
    let started = Instant::now();
    let (status, retry, detail) = problem(gw.call("f").await).await;
    assert_eq!(status, 503);
    assert!(retry.is_some());
    assert!(
        detail.contains("could not wake function 'f'") && detail.contains("docker unpause"),
        "{detail}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_restarted_gateway_holds_calls_to_a_function_persisted_paused() {
    let up = upstream(0).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let gw = gateway(None, Duration::from_secs(60), Some(dir.path().into())).await;
        gw.put(&route("f", up.addr, Power::Paused, None)).await;
    }
    let kept = std::fs::read_to_string(dir.path().join("routes.json")).unwrap();
    assert!(kept.contains("\"power\": \"paused\""), "{kept}");
    let (scaler, url) = up_scaler(Wake::Resume, Duration::from_millis(100)).await;
    let gw = gateway(Some(url), Duration::from_secs(60), Some(dir.path().into())).await;
    let paused = route("f", up.addr, Power::Paused, None);
    scaler.set(&gw, &paused).await;
    let r = gw.call("f").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        scaler.wakes(),
        1,
        "held and woken, not forwarded into the paused replica"
    );
}

#[tokio::test]
async fn pausing_a_route_answers_once_the_forwarded_calls_are_done() {
    let up = upstream(800).await;
    let gw = gateway(None, Duration::from_secs(60), None).await;
    gw.put(&route("f", up.addr, Power::Running, None)).await;
    let slow = tokio::spawn({
        let client = gw.client.clone();
        let url = format!("{}/functions/f/slow", gw.url);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let mut inflight = 0;
    for _ in 0..50 {
        inflight = gw.load_of("f").await.inflight;
        if inflight == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(inflight, 1, "the slow call counts in flight");
    let started = Instant::now();
    gw.put(&route("f", up.addr, Power::Paused, None)).await;
    assert!(
        slow.is_finished(),
        "the put answered before the forwarded call ended"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(slow.await.unwrap(), "slow hello");
}

#[tokio::test]
async fn load_counts_calls_in_flight_and_idle_time() {
    let up = upstream(600).await;
    let gw = gateway(None, Duration::from_secs(60), None).await;
    gw.put(&route("f", up.addr, Power::Running, None)).await;
    gw.put(&route("g", up.addr, Power::Running, None)).await;
    let before = gw.load_of("f").await;
    assert_eq!((before.inflight, before.calls, before.pending), (0, 0, 0));

    let slow: Vec<_> = (0..3)
        .map(|_| {
            let client = gw.client.clone();
            let url = format!("{}/functions/f/slow", gw.url);
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut busy = FunctionLoad::default();
    for _ in 0..50 {
        busy = gw.load_of("f").await;
        if busy.inflight == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (busy.inflight, busy.calls, busy.idle_ms),
        (3, 3, 0),
        "{busy:?}"
    );
    assert_eq!(gw.load_of("g").await.inflight, 0, "per function");
    for call in slow {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(gw.call("f").await.status(), 200);
    let first = gw.load_of("f").await;
    assert_eq!((first.inflight, first.calls), (0, 4));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = gw.load_of("f").await;
    assert!(
        later.idle_ms >= first.idle_ms + 190,
        "idle time grows: {first:?} then {later:?}"
    );

    // The scaler rewriting the route keeps the counts.
    gw.put(&route("f", up.addr, Power::Running, None)).await;
    assert_eq!(gw.load_of("f").await.calls, 4);

    let r = gw
        .client
        .get(format!("{}/system/load", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the token is required");
    let names: Vec<String> = gw.load().await.into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["f", "g"]);
}

#[tokio::test]
async fn scale_requests_are_checked_then_relayed_to_the_scaler() {
    let up = upstream(0).await;
    let (scaler, url) = up_scaler(Wake::Resume, Duration::ZERO).await;
    let gw = gateway(Some(url), Duration::from_secs(60), None).await;
    let bounded = ScaleSpec {
        min: 1,
        max: 3,
        target_inflight: 4,
        idle_pause_ms: None,
        idle_stop_ms: None,
        scale_in_delay_ms: None,
    };
    gw.put(&route("f", up.addr, Power::Running, Some(bounded)))
        .await;
    gw.put(&route("fixed", up.addr, Power::Running, None)).await;

    for (body, says) in [
        (r#"{"replicas": -1}"#, "negative"),
        (r#"{"replicas": 1.5}"#, "not a whole number"),
        ("two", "not JSON"),
        (r#"{"replicas": 2, "now": true}"#, "unknown field 'now'"),
        (r#"{"replicas": 4}"#, "between 1 and 3"),
        (r#"{"replicas": 0}"#, "between 1 and 3"),
    ] {
        let (status, text) = gw.scale("f", body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(says), "{body}: {text}");
    }
    let (status, text) = gw.scale("fixed", r#"{"replicas": 65}"#).await;
    assert_eq!(status, 400);
    assert!(text.contains("64"), "{text}");
    let (status, text) = gw.scale("nope", r#"{"replicas": 1}"#).await;
    assert_eq!(status, 404);
    assert!(text.contains("'nope' is not deployed"), "{text}");
    assert!(
        scaler.scale_bodies.lock().await.is_empty(),
        "nothing bad reaches the scaler"
    );

    let (status, text) = gw.scale("f", r#"{"replicas": 3}"#).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer, json!({"name": "f", "scaledTo": 3}));
    let (status, _) = gw.scale("fixed", r#"{"replicas": 0}"#).await;
    assert_eq!(status, 200, "without a scale block any count up to 64");
    assert_eq!(
        *scaler.scale_bodies.lock().await,
        vec![json!({"replicas": 3}), json!({"replicas": 0})]
    );
    assert_eq!(scaler.bad_tokens.load(Ordering::SeqCst), 0);

    let r = gw
        .client
        .post(format!("{}/system/scale-function/f", gw.url))
        .body(r#"{"replicas": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn scale_requests_without_a_reachable_scaler_get_503() {
    let up = upstream(0).await;
    let gw = gateway(None, Duration::from_secs(60), None).await;
    gw.put(&route("f", up.addr, Power::Running, None)).await;
    let (status, text) = gw.scale("f", r#"{"replicas": 2}"#).await;
    assert_eq!(status, 503);
    assert!(text.contains("RFAAS_SCALER_URL"), "{text}");

    let reserved = listener().await;
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let gw = gateway(
        Some(format!("http://{addr}")),
        Duration::from_secs(60),
        None,
    )
    .await;
    gw.put(&route("f", up.addr, Power::Running, None)).await;
    let r = gw
        .client
        .post(format!("{}/system/scale-function/f", gw.url))
        .bearer_auth(TOKEN)
        .body(r#"{"replicas": 2}"#)
        .send()
        .await
        .unwrap();
    let (status, retry, detail) = problem(r).await;
    assert_eq!(status, 503);
    assert!(retry.is_some());
    assert!(
        detail.contains("not answering") && detail.contains("'f' to 2"),
        "{detail}"
    );
    // And /metrics still answers, without the scaler's part.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("# TYPE rfa_functions_paused gauge"),
        "{metrics}"
    );
    assert!(!metrics.contains("rfa_scale_events_total"));
}

/// An async call to a paused function is queued (202) and asks for a wake, without waiting.
/// Needs `nats-server` (Debian: apt-get install nats-server), as the end-to-end tests do.
#[tokio::test]
async fn an_async_call_to_a_paused_function_is_queued_and_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let mut nats = std::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server runs (Debian: apt-get install nats-server)");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _nats = Kill(&mut nats);

    let up = upstream(0).await;
    // Answers 200 without putting the route: the wake is not awaited by the 202.
    let (scaler, url) = up_scaler(Wake::Ignore, Duration::from_secs(5)).await;
    let listener = listener().await;
    let config = Config {
        port: listener.local_addr().unwrap().port(),
        token: TOKEN.to_string(),
        token_file: None,
        store_url: "http://127.0.0.1:9".to_string(),
        nats_url: Some(format!("nats://127.0.0.1:{port}")),
        data_dir: None,
        max_body: 1 << 20,
        max_async_body: 1 << 16,
        upstream_timeout: Duration::from_secs(60),
        limits: Default::default(),
        scaler_url: Some(url),
    };
    let gw = gateway_with(listener, config).await;
    let mut paused = route("f", up.addr, Power::Paused, None);
    gw.put(&paused).await;
    paused.kind = FunctionKind::Async;
    paused.name = "g".to_string();
    gw.put(&paused).await;

    // NATS connects in the background: retry while it answers 503.
    let mut status = 0;
    let started = Instant::now();
    for _ in 0..100 {
        let r = gw
            .client
            .post(format!("{}/async-functions/f", gw.url))
            .body("x")
            .send()
            .await
            .unwrap();
        status = r.status().as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 202);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wake is not awaited"
    );
    // An async-kind function called at /functions/ is queued the same way.
    let r = gw
        .client
        .post(format!("{}/functions/g", gw.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut wakes = 0;
    for _ in 0..50 {
        wakes = scaler.wakes();
        if wakes == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(wakes, 2, "each function asked to wake once");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    let f = gw.load_of("f").await;
    assert_eq!((f.calls, f.inflight), (1, 0), "{f:?}");
}
