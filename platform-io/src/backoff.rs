//! The one backoff policy of rfaas (exponential, capped, with jitter) and the retry loop over it.
//!
//! A small module rather than a crate such as `backon`: callers need the wait for a given attempt
//! number as a pure function (a redelivered NATS message knows its delivery count, not a
//! retry iterator), a loop whose sleeps a shutdown interrupts, and the jitter rfaas has always
//! used (a random point in the upper half of the wait, so a wait never exceeds its cap and
//! never drops below half of it); `backon`'s jitter adds up to a whole extra delay.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tracing::warn;

/// Exponential backoff: the wait before retry `n` (0 for the first) is `first · 2^n`, at most
/// `max`, then a random point in its upper half so that many clients do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A policy starting at `first` and capped at `max` (`first` is capped too).
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            attempt: 0,
        }
    }

    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        let full = self.first.saturating_mul(factor).min(self.max);
        let nanos = u64::try_from(full.as_nanos()).unwrap_or(u64::MAX);
        if nanos < 2 {
            return full;
        }
        Duration::from_nanos(rand::random_range(nanos / 2..=nanos))
    }

    /// The wait before the next retry; counts it.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Retries made since the start or the last [`Backoff::reset`].
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Sleeps for the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from the first wait (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Runs `step` until it succeeds, waiting by `backoff` between attempts and logging each failure
/// as `"{what} failed; retrying"`. Returns `None` when `stop` completes during a wait.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    stop: impl Future<Output = ()>,
    mut step: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    tokio::pin!(stop);
    loop {
        match step().await {
            Ok(value) => return Some(value),
            Err(e) => warn!(error = %e, attempt = backoff.attempt(), "{what} failed; retrying"),
        }
        tokio::select! {
            () = backoff.wait() => {}
            () = &mut stop => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_jitter() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        let backoff = Backoff::new(first, max);
        for attempt in 0..40 {
            let d = backoff.delay(attempt);
            let full = first
                .saturating_mul(2u32.saturating_pow(attempt.min(30)))
                .min(max);
            assert!(d <= full && d >= full / 2, "attempt {attempt}: {d:?}");
        }
        assert_eq!(Backoff::new(Duration::ZERO, max).delay(3), Duration::ZERO);
    }

    #[test]
    fn counts_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(150));
        assert!(backoff.next_delay() <= Duration::from_millis(100));
        assert!(backoff.next_delay() >= Duration::from_millis(75));
        assert_eq!(backoff.attempt(), 2);
        backoff.reset();
        assert_eq!(backoff.attempt(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_ok_or_stopped() {
        let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(10));
        let mut tries = 0;
        let got = retry("step", backoff, std::future::pending(), || {
            tries += 1;
            let result = if tries < 3 { Err("no") } else { Ok(tries) };
            async move { result }
        })
        .await;
        assert_eq!(got, Some(3));
        let stopped: Option<()> = retry("step", backoff, async {}, || async { Err("never") }).await;
        assert_eq!(stopped, None);
    }
}
