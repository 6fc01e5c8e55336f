//! The runtime's stop signal (a `watch` turned true on shutdown): waiting for it, and sleeping
//! unless it comes.

use std::time::Duration;

use tokio::sync::watch;

/// Resolves when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sleeps for `d`; returns `true` if a stop came first.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stopped(stop) => true,
    }
}
