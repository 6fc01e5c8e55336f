//! What the gateway knows live about each function, beside its route: the load the scaler
//! decides from (`GET /system/load`) and the power watch that held calls wait on.
//!
//! Cheap on the hot path: a call costs a few relaxed atomics here (in flight up and down, the
//! call count, the time of its start and end) and no lock; the [`Live`] is found with the route
//! in the one read of the route table a call already makes.
//!
//! - `inflight` = sync calls being forwarded + calls held while the function wakes. A forwarded
//!   call counts until its response body has been sent (or dropped), not only until its headers.
//! - `calls` = calls accepted: sync calls picked, async calls answered `202`.
//! - `idle_ms` = time since the last call started or ended; `0` while a call is in flight (a long
//!   call is not idleness), and counted from the route's registration (or the gateway's start)
//!   when there has been no call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rfa_wire::route::Power;
use rfa_wire::scale::FunctionLoad;
use tokio::sync::watch;

/// One function's live state.
pub struct Live {
    /// When this state was made (the route registered or loaded); times below count from it.
    created: Instant,
    /// Sync calls being forwarded to a replica now.
    forwarding: AtomicU64,
    /// Sync calls held while the function wakes.
    held: AtomicU64,
    /// Calls accepted (sync and async).
    calls: AtomicU64,
    /// Milliseconds from `created` to the last call's start or end.
    last_ms: AtomicU64,
    /// The route's power; a route put sends the new one (and a removal marks a change).
    power: watch::Sender<Power>,
    /// A wake request to the scaler is in flight (at most one per function).
    pub(crate) waking: AtomicBool,
    /// Why the last wake attempt could not reach the scaler; `None` once it answered.
    pub(crate) scaler_error: Mutex<Option<String>>,
    /// A wake the scaler refused: why; held calls answer 503 with it.
    pub(crate) wake_failure: watch::Sender<Option<Arc<str>>>,
}

impl Live {
    pub fn new(power: Power) -> Live {
        Live {
            created: Instant::now(),
            forwarding: AtomicU64::new(0),
            held: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            power: watch::Sender::new(power),
            waking: AtomicBool::new(false),
            scaler_error: Mutex::new(None),
            wake_failure: watch::Sender::new(None),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Counts a sync call accepted and in flight: forwarded when the function `running`, held
    /// otherwise. The count ends when the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, running: bool) -> InFlight {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if running {
            self.forwarding.fetch_add(1, Ordering::Relaxed);
        } else {
            self.held.fetch_add(1, Ordering::Relaxed);
        }
        self.touch();
        InFlight {
            live: self.clone(),
            held: !running,
        }
    }

    /// Counts an async call accepted (`202`).
    pub fn accepted(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Sync calls being forwarded to a replica now (not counting held ones).
    pub fn forwarding(&self) -> u64 {
        self.forwarding.load(Ordering::Relaxed)
    }

    /// Sync calls in flight: forwarded and held.
    pub fn inflight(&self) -> u64 {
        self.forwarding() + self.held.load(Ordering::Relaxed)
    }

    /// Time since the last call started or ended; zero while calls are in flight.
    pub fn idle(&self) -> Duration {
        if self.inflight() > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }

    /// The load report of function `name`; `queue` from JetStream, when known.
    pub fn report(&self, name: &str, queue: Option<rfa_wire::route::QueueStats>) -> FunctionLoad {
        let queue = queue.unwrap_or_default();
        FunctionLoad {
            name: name.to_string(),
            inflight: self.inflight(),
            pending: queue.pending,
            async_inflight: queue.inflight,
            idle_ms: u64::try_from(self.idle().as_millis()).unwrap_or(u64::MAX),
            calls: self.calls(),
        }
    }

    /// The function's power now.
    pub fn power(&self) -> Power {
        *self.power.borrow()
    }

    /// A receiver that sees every later power change (and the route's removal).
    pub fn watch_power(&self) -> watch::Receiver<Power> {
        self.power.subscribe()
    }

    /// The route was put with `power`; held calls waiting for `running` go on.
    pub(crate) fn set_power(&self, power: Power) {
        self.power.send_if_modified(|current| {
            let changed = *current != power;
            *current = power;
            changed
        });
        if power.is_running() {
            self.wake_failure.send_replace(None);
        }
    }

    /// The route was removed: held calls look again (and find no function).
    pub(crate) fn removed(&self) {
        self.power.send_modify(|_| {});
    }

    /// Waits until no call is being forwarded, for at most `bound`; whether none is left.
    pub async fn drained(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while self.forwarding() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

/// One sync call counted in flight until dropped.
pub struct InFlight {
    live: Arc<Live>,
    held: bool,
}

impl InFlight {
    /// The held call is forwarded now.
    pub fn forwarded(&mut self) {
        if self.held {
            self.live.forwarding.fetch_add(1, Ordering::Relaxed);
            self.live.held.fetch_sub(1, Ordering::Relaxed);
            self.held = false;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let counter = if self.held {
            &self.live.held
        } else {
            &self.live.forwarding
        };
        counter.fetch_sub(1, Ordering::Relaxed);
        self.live.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_in_flight_held_and_accepted() {
        let live = Arc::new(Live::new(Power::Paused));
        let mut held = live.begin(false);
        let forwarded = live.begin(true);
        live.accepted();
        assert_eq!(live.inflight(), 2);
        assert_eq!(live.forwarding(), 1);
        assert_eq!(live.calls(), 3);
        assert_eq!(live.idle(), Duration::ZERO);
        held.forwarded();
        assert_eq!(live.forwarding(), 2);
        drop(held);
        drop(forwarded);
        assert_eq!(live.inflight(), 0);
        std::thread::sleep(Duration::from_millis(30));
        let idle = live.idle();
        assert!(idle >= Duration::from_millis(30), "{idle:?}");
        let report = live.report("f", None);
        assert_eq!(report.calls, 3);
        assert_eq!(report.inflight, 0);
        assert!(report.idle_ms >= 30, "{report:?}");
    }

    #[tokio::test]
    async fn power_changes_reach_the_watchers() {
        let live = Live::new(Power::Paused);
        let mut rx = live.watch_power();
        live.set_power(Power::Paused);
        assert!(!rx.has_changed().unwrap(), "the same power is no change");
        live.set_power(Power::Running);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), Power::Running);
        live.removed();
        assert!(rx.has_changed().unwrap());
    }
}
