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
        echo_entry("echo")
    ]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let receiver = Receiver::start(0).await;
    let client = http();

    // The example: 202 at once, the work runs, its answer is called back.
    let r = client
        .post(p.url("/functions/method_async"))
        .header("x-callback-url", receiver.url("/done"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let example_id = r.headers()["x-call-id"].to_str().unwrap().to_string();
    let got = receiver.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].path, "/done");
    assert_eq!(got[0].headers["x-call-id"], example_id);
    assert_eq!(got[0].headers["x-function-name"], "method_async");
    assert_eq!(got[0].headers["x-function-status"], "200");
    let seconds: f64 = got[0].headers["x-duration-seconds"].parse().unwrap();
    assert!(seconds >= 0.2, "{seconds}");
    assert_eq!(got[0].body, "Async process 1 done\n");

    // 200 calls with distinct payloads: 200 callbacks, each with its own id and body, none
    // lost, no duplicate.
    for i in 0..200 {
        let r = client
            .post(p.url("/async-functions/echo/body"))
            .header("x-callback-url", receiver.url("/many"))
            .header("x-call-id", format!("call-{i}"))
            .body(format!("payload-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["x-call-id"], format!("call-{i}").as_str());
    }
    receiver.wait_for(201, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let many: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|c| c.path == "/many")
        .collect();
    let ids: HashSet<&str> = many
        .iter()
        .map(|c| c.headers["x-call-id"].as_str())
        .collect();
    assert_eq!(ids.len(), 200, "every call answered");
    assert_eq!(many.len(), 200, "duplicates: {}", many.len() - ids.len());
    for c in &many {
        let n = c.headers["x-call-id"].strip_prefix("call-").unwrap();
        assert_eq!(c.body, format!("payload-{n}"));
        assert_eq!(c.headers["x-function-name"], "echo");
        assert_eq!(c.headers["x-function-status"], "200");
    }

    // A sync call and an async call of the same function give the same body.
    let sync_body = client
        .put(p.url("/functions/echo/body"))
        .body("same")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .put(p.url("/async-functions/echo/body"))
        .header("x-callback-url", receiver.url("/same"))
        .body("same")
        .send()
        .await
        .unwrap();
    let got = receiver.wait_for(202, Duration::from_secs(30)).await;
    assert_eq!(
        got.iter().find(|c| c.path == "/same").unwrap().body,
        sync_body
    );

    // A function answering 500: the callback carries the status, and the call is not re-run.
    client
        .post(p.url("/async-functions/echo/fail"))
        .header("x-callback-url", receiver.url("/fail"))
        .send()
        .await
        .unwrap();
    let got = receiver.wait_for(203, Duration::from_secs(30)).await;
    let fail = got.iter().find(|c| c.path == "/fail").unwrap();
    assert_eq!(fail.headers["x-function-status"], "500");
    assert_eq!(fail.body, "failed on purpose\n");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|c| c.path == "/fail")
            .count(),
        1,
        "not re-run"
    );

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
    let got = receiver.wait_for(204, Duration::from_secs(30)).await;
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
    assert_eq!(receiver.received().len(), 204, "refused calls never run");
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

    // NATS stops with calls accepted and not yet run: they complete after it is back. While it
    // is down, calls get 503 at once (nothing is accepted that could be lost).
    let mut before_stop = HashSet::new();
    for _ in 0..3 {
        let r = client
            .post(p.url("/functions/method_async"))
            .header("x-callback-url", receiver.url("/before-stop"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        before_stop.insert(r.headers()["x-call-id"].to_str().unwrap().to_string());
    }
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
    eventually(
        Duration::from_secs(120),
        "the calls accepted before NATS stopped",
        || async {
            let done: HashSet<String> = receiver
                .received()
                .iter()
                .filter(|c| c.path == "/before-stop")
                .map(|c| c.headers["x-call-id"].clone())
                .collect();
            (done == before_stop).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the call accepted after NATS is back",
        || async {
            receiver
                .received()
                .iter()
                .any(|c| c.path == "/after-outage")
                .then_some(())
        },
    )
    .await;
}
