//! The JetStream streams rfaas uses, defined once (data only). Whoever needs a stream first
//! creates it with `rfa_io::nats::ensure_stream`, which leaves an existing one as it is.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};

use crate::subjects::{ASYNC_STREAM, DEAD_STREAM, STORE_STREAM};

/// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Async calls: a work queue (a call is removed once a worker acks it), on disk.
pub fn async_calls() -> Config {
    Config {
        name: ASYNC_STREAM.to_string(),
        subjects: vec!["rfa.async.>".to_string()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Store events: kept (limits retention) so every subscriber's durable consumer sees each one.
pub fn store_events() -> Config {
    Config {
        name: STORE_STREAM.to_string(),
        subjects: vec!["rfa.store.>".to_string()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    }
}

/// Given-up async calls and events, kept for inspection.
pub fn dead_letters() -> Config {
    Config {
        name: DEAD_STREAM.to_string(),
        subjects: vec!["rfa.dead.>".to_string()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    }
}
