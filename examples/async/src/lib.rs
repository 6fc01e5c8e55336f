//! An async function: called through `/functions/method_async` (deployed `"async": true`) or
//! `/async-functions/method_async`, it is queued, answered `202` at once, runs a few seconds of
//! work, and its answer is POSTed to the caller's `X-Callback-Url`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use function_base::prelude::*;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Works for `WORK_MS` milliseconds (default 3000), then answers `Async process N done`, where
/// N counts the calls this replica has run.
pub async fn method_async(_req: Request) -> impl IntoResponse {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let work_ms = std::env::var("WORK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    function_base::tokio::time::sleep(Duration::from_millis(work_ms)).await;
    (StatusCode::OK, format!("Async process {n} done\n"))
}
