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
    let page: Value = client
        .get(url("/tables/durable/docs?limit=1000"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found: Vec<&str> = page["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        found,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
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
