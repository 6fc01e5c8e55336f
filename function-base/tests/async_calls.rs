//! Async calls with a real nats-server: messages published the way the gateway does, run by
//! the in-process runtime, results posted to an in-process callback receiver.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use common::{
    CallbackReceiver, NatsServer, Running, client, eventually, metrics_page, sample, start,
};
use function_base::prelude::*;
use function_base::{App, Config};
use futures_util::StreamExt;
use rfa_wire::streams;

const WAIT: Duration = Duration::from_secs(20);

fn config(nats: &NatsServer, function: &str) -> Config {
    let mut config = Config::default();
    config.nats_url = Some(nats.url.clone());
    config.function_name = Some(function.to_string());
    config.callback_backoff = Duration::from_millis(10);
    config.callback_timeout = Duration::from_secs(5);
    config.drain_timeout = Duration::from_secs(5);
    config
}

/// Publishes a call as the gateway does and waits for JetStream's ack.
#[allow(clippy::too_many_arguments)]
async fn publish_call(
    js: &jetstream::Context,
    function: &str,
    method: &str,
    path: &str,
    call_id: &str,
    callback: Option<&str>,
    extra: &[(&str, &str)],
    body: &'static str,
) {
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in extra {
        headers.insert(*name, *value);
    }
    headers.insert("Rfa-Method", method);
    headers.insert("Rfa-Path", path);
    headers.insert("x-call-id", call_id);
    headers.insert("Nats-Msg-Id", call_id);
    if let Some(url) = callback {
        headers.insert("x-callback-url", url);
    }
    js.publish_with_headers(
        rfa_wire::subjects::async_call(function),
        headers,
        body.into(),
    )
    .await
    .expect("publish")
    .await
    .expect("puback");
}

async fn ensure_streams(js: &jetstream::Context) {
    rfa_io::nats::ensure_stream(js, streams::async_calls())
        .await
        .expect("async stream");
    rfa_io::nats::ensure_stream(js, streams::dead_letters())
        .await
        .expect("dead stream");
}

/// The consumer's (ack pending, redelivered) counts.
async fn consumer_counts(js: &jetstream::Context, function: &str) -> Option<(usize, usize)> {
    let stream = js.get_stream(rfa_wire::subjects::ASYNC_STREAM).await.ok()?;
    let mut consumer = stream
        .get_consumer::<pull::Config>(&format!("fn-{function}"))
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some((info.num_ack_pending, info.num_redelivered))
}

/// Waits until every call of `function` was acked (the work queue is empty for it).
async fn wait_all_acked(js: &jetstream::Context, function: &str) {
    eventually(WAIT, "all calls acknowledged", || async {
        let mut stream = js.get_stream(rfa_wire::subjects::ASYNC_STREAM).await.ok()?;
        let info = stream.info().await.ok()?;
        let (pending, _) = consumer_counts(js, function).await?;
        (info.state.messages == 0 && pending == 0).then_some(())
    })
    .await;
}

async fn echo(req: Request) -> impl IntoResponse {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let x_in = req
        .headers()
        .get("x-in")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let body = function_base::axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (
        StatusCode::CREATED,
        [("x-out", "yes"), ("content-type", "text/plain")],
        format!("{method} {uri} {} {x_in}", String::from_utf8_lossy(&body)),
    )
}

