//! Store events with a real nats-server: DocEvent payloads published on the store's subjects
//! reach the service's handlers through durable consumers.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use common::{NatsServer, client, eventually, metrics_page, sample, start};
use function_base::prelude::*;
use function_base::{App, Config};
use futures_util::StreamExt;
use rfa_wire::store::{Envelope, EventKind};
use rfa_wire::streams;

const WAIT: Duration = Duration::from_secs(20);

fn config(nats: &NatsServer, function: &str) -> Config {
    let mut config = Config::default();
    config.nats_url = Some(nats.url.clone());
    config.function_name = Some(function.to_string());
    config.event_backoff = Duration::from_millis(10);
    config.drain_timeout = Duration::from_secs(5);
    config
}

fn event(kind: EventKind, table: &str, id: &str, seq: u64) -> DocEvent {
    let mut data = serde_json::Map::new();
    data.insert("amount".into(), json!(seq * 10));
    DocEvent {
        event: kind,
        table: table.to_string(),
        id: id.to_string(),
        seq,
        at: "2024-05-01T10:00:00Z".to_string(),
        doc: Envelope {
            id: id.to_string(),
            table: table.to_string(),
            version: 1,
            created_at: "2024-05-01T10:00:00Z".to_string(),
            updated_at: "2024-05-01T10:00:00Z".to_string(),
            data,
        },
    }
}

/// Publishes an event as the store does and waits for JetStream's ack.
async fn publish(js: &jetstream::Context, event: &DocEvent) {
    let subject = rfa_wire::subjects::store_event(&event.table, event.event.as_str(), &event.id);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("store-{}", event.seq).as_str());
    js.publish_with_headers(subject, headers, serde_json::to_vec(event).unwrap().into())
        .await
        .expect("publish")
        .await
        .expect("puback");
}

/// What the handlers saw: (handler, id) → times.
type Seen = Arc<Mutex<HashMap<(String, String), usize>>>;

fn recorder(
    seen: &Seen,
    name: &'static str,
) -> impl Fn(DocEvent) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
    let seen = seen.clone();
    move |event: DocEvent| {
        *seen
            .lock()
            .unwrap()
            .entry((name.to_string(), event.id.clone()))
            .or_default() += 1;
        std::future::ready(Ok(()))
    }
}

fn total(seen: &Seen) -> usize {
    seen.lock().unwrap().values().sum()
}

/// The consumer's (ack pending, redelivered, pending) counts.
async fn consumer_counts(js: &jetstream::Context, durable: &str) -> Option<(usize, usize, u64)> {
    let stream = js.get_stream(rfa_wire::subjects::STORE_STREAM).await.ok()?;
    let mut consumer = stream.get_consumer::<pull::Config>(durable).await.ok()?;
    let info = consumer.info().await.ok()?;
    Some((info.num_ack_pending, info.num_redelivered, info.num_pending))
}

