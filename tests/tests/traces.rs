//! Issue #6: one OpenTelemetry trace per flow, across proxy, NATS, functions and the store, as a
//! real OTLP/gRPC receiver on the host gets it; and no tracing at all without an endpoint.

use std::time::Duration;

use rfaas_tests::otlp::{Collector, Span};
use rfaas_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// A W3C `traceparent` as a client would send it, with a fresh trace id.
fn client_traceparent() -> (String, String, String) {
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    let (trace, span) = (format!("{trace:032x}"), format!("{span:016x}"));
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} in {spans:#?}");
    found[0]
}

fn has(spans: &[Span], pick: impl Fn(&Span) -> bool) -> bool {
    spans.iter().any(pick)
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_async_and_store_flows_are_each_one_trace_across_every_piece() {
    let collector = Collector::start().await;
    let mut p = Platform::new("traces");
    p.start_faas(&["--otlp-endpoint", &collector.endpoint()])
        .ok();
    let dir = root().join("examples/database-events");
    let chain = root().join("examples/method2");
    let (_d, file) = deploy_file(json!([
        echo_entry("echo"),
        {
            "name": "database_events",
            "packageDir": dir,
            "filePath": dir.join("src/lib.rs"),
            "mainProcess": true,
        },
        {"name": "method1", "packageDir": chain, "filePath": chain.join("src/lib.rs")},
        {"name": "method2", "packageDir": chain, "filePath": chain.join("src/lib.rs")},
    ]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();

    // Sync: client → proxy → function.
    let (traceparent, trace, client_span) = client_traceparent();
    let r = client
        .get(p.url("/functions/echo/hello"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    let forwarded = seen["headers"]["traceparent"].as_str().unwrap_or_default();
    assert!(
        forwarded.starts_with(&format!("00-{trace}-")) && !forwarded.contains(&client_span),
        "the function sees the same trace with the gateway's span as parent: {forwarded}"
    );
    let spans = collector
        .trace(&trace, WAIT, |s| {
            has(s, |s| s.service == "rfa-proxy") && has(s, |s| s.service == "rfa-fn-echo")
        })
        .await;
    let gateway = one(&spans, "gateway span", |s| s.service == "rfa-proxy");
    assert_eq!(gateway.parent_span_id, client_span);
    assert_eq!(gateway.kind, "SPAN_KIND_SERVER");
    assert_eq!(gateway.name, "GET /functions/echo");
    assert_eq!(gateway.attributes["rfaas.function"], "echo");
    assert_eq!(gateway.attributes["http.response.status_code"], "200");
    let function = one(&spans, "function span", |s| s.service == "rfa-fn-echo");
    assert_eq!(function.parent_span_id, gateway.span_id);
    assert_eq!(forwarded, format!("00-{trace}-{}-01", gateway.span_id));
    assert_eq!(function.attributes["url.path"], "/hello");

    // Chained: client → proxy → method1 → (Ctx::call) proxy → method2, one trace.
    let (traceparent, trace, client_span) = client_traceparent();
    let r = client
        .get(p.url("/functions/method1"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let gateway_of = |name: &'static str| {
        move |s: &Span| {
            s.service == "rfa-proxy"
                && s.attributes.get("rfaas.function").map(String::as_str) == Some(name)
        }
    };
    let spans = collector
        .trace(&trace, WAIT, |s| {
            has(s, |s| s.service == "rfa-fn-method1")
                && has(s, |s| s.service == "rfa-fn-method2")
                && has(s, gateway_of("method1"))
                && has(s, gateway_of("method2"))
        })
        .await;
    let first = one(&spans, "gateway span of method1", gateway_of("method1"));
    assert_eq!(first.parent_span_id, client_span);
    let method1 = one(&spans, "method1's span", |s| s.service == "rfa-fn-method1");
    assert_eq!(method1.parent_span_id, first.span_id);
    let second = one(&spans, "gateway span of method2", gateway_of("method2"));
    assert_eq!(
        second.parent_span_id, method1.span_id,
        "Ctx::call carries method1's span on"
    );
    let method2 = one(&spans, "method2's span", |s| s.service == "rfa-fn-method2");
    assert_eq!(method2.parent_span_id, second.span_id);

    // Async: client → proxy → NATS → worker → function → callback.
    let receiver = Receiver::start(0).await;
    let (traceparent, trace, client_span) = client_traceparent();
    let r = client
        .post(p.url("/async-functions/echo/body"))
        .header("traceparent", &traceparent)
        .header("x-callback-url", receiver.url("/done"))
        .header("x-call-id", "traced-call")
        .body("queued")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body, "queued");
    let spans = collector
        .trace(&trace, WAIT, |s| {
            has(s, |s| s.name == "POST callback")
                && has(s, |s| s.service == "rfa-proxy")
                && has(s, |s| {
                    s.service == "rfa-fn-echo" && s.kind == "SPAN_KIND_SERVER"
                })
        })
        .await;
    let gateway = one(&spans, "gateway span", |s| s.service == "rfa-proxy");
    assert_eq!(gateway.parent_span_id, client_span);
    assert_eq!(gateway.attributes["rfaas.call_id"], "traced-call");
    assert_eq!(gateway.attributes["http.response.status_code"], "202");
    let worker = one(&spans, "async call span", |s| {
        s.kind == "SPAN_KIND_CONSUMER"
    });
    assert_eq!(worker.service, "rfa-fn-echo");
    assert_eq!(worker.parent_span_id, gateway.span_id);
    assert_eq!(worker.attributes["rfaas.call_id"], "traced-call");
    assert_eq!(worker.attributes["http.response.status_code"], "200");
    let handler = one(&spans, "function span", |s| {
        s.kind == "SPAN_KIND_SERVER" && s.service == "rfa-fn-echo"
    });
    assert_eq!(handler.parent_span_id, worker.span_id);
    let callback = one(&spans, "callback span", |s| s.name == "POST callback");
    assert_eq!(callback.parent_span_id, worker.span_id);
    assert_eq!(callback.kind, "SPAN_KIND_CLIENT");
    assert_eq!(callback.attributes["http.response.status_code"], "200");
    assert_eq!(
        got[0].headers["traceparent"],
        format!("00-{trace}-{}-01", callback.span_id),
        "the callback receiver can join the trace too"
    );
    // The worker's log line carries the trace id, so `proxyCli logs` joins with the trace.
    let logs = p.cli(&["logs", "echo", "--tail", "200"]).ok();
    let line = logs
        .output()
        .lines()
        .find(|l| l.contains("async call finished") && l.contains("traced-call"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no log line for the call: {logs}"));
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["trace_id"], trace.as_str());
    assert_eq!(line["span_id"], worker.span_id.as_str());

    // Store: write → event → subscribed handler (and the handler's own write, in the same trace).
    let (traceparent, trace, client_span) = client_traceparent();
    let r = client
        .post(p.url("/store/tables/payments/docs"))
        .bearer_auth(p.token())
        .header("traceparent", &traceparent)
        .json(&json!({"payer": "ann", "amount": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spans = collector
        .trace(&trace, WAIT, |s| {
            has(s, |s| s.name == "POST /store")
                && has(s, |s| s.name == "POST /tables/{table}/docs")
                && has(s, |s| s.name == "publish new-doc payments")
                && has(s, |s| s.name == "new-doc payments")
                && has(s, |s| s.name == "PATCH /tables/{table}/docs/{id}")
        })
        .await;
    let gateway = one(&spans, "gateway span", |s| {
        s.service == "rfa-proxy" && s.name == "POST /store"
    });
    assert_eq!(gateway.parent_span_id, client_span);
    let write = one(&spans, "store write span", |s| {
        s.service == "rfa-store" && s.name == "POST /tables/{table}/docs"
    });
    assert_eq!(write.parent_span_id, gateway.span_id);
    assert_eq!(write.attributes["rfaas.table"], "payments");
    assert_eq!(write.attributes["http.response.status_code"], "201");
    let publish = one(&spans, "publish span", |s| {
        s.name == "publish new-doc payments"
    });
    assert_eq!(publish.service, "rfa-store");
    assert_eq!(publish.kind, "SPAN_KIND_PRODUCER");
    assert_eq!(publish.parent_span_id, write.span_id);
    assert_eq!(publish.attributes["rfaas.doc_id"], id);
    let event = one(&spans, "event handler span", |s| {
        s.name == "new-doc payments"
    });
    assert_eq!(event.service, "rfa-fn-database_events");
    assert_eq!(event.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(event.parent_span_id, publish.span_id);
    assert_eq!(event.attributes["rfaas.table"], "payments");
    assert_eq!(event.attributes["rfaas.event"], "new-doc");
    assert_eq!(event.attributes["rfaas.doc_id"], id);
    let patch = one(&spans, "the handler's store write", |s| {
        s.name == "PATCH /tables/{table}/docs/{id}" && s.parent_span_id == event.span_id
    });
    assert_eq!(patch.service, "rfa-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_nothing_is_traced_or_exported() {
    let p = Platform::start("notraces");
    let (_d, file) = deploy_file(json!([echo_entry("echo")]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let (traceparent, trace, _) = client_traceparent();
    let r = http()
        .get(p.url("/functions/echo/hello"))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(
        seen["headers"]["traceparent"], traceparent,
        "with tracing off the gateway passes the caller's traceparent on untouched"
    );
    for container in [
        p.object("rfa-proxy"),
        p.object("rfa-store"),
        p.object("rfa-fn-echo"),
    ] {
        let env = inspect(&container)["Config"]["Env"].to_string();
        assert!(!env.contains("OTEL_EXPORTER_OTLP"), "{container}: {env}");
        let logs = std::process::Command::new("docker")
            .args(["logs", &container])
            .output()
            .unwrap();
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned()
            + &String::from_utf8_lossy(&logs.stderr);
        assert!(!logs.is_empty(), "{container} logs something");
        assert!(!logs.contains("exporting traces"), "{container}: {logs}");
        assert!(!logs.contains("\"trace_id\""), "{container}: {logs}");
        assert!(!logs.contains(&trace), "{container}: {logs}");
    }
}
