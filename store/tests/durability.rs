//! Durability and delivery: NATS outages, restarts, concurrent writers and `kill -9`.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::{Nats, Res, Store, TestResult, eventually, free_port};
use reqwest::StatusCode;
use rfa_wire::store::{Envelope, EventKind, Page, TableInfo};
use serde_json::json;

/// Every id of `table`, through the paged listing.
async fn all_ids(http: &reqwest::Client, store: &Store, table: &str) -> Res<Vec<String>> {
    let mut ids = Vec::new();
    let mut after = String::new();
    loop {
        let url = store.url(&format!("/tables/{table}/docs?limit=1000&after={after}"));
        let page: Page = http.get(url).send().await?.json().await?;
        ids.extend(page.docs.into_iter().map(|d| d.id));
        match page.next {
            Some(next) => after = next,
            None => return Ok(ids),
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: serde_json::Value) -> Res<Envelope> {
    let r = http.post(url).json(&body).send().await?;
    if r.status() != StatusCode::CREATED {
        return Err(format!("POST {url}: {}", r.status()).into());
    }
    Ok(r.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_succeed_while_nats_is_down_and_the_backlog_follows() -> TestResult {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir()?;
    let store = Store::start(dir.path(), Some(&url)).await?;
    let http = reqwest::Client::new();

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            post(&http, &store.url("/tables/orders/docs"), json!({"i": i}))
                .await?
                .id,
        );
    }
    assert_eq!(store.metric(&http, "rfa_store_outbox_pending").await?, 20.0);

    let nats = Nats::start_on(port).await?;
    let events = nats.events(20).await?;
    store.outbox_drained(&http).await?;
    assert_eq!(nats.stream_len().await?, 20);
    let got: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.event.event == EventKind::NewDoc));
    store.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_documents_and_publishes_the_outbox() -> TestResult {
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::new();

    // First life: no NATS, so every event stays in the outbox.
    let store = Store::start(dir.path(), None).await?;
    let a = post(&http, &store.url("/tables/t/docs"), json!({"n": 1})).await?;
    let b = post(&http, &store.url("/tables/t/docs"), json!({"n": 2})).await?;
    let r = http
        .patch(store.url(&format!("/tables/t/docs/{}", a.id)))
        .json(&json!({"n": 10}))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .delete(store.url(&format!("/tables/t/docs/{}", b.id)))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    store.stop().await?;

    // Second life, on the same directory, with NATS.
    let nats = Nats::start().await?;
    let store = Store::start(dir.path(), Some(&nats.url)).await?;
    let doc: Envelope = http
        .get(store.url(&format!("/tables/t/docs/{}", a.id)))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!((doc.version, doc.data.get("n")), (2, Some(&json!(10))));
    let r = http
        .get(store.url(&format!("/tables/t/docs/{}", b.id)))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let tables: Vec<TableInfo> = http.get(store.url("/tables")).send().await?.json().await?;
    assert_eq!(
        tables,
        vec![TableInfo {
            name: "t".into(),
            count: 1
        }]
    );

    // A write after the restart continues the sequence under the same instance id.
    post(&http, &store.url("/tables/t/docs"), json!({"n": 3})).await?;
    let events = nats.events(5).await?;
    store.outbox_drained(&http).await?;
    assert_eq!(nats.stream_len().await?, 5);
    let kinds: Vec<EventKind> = events.iter().map(|e| e.event.event).collect();
    use EventKind::*;
    assert_eq!(kinds, [NewDoc, NewDoc, UpdatedDoc, DeletedDoc, NewDoc]);
    let instance = events[0]
        .msg_id
        .split('-')
        .next()
        .unwrap_or_default()
        .to_string();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.event.seq, n as u64 + 1);
        assert_eq!(e.msg_id, format!("{instance}-{}", n + 1));
    }
    store.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_all_kept_across_a_restart() -> TestResult {
    const TASKS: usize = 16;
    const PER_TASK: usize = 50;
    let nats = Nats::start().await?;
    let dir = tempfile::tempdir()?;
    let store = Store::start(dir.path(), Some(&nats.url)).await?;
    let http = reqwest::Client::new();
    let url = Arc::new(store.url("/tables/load/docs"));

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(PER_TASK);
            for i in 0..PER_TASK {
                ids.push(post(&http, &url, json!({"task": t, "i": i})).await?.id);
            }
            Res::Ok(ids)
        }));
    }
    let mut written = BTreeSet::new();
    for task in tasks {
        written.extend(task.await??);
    }
    assert_eq!(written.len(), TASKS * PER_TASK);
    let flushes = store.metric(&http, "rfa_store_flushes_total").await?;
    assert!(flushes >= 1.0);
    store.stop().await?;

    let store = Store::start(dir.path(), Some(&nats.url)).await?;
    let listed = all_ids(&http, &store, "load").await?;
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "listing is in id order");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), written);
    let tables: Vec<TableInfo> = http.get(store.url("/tables")).send().await?.json().await?;
    assert_eq!(
        tables,
        vec![TableInfo {
            name: "load".into(),
            count: (TASKS * PER_TASK) as u64
        }]
    );

    // One event per write, in seq order.
    let events = nats.events(TASKS * PER_TASK).await?;
    store.outbox_drained(&http).await?;
    assert_eq!(nats.stream_len().await?, (TASKS * PER_TASK) as u64);
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e.event.seq, n as u64 + 1);
    }
    let evented: BTreeSet<String> = events.into_iter().map(|e| e.event.id).collect();
    assert_eq!(evented, written);
    store.stop().await
}

/// The `rfa-store` binary as a child process.
struct Binary {
    child: Child,
    base: String,
}

impl Binary {
    async fn start(dir: &std::path::Path, http: &reqwest::Client) -> Res<Binary> {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rfa-store"))
            .env("RFAAS_PORT", port.to_string())
            .env("RFAAS_DATA_DIR", dir)
            .env_remove("RFAAS_NATS_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let bin = Binary {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let health = format!("{}/healthz", bin.base);
        eventually("the binary to answer /healthz", || async {
            let r = http.get(&health).send().await.ok()?;
            (r.status() == StatusCode::OK).then_some(())
        })
        .await?;
        Ok(bin)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_and_sigterm_exits_cleanly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let http = reqwest::Client::new();

    let mut bin = Binary::start(dir.path(), &http).await?;
    let url = Arc::new(format!("{}/tables/crash/docs", bin.base));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                ids.push(post(&http, &url, json!({"t": t, "i": i})).await?.id);
            }
            Res::Ok(ids)
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await??);
    }
    // SIGKILL, straight after the last 2xx.
    bin.child.kill()?;
    bin.child.wait()?;
    drop(bin);

    let mut bin = Binary::start(dir.path(), &http).await?;
    for id in &acknowledged {
        let r = http
            .get(format!("{}/tables/crash/docs/{id}", bin.base))
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::OK, "document {id} was lost");
    }
    let tables: Vec<TableInfo> = http
        .get(format!("{}/tables", bin.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        tables,
        vec![TableInfo {
            name: "crash".into(),
            count: 200
        }]
    );

    // SIGTERM: a graceful exit with status 0.
    let status = Command::new("kill")
        .args(["-TERM", &bin.child.id().to_string()])
        .status()?;
    assert!(status.success());
    let exit = eventually("the binary to exit after SIGTERM", || {
        let polled = bin.child.try_wait();
        async move { polled.ok().flatten() }
    })
    .await?;
    assert!(exit.success(), "exit status {exit}");
    Ok(())
}
