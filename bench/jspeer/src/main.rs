//! jspeer <nats-url> <stream> <subject> <in-flight> <seconds> <body-bytes>
//!
//! Creates <stream> (work queue, file storage, 120 s duplicate window: the gateway's RFA_ASYNC
//! settings) if missing, then for <seconds> keeps <in-flight> publishes outstanding, each waiting
//! for its PubAck, from one client connection. Every message carries a unique Nats-Msg-Id (as the
//! gateway's do). Prints: `acked=<n> errors=<n> seconds=<s> rate=<n/s>`.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        eprintln!("usage: jspeer <nats-url> <stream> <subject> <in-flight> <seconds> <body-bytes>");
        std::process::exit(2);
    }
    let (url, name, subject) = (a[1].clone(), a[2].clone(), a[3].clone());
    let inflight: usize = a[4].parse().expect("in-flight");
    let secs: f64 = a[5].parse().expect("seconds");
    let size: usize = a[6].parse().expect("body-bytes");

    let client = async_nats::connect(&url).await.expect("connect");
    let js = jetstream::new(client);
    js.get_or_create_stream(stream::Config {
        name,
        subjects: vec![format!("{subject}.>"), subject.clone()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("stream");

    let body = bytes::Bytes::from(vec![b'x'; size]);
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let pid = std::process::id();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let (js, body, acked, errors, seq, subject) =
            (js.clone(), body.clone(), acked.clone(), errors.clone(), seq.clone(), subject.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", format!("peer-{pid}-{n}").as_str());
                let r = match js.publish_with_headers(subject.clone(), h, body.clone()).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match r {
                    Ok(()) => acked.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let el = start.elapsed().as_secs_f64();
    let n = acked.load(Ordering::Relaxed);
    println!(
        "acked={n} errors={} seconds={el:.3} rate={:.0}",
        errors.load(Ordering::Relaxed),
        n as f64 / el
    );
}