#[tokio::test]
async fn a_call_runs_through_the_router_and_its_result_is_posted_back() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let mut receiver = CallbackReceiver::start(vec![]).await;
    let server = start(App::from_handler(echo, config(&nats, "echo"))).await;

    publish_call(
        &js,
        "echo",
        "PUT",
        "/sub?x=1",
        "call-1",
        Some(&receiver.url("/cb?k=v")),
        &[("x-in", "hello"), ("content-type", "text/plain")],
        "payload",
    )
    .await;

    let got = receiver.next(WAIT).await;
    assert_eq!(got.path, "/cb?k=v");
    assert_eq!(got.body, "PUT /sub?x=1 payload hello");
    assert_eq!(got.headers["x-call-id"], "call-1");
    assert_eq!(got.headers["x-function-name"], "echo");
    assert_eq!(got.headers["x-function-status"], "201");
    assert_eq!(got.headers["x-out"], "yes");
    assert_eq!(got.headers["content-type"], "text/plain");
    let seconds: f64 = got.headers["x-duration-seconds"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..5.0).contains(&seconds));

    wait_all_acked(&js, "echo").await;
    let page = metrics_page(&server).await;
    assert_eq!(
        sample(&page, r#"rfa_async_calls_completed_total{code="201"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "rfa_async_call_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(sample(&page, "rfa_async_calls_in_flight"), Some(0.0));
    assert_eq!(
        sample(&page, "rfa_async_callback_attempts_total"),
        Some(1.0)
    );
    assert!(
        !page.contains("rfa_async_callback_failures_total{"),
        "{page}"
    );
    assert!(!page.contains("rfa_async_dead_lettered_total{"), "{page}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_call_without_callback_runs_and_is_counted() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let seen = seen.clone();
        move |req: Request| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(req.uri().to_string());
                StatusCode::ACCEPTED
            }
        }
    };
    let server = start(App::from_handler(handler, config(&nats, "quiet"))).await;
    publish_call(&js, "quiet", "POST", "/", "c-1", None, &[], "x").await;
    publish_call(&js, "quiet", "GET", "/a?b=c", "c-2", None, &[], "").await;
    wait_all_acked(&js, "quiet").await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, vec!["/", "/a?b=c"]);
    let page = metrics_page(&server).await;
    assert_eq!(
        sample(&page, r#"rfa_async_calls_completed_total{code="202"}"#),
        Some(2.0)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_callback_is_retried_until_it_succeeds() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let mut receiver =
        CallbackReceiver::start(vec![(503, None), (429, Some("1")), (200, None)]).await;
    let server = start(App::from_handler(echo, config(&nats, "retry"))).await;
    publish_call(
        &js,
        "retry",
        "POST",
        "/",
        "r-1",
        Some(&receiver.url("/")),
        &[],
        "b",
    )
    .await;

    let first = receiver.next(WAIT).await;
    let second = receiver.next(WAIT).await;
    let third = receiver.next(WAIT).await;
    for got in [&first, &second, &third] {
        assert_eq!(got.headers["x-call-id"], "r-1");
        assert_eq!(got.body, "POST / b -");
    }
    // Retry-After: 1 was honoured.
    assert!(third.at.duration_since(second.at) >= Duration::from_millis(950));
    wait_all_acked(&js, "retry").await;
    assert!(receiver.try_next().is_none(), "delivered more than once");
    let page = metrics_page(&server).await;
    assert_eq!(
        sample(&page, "rfa_async_callback_attempts_total"),
        Some(3.0)
    );
    assert!(
        !page.contains("rfa_async_callback_failures_total{"),
        "{page}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_callback_that_keeps_failing_is_dead_lettered() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let mut receiver = CallbackReceiver::start_with(vec![], 500).await;
    let mut config = config(&nats, "doomed");
    config.callback_attempts = 3;
    let server = start(App::from_handler(echo, config)).await;
    publish_call(
        &js,
        "doomed",
        "POST",
        "/x",
        "d-1",
        Some(&receiver.url("/")),
        &[("x-in", "keep")],
        "body",
    )
    .await;

    for _ in 0..3 {
        receiver.next(WAIT).await;
    }
    // The dead letter: original headers and body plus the reason.
    let dead = js
        .get_stream(rfa_wire::subjects::DEAD_STREAM)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            filter_subject: rfa_wire::subjects::dead_letter("doomed"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = dead.messages().await.unwrap();
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("no dead letter")
        .unwrap()
        .unwrap();
    let headers = message.headers.clone().unwrap();
    assert_eq!(message.payload, "body");
    assert_eq!(headers.get("x-call-id").unwrap().as_str(), "d-1");
    assert_eq!(headers.get("x-in").unwrap().as_str(), "keep");
    assert_eq!(headers.get("Rfa-Path").unwrap().as_str(), "/x");
    let reason = headers.get("Rfa-Dead-Reason").unwrap().as_str().to_string();
    assert!(reason.contains("500"), "{reason}");

    wait_all_acked(&js, "doomed").await;
    assert!(
        receiver.try_next().is_none(),
        "more attempts than configured"
    );
    let page = metrics_page(&server).await;
    assert_eq!(
        sample(&page, "rfa_async_callback_attempts_total"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &page,
            r#"rfa_async_callback_failures_total{reason="retries_exhausted"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &page,
            r#"rfa_async_dead_lettered_total{reason="callback_failed"}"#
        ),
        Some(1.0)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn two_workers_sharing_the_consumer_run_each_call_once() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let mut receiver = CallbackReceiver::start(vec![]).await;
    let runs: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let handler = |worker: usize| {
        let runs = runs.clone();
        move |req: Request| {
            let runs = runs.clone();
            async move {
                let id = req.headers()["x-call-id"].to_str().unwrap().to_string();
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut runs = runs.lock().unwrap();
                let entry = runs.entry(id).or_insert((0, worker));
                entry.0 += 1;
                "ok"
            }
        }
    };
    let mut config = config(&nats, "shared");
    config.max_inflight = 4;
    let a = start(App::from_handler(handler(1), config.clone())).await;
    let b = start(App::from_handler(handler(2), config)).await;

    let url = receiver.url("/");
    for i in 0..24 {
        publish_call(
            &js,
            "shared",
            "POST",
            "/",
            &format!("s-{i}"),
            Some(&url),
            &[],
            "x",
        )
        .await;
    }
    let mut ids = Vec::new();
    for _ in 0..24 {
        let got = receiver.next(WAIT).await;
        ids.push(got.headers["x-call-id"].to_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24, "a call was posted back twice");
    wait_all_acked(&js, "shared").await;
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 24);
    assert!(runs.values().all(|(count, _)| *count == 1), "{runs:?}");
    assert_eq!(consumer_counts(&js, "shared").await, Some((0, 0)));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_call_longer_than_ack_wait_is_not_redelivered() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let mut receiver = CallbackReceiver::start(vec![]).await;
    let runs = Arc::new(Mutex::new(0usize));
    let handler = {
        let runs = runs.clone();
        move || {
            let runs = runs.clone();
            async move {
                *runs.lock().unwrap() += 1;
                tokio::time::sleep(Duration::from_millis(3500)).await;
                "slow"
            }
        }
    };
    let mut config = config(&nats, "slow");
    config.ack_wait = Duration::from_secs(1);
    let a = start(App::from_handler(handler.clone(), config.clone())).await;
    // A second idle worker that would pick the call up if it were redelivered.
    let b = start(App::from_handler(handler, config)).await;
    let started = Instant::now();
    publish_call(
        &js,
        "slow",
        "POST",
        "/",
        "l-1",
        Some(&receiver.url("/")),
        &[],
        "",
    )
    .await;
    let got = receiver.next(WAIT).await;
    assert_eq!(got.body, "slow");
    assert!(started.elapsed() >= Duration::from_millis(3500));
    assert_eq!(*runs.lock().unwrap(), 1);
    wait_all_acked(&js, "slow").await;
    assert_eq!(consumer_counts(&js, "slow").await, Some((0, 0)));
    assert_eq!(*runs.lock().unwrap(), 1);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn nats_down_at_start_is_retried_while_http_serves() {
    let port = common::free_port();
    let mut config = Config::default();
    config.nats_url = Some(format!("nats://127.0.0.1:{port}"));
    config.function_name = Some("late".to_string());
    let server: Running = start(App::from_handler(echo, config)).await;
    let r = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let nats = NatsServer::start_on(port).await;
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    let mut receiver = CallbackReceiver::start(vec![]).await;
    publish_call(
        &js,
        "late",
        "POST",
        "/",
        "late-1",
        Some(&receiver.url("/")),
        &[],
        "z",
    )
    .await;
    let got = receiver.next(WAIT).await;
    assert_eq!(got.headers["x-call-id"], "late-1");
    server.stop().await.unwrap();
}
