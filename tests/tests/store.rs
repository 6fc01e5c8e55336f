//! Issue #5: the document store through the gateway and the CLI, its durability, its events and
//! a mainProcess service reacting to them (examples/database-events), end to end.

use std::time::Duration;

use rfaas_tests::*;
use serde_json::{Value, json};

#[tokio::test]
async fn the_store_through_the_gateway_and_the_cli_survives_a_crash() {
    let p = Platform::start("store");
    let client = http();
    let token = p.token();
    let url = |path: &str| p.url(&format!("/store{path}"));

    // Create, read, update, patch, delete, with the contract's statuses.
    let r = client
        .post(url("/tables/orders/docs"))
        .bearer_auth(&token)
        .json(&json!({"item": "tea", "qty": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let doc: Value = r.json().await.unwrap();
    let id = doc["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/tables/orders/docs/{id}"));
    assert_eq!(
        (doc["table"].as_str(), doc["version"].as_u64()),
        (Some("orders"), Some(1))
    );
    let r = client
        .patch(url(&format!("/tables/orders/docs/{id}")))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"qty": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .patch(url(&format!("/tables/orders/docs/{id}")))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"qty": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412, "a stale If-Match is refused");
    let r = client
        .post(url("/tables/orders/docs"))
        .bearer_auth(&token)
        .body("[1,2]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = client
        .get(url("/tables/bad.name/docs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The CLI shows the same data.
    let got = p.cli(&["store", "get", "orders", &id]).ok();
    let v: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(
        (v["version"].as_u64(), v["data"]["qty"].as_u64()),
        (Some(2), Some(2))
    );
    let created = p
        .cli(&["store", "create", "orders", r#"{"item": "cake"}"#])
        .ok();
    let cake: Value = serde_json::from_str(&created.stdout).unwrap();
    let tables: Value = serde_json::from_str(&p.cli(&["store", "tables"]).ok().stdout).unwrap();
    assert_eq!(tables, json!([{"name": "orders", "count": 2}]));
    let bad = p.cli(&["store", "create", "orders", "not json"]).failed();
    assert!(bad.stderr.contains("not valid JSON"), "{bad}");
    let missing = p.cli(&["store", "get", "orders", "01NOTTHERE"]).failed();
    assert!(missing.stderr.contains("404"), "{missing}");
    p.cli(&["store", "delete", "orders", cake["id"].as_str().unwrap()])
        .ok();

    // 100 acknowledged writes survive a kill -9 of the store.
    let mut ids = Vec::new();
    for i in 0..100 {
        let r = client
            .post(url("/tables/durable/docs"))
            .bearer_auth(&token)
            .json(&json!({"i": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let pid = inspect(&p.object("rfa-store"))["State"]["Pid"]
        .as_i64()
        .unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the store back after kill -9",
        || async {
            let r = client
                .get(url("/healthz"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            (r.status() == 200
                && inspect(&p.object("rfa-store"))["RestartCount"].as_i64() >= Some(1))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        all_ids(&p, "durable").await,
        ids,
        "every acknowledged write, in id order"
    );
}

async fn payment(p: &Platform, id: &str) -> Option<Value> {
    let r = http()
        .get(p.url(&format!("/store/tables/payments/docs/{id}")))
        .bearer_auth(p.token())
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test]
async fn database_events_example_reacts_to_every_write_even_after_being_down() {
    let p = Platform::start("dbevents");
    let run = p
        .cli(&[
            "deploy",
            root()
                .join("examples/database-events/deploy.json")
                .to_str()
                .unwrap(),
        ])
        .ok();
    assert!(run.stdout.contains("database_events"), "{run}");
    let client = http();

    // /pay → new-doc adds the invoice → updated-doc marks it emailed → and there it stops.
    let r = client
        .post(p.url("/functions/database_events/pay"))
        .json(&json!({"payer": "ann", "amount": 12.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = eventually(
        Duration::from_secs(30),
        "the payment invoiced and emailed",
        || async {
            let d = payment(&p, &id).await?;
            (d["data"]["emailed"] == true).then_some(d)
        },
    )
    .await;
    assert_eq!(doc["data"]["invoice"], format!("INV-{id}"));
    assert_eq!(doc["version"], 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        payment(&p, &id).await.unwrap()["version"],
        3,
        "the handlers do not loop"
    );
    let list: Value = client
        .get(p.url("/functions/database_events/payments"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let r = client
        .post(p.url("/functions/database_events/pay"))
        .json(&json!({"payer": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Deleted: the archive keeps the last version.
    p.cli(&["store", "delete", "payments", &id]).ok();
    eventually(Duration::from_secs(30), "the archived payment", || async {
        let r = http()
            .get(p.url(&format!("/store/tables/payments_archive/docs/{id}")))
            .bearer_auth(p.token())
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        (v["data"]["emailed"] == true).then_some(())
    })
    .await;

    // The service is down while payments are written: it handles them when it is back.
    let container = p.object("rfa-fn-database_events");
    docker(&["stop", &container]);
    let mut ids = Vec::new();
    for i in 0..5 {
        let out = p
            .cli(&[
                "store",
                "create",
                "payments",
                &json!({"payer": format!("p{i}"), "amount": 1}).to_string(),
            ])
            .ok();
        ids.push(
            serde_json::from_str::<Value>(&out.stdout).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        assert!(
            payment(&p, id).await.unwrap()["data"]["invoice"].is_null(),
            "nothing ran while down"
        );
    }
    docker(&["start", &container]);
    for id in &ids {
        eventually(
            Duration::from_secs(60),
            "a payment written while the service was down",
            || async {
                let d = payment(&p, id).await?;
                (d["data"]["emailed"] == true && d["version"] == 3).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn kill_9_during_1000_concurrent_writes_loses_no_acknowledged_write_and_no_event() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const WRITES: usize = 1000;
    const WRITERS: usize = 50;
    const KILL_AFTER: usize = 300;

    let p = Arc::new(Platform::start("crash"));
    let nats_url = p.nats_url();
    let store_pid = inspect(&p.object("rfa-store"))["State"]["Pid"]
        .as_i64()
        .unwrap();

    let next = Arc::new(AtomicUsize::new(0));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let killer = {
        let acked_count = acked_count.clone();
        tokio::spawn(async move {
            while acked_count.load(Ordering::SeqCst) < KILL_AFTER {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let killed = std::process::Command::new("kill")
                .args(["-9", &store_pid.to_string()])
                .status()
                .unwrap();
            assert!(killed.success(), "kill -9 of the store's process");
            acked_count.load(Ordering::SeqCst)
        })
    };
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (p, next, acked_count) = (p.clone(), next.clone(), acked_count.clone());
        writers.push(tokio::spawn(async move {
            let client = http();
            let (mut acked, mut failed) = (Vec::new(), 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= WRITES {
                    return (acked, failed);
                }
                let r = client
                    .post(p.url("/store/tables/crash/docs"))
                    .bearer_auth(p.token())
                    .json(&json!({"i": i}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let doc: Value = r.json().await.unwrap();
                        assert_eq!(doc["data"]["i"].as_u64(), Some(i as u64));
                        acked.push((doc["id"].as_str().unwrap().to_string(), i));
                        acked_count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => {
                        assert!(
                            r.status().is_server_error(),
                            "a write the crash interrupts fails with a 5xx, not {}",
                            r.status()
                        );
                        failed += 1;
                        // The store is restarting: back off a little as a client would.
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        }));
    }
    let mut acked = Vec::new();
    let mut failed = 0;
    for w in writers {
        let (a, f) = w.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    let acked_at_kill = killer.await.unwrap();
    assert!(
        (KILL_AFTER..WRITES).contains(&acked_at_kill),
        "the kill happened mid-run ({acked_at_kill} acknowledged at the time)"
    );
    assert_eq!(acked.len() + failed, WRITES);
    assert!(
        inspect(&p.object("rfa-store"))["RestartCount"].as_i64() >= Some(1),
        "the store was restarted after the kill"
    );

    // Every acknowledged write is there, with its own data.
    let present = all_ids(&p, "crash").await;
    let present_set: std::collections::HashSet<&str> = present.iter().map(String::as_str).collect();
    for (id, i) in &acked {
        assert!(
            present_set.contains(id.as_str()),
            "acknowledged write {i} ({id}) is lost"
        );
    }
    assert!(present.len() <= WRITES);

    // Each present document has exactly one new-doc event, and no event names a document that
    // is absent: unacknowledged writes are wholly there (with their event) or wholly absent. The
    // publisher may still be draining the outbox after the restart, so wait for it.
    let events = eventually(
        Duration::from_secs(60),
        "one event for every present document",
        || async {
            let events = all_events(&nats_url, "crash").await;
            (events.len() >= present.len()).then_some(events)
        },
    )
    .await;
    let mut per_id = std::collections::HashMap::<&str, usize>::new();
    for (event, id) in &events {
        assert_eq!(event, "new-doc");
        assert!(
            present_set.contains(id.as_str()),
            "an event for a document that is not in the store: {id}"
        );
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated events: {duplicated:?}");
    assert_eq!(
        per_id.len(),
        present.len(),
        "every present document has its event"
    );
    eprintln!(
        "crash test: {} acknowledged, {failed} failed, {} present after restart, {} events, killed at {acked_at_kill}",
        acked.len(),
        present.len(),
        events.len()
    );
}
