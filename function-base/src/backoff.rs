//! Exponential backoff with jitter, and a sleep that a shutdown interrupts.

use std::time::Duration;

use tokio::sync::watch;

/// The wait before retry number `attempt` (0 for the first retry): `base · 2^attempt`, at most
/// `max`, then a random point in its upper half so that many clients do not retry in step.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(30));
    let full = base.saturating_mul(factor).min(max);
    let nanos = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
    if nanos < 2 {
        return full;
    }
    Duration::from_nanos(rand::random_range(nanos / 2..=nanos))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_jitter() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for attempt in 0..40 {
            let d = backoff(base, max, attempt);
            let full = base
                .saturating_mul(2u32.saturating_pow(attempt.min(30)))
                .min(max);
            assert!(d <= full && d >= full / 2, "attempt {attempt}: {d:?}");
        }
        assert_eq!(backoff(Duration::ZERO, max, 3), Duration::ZERO);
    }
}
