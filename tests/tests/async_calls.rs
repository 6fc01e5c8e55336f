//! Issue #4: async calls through NATS JetStream, answered on `X-Callback-Url`, end to end.

use std::collections::HashSet;
use std::time::Duration;

use rfaas_tests::*;
use serde_json::{Value, json};

fn async_entry(env: Value) -> Value {
    let dir = root().join("examples/async");
    json!({
        "name": "method_async",
        "packageDir": dir,
        "filePath": dir.join("src/lib.rs"),
        "async": true,
        "env": env,
    })
}

#[tokio::test]
async fn async_calls_are_queued_run_once_and_called_back() {
    let mut p = Platform::new("async");
    p.start_faas(&["--max-async-body", "1024"]).ok();
    let (_d, file) = deploy_file(json!([
        async_entry(json!({"WORK_MS": "200"})),
        echo_entry("echo", "echo")
    ]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let receiver = Receiver::start(0).await;
    let client = http();

    // 20 calls: each 202 at once with a call id, each called back exactly once.
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let r = client
            .post(p.url("/functions/method_async"))
            .header("x-callback-url", receiver.url("/done"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.insert(r.headers()["x-call-id"].to_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 20, "call ids are unique");
    let got = receiver.wait_for(20, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_ids: HashSet<String> = receiver
        .received()
        .iter()
        .map(|c| c.headers["x-call-id"].clone())
        .collect();
    assert_eq!(receiver.received().len(), 20, "no duplicate callbacks");
    assert_eq!(got_ids, ids);
    for c in &got {
        assert_eq!(c.path, "/done");
        assert_eq!(c.headers["x-function-name"], "method_async");
        assert_eq!(c.headers["x-function-status"], "200");
        let seconds: f64 = c.headers["x-duration-seconds"].parse().unwrap();
        assert!(seconds >= 0.2, "{seconds}");
        assert!(
            c.body.starts_with("Async process ") && c.body.ends_with(" done\n"),
            "{}",
            c.body
        );
    }

    // The caller's call id is kept; any function can be called asynchronously, with its path,
    // query, method and body, and gives the same answer as a sync call.
    let r = client
        .put(p.url("/async-functions/echo/some/path?q=1"))
        .header("x-callback-url", receiver.url("/echo"))
        .header("x-call-id", "my-call-1")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-call-id"], "my-call-1");
    let got = receiver.wait_for(21, Duration::from_secs(30)).await;
    let echo = got.iter().find(|c| c.path == "/echo").unwrap();
    assert_eq!(echo.headers["x-call-id"], "my-call-1");
    assert_eq!(echo.headers["x-function-name"], "echo");
    let v: Value = serde_json::from_str(&echo.body).unwrap();
    assert_eq!(
        (
            v["method"].as_str(),
            v["path"].as_str(),
            v["query"].as_str()
        ),
        (Some("PUT"), Some("/some/path"), Some("q=1"))
    );
    assert_eq!(v["bodyLength"], 3);
    assert_eq!(echo.headers["content-type"], "application/json");

    // `details` shows the queue of each async function.
    let details: Value = serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
    let f = details
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "method_async")
        .unwrap();
    assert_eq!(f["kind"], "async");
    assert_eq!(f["queued"], 0);
    assert_eq!(f["inflight"], 0);

    // Bad input: 4xx problem+json, nothing queued.
    for (url, header, status) in [
        ("/functions/method_async", Some("/relative/path"), 400),
        ("/functions/method_async", Some("ftp://host/x"), 400),
        ("/async-functions/nope", None, 404),
    ] {
        let mut req = client.post(p.url(url));
        if let Some(h) = header {
            req = req.header("x-callback-url", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status, "{url} {header:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let r = client
        .post(p.url("/functions/method_async"))
        .body(vec![b'x'; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.received().len(), 21, "refused calls never run");
}

#[tokio::test]
async fn callbacks_are_retried_workers_may_die_and_a_nats_outage_is_a_503() {
    let p = Platform::start("asyncfaults");
    let (_d, file) = deploy_file(json!([async_entry(
        json!({"WORK_MS": "4000", "RFAAS_ASYNC_ACK_WAIT_MS": "3000"})
    )]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();

    // A receiver answering 503 twice gets the callback on the third attempt, once.
    let receiver = Receiver::start(2).await;
    let r = client
        .post(p.url("/functions/method_async"))
        .header("x-callback-url", receiver.url("/cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    receiver.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(receiver.attempts(), 3);

    // The worker is killed mid-call: the call is redelivered and completes.
    let r = client
        .post(p.url("/functions/method_async"))
        .header("x-callback-url", receiver.url("/after-crash"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-call-id"].to_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = inspect(&p.object("rfa-fn-method_async"))["State"]["Pid"]
        .as_i64()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(90)).await;
    let after = got.iter().find(|c| c.path == "/after-crash").unwrap();
    assert_eq!(after.headers["x-call-id"], id);
    assert_eq!(after.headers["x-function-status"], "200");

    // NATS down: 503 at once, nothing silently lost; back up: accepted again.
    docker(&["stop", &p.object("rfa-nats")]);
    let r = client
        .post(p.url("/functions/method_async"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    docker(&["start", &p.object("rfa-nats")]);
    eventually(
        Duration::from_secs(30),
        "calls accepted after NATS is back",
        || async {
            let r = client
                .post(p.url("/functions/method_async"))
                .header("x-callback-url", receiver.url("/after-outage"))
                .send()
                .await
                .ok()?;
            (r.status() == 202).then_some(())
        },
    )
    .await;
    let got = receiver.wait_for(3, Duration::from_secs(60)).await;
    assert!(got.iter().any(|c| c.path == "/after-outage"));
}
