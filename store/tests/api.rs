//! The HTTP API against a real server and a real `nats-server`: every route, every error case,
//! and exactly one event per write.

mod common;

use common::{Nats, Store, TestResult, etag, expect_problem};
use reqwest::StatusCode;
use reqwest::header::{ALLOW, CONTENT_TYPE, IF_MATCH, LOCATION};
use rfa_wire::names::TABLE_NAME_RULE;
use rfa_wire::store::{Envelope, EventKind, Page, TableInfo};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_one_event_per_write() -> TestResult {
    let nats = Nats::start().await?;
    let dir = tempfile::tempdir()?;
    let store = Store::start(dir.path(), Some(&nats.url)).await?;
    let http = reqwest::Client::new();

    // Liveness and metrics.
    let r = http.get(store.url("/healthz")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await?, "ok");

    // POST → 201, envelope, Location, ETag.
    let r = http
        .post(store.url("/tables/payments/docs"))
        .json(&json!({"amount": 10, "tags": {"a": 1, "b": 2}}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(etag(&r).as_deref(), Some("\"1\""));
    let location = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let created: Envelope = r.json().await?;
    assert_eq!(created.id.len(), 26);
    assert_eq!(created.table, "payments");
    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(created.created_at.len(), 24);
    assert_eq!(
        Value::Object(created.data.clone()),
        json!({"amount": 10, "tags": {"a": 1, "b": 2}})
    );
    assert_eq!(
        location,
        Some(format!("/tables/payments/docs/{}", created.id))
    );
    let doc_url = store.url(&format!("/tables/payments/docs/{}", created.id));

    // GET one → 200, same envelope and ETag.
    let r = http.get(&doc_url).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r).as_deref(), Some("\"1\""));
    assert_eq!(
        r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(r.json::<Envelope>().await?, created);

    // PUT existing → 200, data replaced, version 2, createdAt kept.
    let r = http
        .put(&doc_url)
        .header(IF_MATCH, "\"1\"")
        .json(&json!({"amount": 20, "tags": {"a": 1}}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r).as_deref(), Some("\"2\""));
    let put: Envelope = r.json().await?;
    assert_eq!(put.version, 2);
    assert_eq!(put.created_at, created.created_at);
    assert_eq!(
        Value::Object(put.data.clone()),
        json!({"amount": 20, "tags": {"a": 1}})
    );

    // PATCH → merge patch, version 3; If-Match: * on an existing doc passes.
    let r = http
        .patch(&doc_url)
        .header(IF_MATCH, "*")
        .json(&json!({"amount": null, "tags": {"b": 3}, "note": "x"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r).as_deref(), Some("\"3\""));
    let patched: Envelope = r.json().await?;
    assert_eq!(
        Value::Object(patched.data.clone()),
        json!({"tags": {"a": 1, "b": 3}, "note": "x"})
    );

    // PUT of a new id → 201 with Location.
    let r = http
        .put(store.url("/tables/payments/docs/my-own-id"))
        .json(&json!({"k": "v"}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/tables/payments/docs/my-own-id")
    );
    let own: Envelope = r.json().await?;
    assert_eq!((own.id.as_str(), own.version), ("my-own-id", 1));

    // GET /tables: counts.
    let tables: Vec<TableInfo> = http.get(store.url("/tables")).send().await?.json().await?;
    assert_eq!(
        tables,
        vec![TableInfo {
            name: "payments".into(),
            count: 2
        }]
    );

    // DELETE → 204, then 404 for GET and DELETE.
    let r = http
        .delete(&doc_url)
        .header(IF_MATCH, "\"3\"")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_problem(http.get(&doc_url).send().await?, 404).await?;
    expect_problem(http.delete(&doc_url).send().await?, 404).await?;

    // Paging in id order: 7 docs, pages of 3.
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = http
            .post(store.url("/tables/pages/docs"))
            .json(&json!({"i": i}))
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::CREATED);
        ids.push(r.json::<Envelope>().await?.id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "ids sort by creation");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = store.url("/tables/pages/docs?limit=3");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Page = http.get(&url).send().await?.json().await?;
        pages += 1;
        assert!(page.docs.len() <= 3);
        seen.extend(page.docs.iter().map(|d| d.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    let page: Page = http
        .get(store.url("/tables/pages/docs"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page.docs.len(), 7);
    assert_eq!(page.next, None);
    let page: Page = http
        .get(store.url("/tables/nothing-here/docs"))
        .send()
        .await?
        .json()
        .await?;
    assert!(page.docs.is_empty());

    let tables: Vec<TableInfo> = http.get(store.url("/tables")).send().await?.json().await?;
    assert_eq!(
        tables,
        vec![
            TableInfo {
                name: "pages".into(),
                count: 7
            },
            TableInfo {
                name: "payments".into(),
                count: 1
            },
        ]
    );

    // Events: exactly one per write, in order, with subject, payload and Nats-Msg-Id.
    let expected = [
        (EventKind::NewDoc, created.id.as_str(), "payments"),
        (EventKind::UpdatedDoc, created.id.as_str(), "payments"),
        (EventKind::UpdatedDoc, created.id.as_str(), "payments"),
        (EventKind::NewDoc, "my-own-id", "payments"),
        (EventKind::DeletedDoc, created.id.as_str(), "payments"),
    ];
    let total = expected.len() + ids.len();
    let events = nats.events(total).await?;
    store.outbox_drained(&http).await?;
    assert_eq!(nats.stream_len().await?, total as u64, "no extra events");
    let instance = events[0]
        .msg_id
        .rsplit_once('-')
        .map(|(i, _)| i.to_string())
        .ok_or("bad Nats-Msg-Id")?;
    assert_eq!(instance.len(), 26);
    for (n, e) in events.iter().enumerate() {
        let seq = n as u64 + 1;
        assert_eq!(e.event.seq, seq);
        assert_eq!(e.msg_id, format!("{instance}-{seq}"));
        assert_eq!(
            e.subject,
            format!(
                "rfa.store.{}.{}.{}",
                e.event.table,
                e.event.event.as_str(),
                e.event.id
            )
        );
        assert_eq!(e.event.doc.id, e.event.id);
        assert_eq!(e.event.at.len(), 24);
    }
    for (e, (kind, id, table)) in events.iter().zip(expected) {
        assert_eq!(
            (e.event.event, e.event.id.as_str(), e.event.table.as_str()),
            (kind, id, table)
        );
    }
    assert_eq!(events[0].event.doc, created);
    assert_eq!(events[1].event.doc, put);
    assert_eq!(events[2].event.doc, patched);
    assert_eq!(events[3].event.doc, own);
    assert_eq!(
        events[4].event.doc, patched,
        "deleted-doc carries the last envelope"
    );
    for (e, id) in events[5..].iter().zip(&ids) {
        assert_eq!((e.event.event, &e.event.id), (EventKind::NewDoc, id));
    }

    // Metrics: the families are there, in the text format.
    let text = http.get(store.url("/metrics")).send().await?.text().await?;
    for family in [
        "rfa_store_requests_total{",
        "rfa_store_request_duration_seconds_bucket{",
        "rfa_store_outbox_pending 0",
        "rfa_store_events_published_total 12",
        "rfa_store_flushes_total",
        "rfa_store_writes_total{event=\"new-doc\"} 9",
        "rfa_store_operations_total{operation=\"create\",result=\"ok\",table=\"",
        "rfa_store_operation_duration_seconds_bucket{operation=\"create\",table=\"",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    assert!(text.contains("code=\"201\""));

    store.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_problems_and_write_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::start(dir.path(), None).await?;
    let http = reqwest::Client::new();

    let r = http
        .post(store.url("/tables/t/docs"))
        .json(&json!({"keep": true}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    let doc: Envelope = r.json().await?;
    let doc_url = store.url(&format!("/tables/t/docs/{}", doc.id));

    // Bad table names: 400 quoting the rule, on every route.
    for (method, path) in [
        ("POST", "/tables/a.b/docs"),
        ("GET", "/tables/a.b/docs"),
        ("GET", "/tables/a%20b/docs/x"),
        ("PUT", "/tables/a%2Fb/docs/x"),
        ("PATCH", &format!("/tables/{}/docs/x", "x".repeat(65))),
        ("DELETE", "/tables/a*b/docs/x"),
    ] {
        let r = http
            .request(method.parse()?, store.url(path))
            .json(&json!({}))
            .send()
            .await?;
        let p = expect_problem(r, 400).await?;
        assert!(
            p.detail.contains(TABLE_NAME_RULE),
            "{method} {path}: {}",
            p.detail
        );
    }

    // Bodies: not JSON, not an object, empty, too large.
    for body in ["{not json", "[1,2]", "\"s\"", "42", "null", ""] {
        for r in [
            http.post(store.url("/tables/t/docs"))
                .body(body)
                .send()
                .await?,
            http.put(store.url("/tables/t/docs/new"))
                .body(body)
                .send()
                .await?,
            http.patch(&doc_url).body(body).send().await?,
        ] {
            let p = expect_problem(r, 400).await?;
            assert!(p.detail.contains("JSON"), "{body:?}: {}", p.detail);
        }
    }
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(1024 * 1024));
    for r in [
        http.post(store.url("/tables/t/docs"))
            .header(CONTENT_TYPE, "application/json")
            .body(big.clone())
            .send()
            .await?,
        http.put(&doc_url).body(big.clone()).send().await?,
        http.patch(&doc_url).body(big.clone()).send().await?,
    ] {
        expect_problem(r, 413).await?;
    }
    // A patch that would grow the document past the event limit is refused too.
    let half = json!({"a": "b".repeat(600 * 1024)});
    let r = http.patch(&doc_url).json(&half).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let grown: Envelope = r.json().await?;
    let r = http
        .patch(&doc_url)
        .json(&json!({"c": "d".repeat(600 * 1024)}))
        .send()
        .await?;
    expect_problem(r, 413).await?;

    // Unknown ids and invalid ids.
    let missing = store.url("/tables/t/docs/01ARZ3NDEKTSV4RRFFQ69G5FAV");
    expect_problem(http.get(&missing).send().await?, 404).await?;
    expect_problem(http.patch(&missing).json(&json!({})).send().await?, 404).await?;
    expect_problem(http.delete(&missing).send().await?, 404).await?;
    expect_problem(http.get(store.url("/tables/t/docs/a.b")).send().await?, 404).await?;
    expect_problem(
        http.put(store.url("/tables/t/docs/a.b"))
            .json(&json!({}))
            .send()
            .await?,
        400,
    )
    .await?;

    // If-Match mismatch: 412 on PUT, PATCH, DELETE; If-Match on a missing doc's PUT: 412.
    for r in [
        http.put(&doc_url)
            .header(IF_MATCH, "\"1\"")
            .json(&json!({}))
            .send()
            .await?,
        http.patch(&doc_url)
            .header(IF_MATCH, "\"7\"")
            .json(&json!({}))
            .send()
            .await?,
        http.delete(&doc_url)
            .header(IF_MATCH, "W/\"2\"")
            .send()
            .await?,
        http.put(store.url("/tables/t/docs/nope"))
            .header(IF_MATCH, "*")
            .json(&json!({}))
            .send()
            .await?,
        http.put(store.url("/tables/t/docs/nope"))
            .header(IF_MATCH, "\"1\"")
            .json(&json!({}))
            .send()
            .await?,
    ] {
        expect_problem(r, 412).await?;
    }

    // Bad paging parameters.
    for q in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=",
        "after=a.b",
        "after=%2A",
    ] {
        expect_problem(
            http.get(store.url(&format!("/tables/t/docs?{q}")))
                .send()
                .await?,
            400,
        )
        .await?;
    }

    // Unsupported methods: 405 problem with Allow; unknown routes: 404 problem.
    let r = http.delete(store.url("/tables")).send().await?;
    let allow = r
        .headers()
        .get(ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    expect_problem(r, 405).await?;
    assert!(allow.is_some_and(|a| a.contains("GET")));
    expect_problem(http.post(&doc_url).json(&json!({})).send().await?, 405).await?;
    expect_problem(http.put(store.url("/tables/t/docs")).send().await?, 405).await?;
    expect_problem(http.get(store.url("/nowhere")).send().await?, 404).await?;

    // Nothing was written: the document is as the last successful write left it, the table
    // counts one document, and only the two successful writes reached the outbox.
    let r = http.get(&doc_url).send().await?;
    assert_eq!(etag(&r).as_deref(), Some("\"2\""));
    assert_eq!(r.json::<Envelope>().await?, grown);
    let tables: Vec<TableInfo> = http.get(store.url("/tables")).send().await?.json().await?;
    assert_eq!(
        tables,
        vec![TableInfo {
            name: "t".into(),
            count: 1
        }]
    );
    expect_problem(http.get(store.url("/tables/t/docs/new")).send().await?, 404).await?;
    expect_problem(
        http.get(store.url("/tables/t/docs/nope")).send().await?,
        404,
    )
    .await?;
    assert_eq!(store.metric(&http, "rfa_store_outbox_pending").await?, 2.0);

    store.stop().await
}