async fn settled(js: &jetstream::Context, durable: &str) {
    eventually(WAIT, "the consumer to settle", || async {
        let (ack_pending, _, pending) = consumer_counts(js, durable).await?;
        (ack_pending == 0 && pending == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn each_handler_gets_its_events_once() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    rfa_io::nats::ensure_stream(&js, streams::store_events())
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let mut service = Service::new();
    service
        .route("/pay", post(|| async { "paid" }))
        .on_new_doc("payments", recorder(&seen, "new"))
        .on_updated_doc("payments", recorder(&seen, "updated"))
        .on_deleted_doc("payments", recorder(&seen, "deleted"));
    let server = start(App::from_service(service, config(&nats, "shop")).unwrap()).await;

    publish(&js, &event(EventKind::NewDoc, "payments", "p1", 1)).await;
    publish(&js, &event(EventKind::NewDoc, "payments", "p2", 2)).await;
    publish(&js, &event(EventKind::UpdatedDoc, "payments", "p1", 3)).await;
    publish(&js, &event(EventKind::DeletedDoc, "payments", "p2", 4)).await;
    // Another table: no handler.
    publish(&js, &event(EventKind::NewDoc, "orders", "o1", 5)).await;

    eventually(WAIT, "4 events handled", || async {
        (total(&seen) >= 4).then_some(())
    })
    .await;
    for event in ["new-doc", "updated-doc", "deleted-doc"] {
        settled(&js, &format!("ev-shop-payments-{event}")).await;
    }
    let seen = seen.lock().unwrap().clone();
    let expected: HashMap<(String, String), usize> = [
        (("new".to_string(), "p1".to_string()), 1),
        (("new".to_string(), "p2".to_string()), 1),
        (("updated".to_string(), "p1".to_string()), 1),
        (("deleted".to_string(), "p2".to_string()), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        consumer_counts(&js, "ev-shop-payments-new-doc").await,
        Some((0, 0, 0))
    );
    // HTTP routes keep working beside the events.
    let r = client().post(server.url("/pay")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "paid");
    let page = metrics_page(&server).await;
    assert_eq!(
        sample(
            &page,
            r#"rfa_events_total{event="new-doc",outcome="ok",table="payments"}"#
        ),
        Some(2.0)
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_handler_is_retried_then_dead_lettered() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    rfa_io::nats::ensure_stream(&js, streams::store_events())
        .await
        .unwrap();
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let handler = {
        let calls = calls.clone();
        move |event: DocEvent| {
            let calls = calls.clone();
            async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    let n = calls.entry(event.id.clone()).or_default();
                    *n += 1;
                    *n
                };
                match event.id.as_str() {
                    // Fails twice, then works.
                    "flaky" if n <= 2 => Err(format!("flaky failure {n}")),
                    "flaky" => Ok(()),
                    _ => Err("the mail server is down".to_string()),
                }
            }
        }
    };
    let mut service = Service::new();
    service.on_new_doc("payments", handler);
    let mut config = config(&nats, "mailer");
    config.event_attempts = 3;
    let server = start(App::from_service(service, config).unwrap()).await;

    publish(&js, &event(EventKind::NewDoc, "payments", "flaky", 1)).await;
    publish(&js, &event(EventKind::NewDoc, "payments", "broken", 2)).await;

    // The dead letter of the broken one.
    let dead = js
        .get_stream(rfa_wire::subjects::DEAD_STREAM)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            filter_subject: rfa_wire::subjects::dead_letter("mailer"),
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
    let dead_event: DocEvent = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(dead_event.id, "broken");
    let reason = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Rfa-Dead-Reason"))
        .map(|v| v.as_str().to_string())
        .unwrap();
    assert!(reason.contains("the mail server is down"), "{reason}");
    assert!(reason.contains("3 times"), "{reason}");

    settled(&js, "ev-mailer-payments-new-doc").await;
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.get("flaky"), Some(&3));
    assert_eq!(calls.get("broken"), Some(&3));
    let page = metrics_page(&server).await;
    assert_eq!(
        sample(
            &page,
            r#"rfa_events_failed_total{event="new-doc",table="payments"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &page,
            r#"rfa_events_total{event="new-doc",outcome="error",table="payments"}"#
        ),
        Some(5.0)
    );
    // Only one dead letter: the flaky event made it.
    let more = tokio::time::timeout(Duration::from_millis(300), messages.next()).await;
    assert!(more.is_err(), "a second dead letter");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn events_published_before_the_consumer_exists_and_while_it_is_down_are_delivered() {
    let nats = NatsServer::start().await;
    let js = nats.jetstream().await;
    rfa_io::nats::ensure_stream(&js, streams::store_events())
        .await
        .unwrap();
    // Published before the function ever ran.
    publish(&js, &event(EventKind::NewDoc, "invoices", "i1", 1)).await;
    publish(&js, &event(EventKind::NewDoc, "invoices", "i2", 2)).await;

    let seen: Seen = Arc::default();
    let setup = |seen: &Seen| {
        let mut service = Service::new();
        service.on_new_doc("invoices", recorder(seen, "new"));
        service
    };
    let mut config = config(&nats, "books");
    config.ack_wait = Duration::from_secs(1);
    let server = start(App::from_service(setup(&seen), config.clone()).unwrap()).await;
    eventually(WAIT, "the early events", || async {
        (total(&seen) == 2).then_some(())
    })
    .await;
    settled(&js, "ev-books-invoices-new-doc").await;
    server.stop().await.unwrap();

    // Published while the function is down: delivered when it comes back, the old ones not
    // again. (nats-server 2.9 may still hand it to the stopped worker's last pull request; it
    // then comes back after ack_wait, kept short here.)
    publish(&js, &event(EventKind::NewDoc, "invoices", "i3", 3)).await;
    let server = start(App::from_service(setup(&seen), config).unwrap()).await;
    eventually(WAIT, "the event sent while down", || async {
        (total(&seen) == 3).then_some(())
    })
    .await;
    settled(&js, "ev-books-invoices-new-doc").await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(seen.len(), 3);
    server.stop().await.unwrap();
}

#[test]
fn bad_subscriptions_are_setup_errors() {
    let ok = |_: DocEvent| async { Ok::<(), String>(()) };
    let mut service = Service::new();
    service.on_new_doc("bad.table", ok);
    service.on_updated_doc("t", ok);
    service.on_updated_doc("t", ok);
    let Err(e) = App::from_service(service, Config::default()) else {
        panic!("expected a setup error");
    };
    let text = e.to_string();
    assert!(
        text.contains("bad.table") && text.contains("second updated-doc"),
        "{text}"
    );
}
