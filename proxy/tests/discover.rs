//! Replicas found by DNS (`FunctionRoute::discover`, what Docker Swarm functions use), through a
//! real gateway on 127.0.0.1 and the system resolver: a route registered with no upstreams and
//! `discover: "127.0.0.1:<port>"` (an address resolves to itself, so the test needs no DNS
//! server) serves calls once the gateway's lookup has run, keeps serving when the CLI puts the
//! route again, and a name that no longer resolves ends with no replica (502 problem+json, as
//! for any function without replicas; not a hang).

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use rfa_wire::route::{FunctionKind, FunctionRoute};
use tokio::net::TcpListener;

mod common;

use common::{TOKEN, put_route as put};

async fn gateway() -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    common::start(
        listener,
        common::config(port, None, Duration::from_secs(5), None),
    )
}

fn route(discover: &str) -> FunctionRoute {
    FunctionRoute {
        name: "hello".into(),
        kind: FunctionKind::Http,
        upstreams: Vec::new(),
        image: "rfa-fn-hello:test".into(),
        deployed_at: "2026-12-03T00:00:00Z".into(),
        queue: None,
        run: None,
        power: Default::default(),
        discover: Some(discover.into()),
        previous: None,
    }
}

/// The call's status and body, after the gateway answered 200 at least once within `limit`.
async fn first_200(client: &reqwest::Client, url: &str, limit: Duration) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let r = client.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        if status == 200 || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_route_found_by_dns_serves_and_follows_its_name() {
    let fn_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fn_addr = fn_listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            fn_listener,
            Router::new().route("/", get(|| async { "hello" })),
        )
        .await
    });
    let (gw, _stop) = gateway().await;
    let client = reqwest::Client::new();

    put(&client, &gw, &route(&fn_addr.to_string())).await;
    let (status, body) = first_200(
        &client,
        &format!("{gw}/functions/hello"),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hello"));

    // What the gateway reports is what it found (not the empty list registered).
    let listed: FunctionRoute = client
        .get(format!("{gw}/system/functions/hello"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.upstreams, [fn_addr.to_string()]);

    // Putting the route again (a redeploy) does not drop the replicas found meanwhile.
    put(&client, &gw, &route(&fn_addr.to_string())).await;
    for _ in 0..20 {
        let r = client
            .get(format!("{gw}/functions/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // A name that does not resolve: the function has no replica and calls get the gateway's
    // clear 502 problem at once, never a hang.
    put(&client, &gw, &route("no-such-host.invalid:6000")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let r = client
            .get(format!("{gw}/functions/hello"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if status != 200 || Instant::now() > deadline {
            break (status, kind);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last.0, 502, "{last:?}");
    assert!(last.1.contains("problem+json"), "{last:?}");
}
