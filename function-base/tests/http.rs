//! The HTTP side of the runtime, served in-process on a real loopback port.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, eventually, sample, start};
use function_base::prelude::*;
use function_base::{App, Config};
use tokio::sync::Notify;

async fn echo(req: Request) -> impl IntoResponse {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let body = axum_body(req).await;
    (StatusCode::ACCEPTED, format!("{method} {uri} {body}"))
}

async fn axum_body(req: Request) -> String {
    let bytes = function_base::axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn handler_answers_every_path_and_method_with_the_query() {
    let server = start(App::from_handler(echo, Config::default())).await;
    let c = client();

    let r = c.get(server.url("/a/b?x=1&y=two")).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "GET /a/b?x=1&y=two ");

    let r = c.post(server.url("/")).body("hello").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "POST / hello");

    let r = c.delete(server.url("/z?q")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "DELETE /z?q ");

    let r = c
        .request(Method::from_bytes(b"PURGE").unwrap(), server.url("/cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "PURGE /cache ");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn healthz_answers_ok() {
    let server = start(App::from_handler(echo, Config::default())).await;
    let r = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_user_requests_only() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let handler = {
        let (entered, release) = (entered.clone(), release.clone());
        move |req: Request| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                if req.uri().path() == "/slow" {
                    entered.notify_one();
                    release.notified().await;
                }
                if req.method() == Method::POST {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                }
            }
        }
    };
    let server = start(App::from_handler(handler, Config::default())).await;
    let c = client();
    for _ in 0..2 {
        assert_eq!(c.get(server.url("/x")).send().await.unwrap().status(), 200);
    }
    assert_eq!(c.post(server.url("/y")).send().await.unwrap().status(), 201);
    assert_eq!(
        c.get(server.url("/healthz")).send().await.unwrap().status(),
        200
    );

    let r = c.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let page = r.text().await.unwrap();
    for family in [
        "# TYPE http_requests_total counter",
        "# TYPE http_request_duration_seconds histogram",
        "# TYPE http_requests_in_flight gauge",
    ] {
        assert!(page.contains(family), "{family} missing from\n{page}");
    }
    assert_eq!(
        sample(&page, r#"http_requests_total{code="200",method="GET"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&page, r#"http_requests_total{code="201",method="POST"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &page,
            r#"http_request_duration_seconds_count{code="200",method="GET"}"#
        ),
        Some(2.0)
    );
    assert_eq!(sample(&page, "http_requests_in_flight"), Some(0.0));

    // A request in flight shows in the gauge.
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), server.url("/slow"));
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    entered.notified().await;
    let page = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&page, "http_requests_in_flight"), Some(1.0));
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    let page = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&page, "http_requests_in_flight"), Some(0.0));
    assert_eq!(
        sample(&page, r#"http_requests_total{code="200",method="GET"}"#),
        Some(3.0)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_gives_500_and_the_server_keeps_serving() {
    let handler = |req: Request| async move {
        if req.uri().path() == "/boom" {
            panic!("boom");
        }
        "fine"
    };
    let server = start(App::from_handler(handler, Config::default())).await;
    let c = client();
    for _ in 0..2 {
        let r = c.get(server.url("/boom")).send().await.unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem: serde_json::Value = r.json().await.unwrap();
        assert_eq!(problem["status"], 500);
        let r = c.get(server.url("/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "fine");
    }
    let page = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&page, r#"http_requests_total{code="500",method="GET"}"#),
        Some(2.0)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_in_flight_request() {
    let entered = Arc::new(Notify::new());
    let handler = {
        let entered = entered.clone();
        move || {
            let entered = entered.clone();
            async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }
        }
    };
    let mut server = start(App::from_handler(handler, Config::default())).await;
    let c = client();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), server.url("/slow"));
        async move {
            let r = c.get(url).send().await?;
            let status = r.status();
            r.text().await.map(|t| (status, t))
        }
    });
    entered.notified().await;
    server.signal_stop();

    // New connections are refused once the listener is closed.
    let addr = server.addr;
    eventually(
        Duration::from_secs(5),
        "the listener to close",
        || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;

    let (status, text) = slow.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(text, "done");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn drain_is_bounded() {
    let entered = Arc::new(Notify::new());
    let handler = {
        let entered = entered.clone();
        move || {
            let entered = entered.clone();
            async move {
                entered.notify_one();
                std::future::pending::<()>().await;
            }
        }
    };
    let mut config = Config::default();
    config.drain_timeout = Duration::from_millis(300);
    let mut server = start(App::from_handler(handler, config)).await;
    let hung = tokio::spawn({
        let (c, url) = (client(), server.url("/hang"));
        async move { c.get(url).send().await.map(|r| r.status()) }
    });
    entered.notified().await;
    server.signal_stop();
    let started = Instant::now();
    server.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    hung.abort();
}

fn shop(svc: &mut Service) {
    svc.route(
        "/pay",
        post(|body: String| async move { format!("paid {body}") }),
    );
    svc.route(
        "/items/{id}",
        get(
            |function_base::axum::extract::Path(id): function_base::axum::extract::Path<String>| async move {
                Json(json!({ "id": id }))
            },
        ),
    );
    svc.route("/items/{id}", delete(|| async { StatusCode::NO_CONTENT }));
}

#[tokio::test]
async fn service_routes_and_404() {
    let mut service = Service::new();
    shop(&mut service);
    let server = start(App::from_service(service, Config::default()).unwrap()).await;
    let c = client();

    let r = c.post(server.url("/pay")).body("10").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "paid 10");

    let r = c.get(server.url("/items/42")).send().await.unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"id": "42"})
    );
    let r = c.delete(server.url("/items/42")).send().await.unwrap();
    assert_eq!(r.status(), 204);

    let r = c.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );

    let r = c.get(server.url("/pay")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    let r = c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    let page = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&page, r#"http_requests_total{code="404",method="GET"}"#),
        Some(1.0)
    );
    server.stop().await.unwrap();
}
