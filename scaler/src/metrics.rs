//! The scaler's Prometheus metrics (`GET /metrics` on the private network; the gateway appends
//! them to its own `/metrics`, so users scrape one endpoint).

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// Replica count changes, pauses, stops and wakes, by function, direction and reason.
pub const SCALE_EVENTS: &str = "rfa_scale_events_total";
/// Engine or gateway operations that failed, by operation.
pub const FAILURES: &str = "rfa_scaler_failures_total";

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    failures: IntCounterVec,
}

/// Which way an event moved a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Pause,
    Stop,
    Wake,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Pause => "pause",
            Direction::Stop => "stop",
            Direction::Wake => "wake",
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let events = IntCounterVec::new(
            Opts::new(
                SCALE_EVENTS,
                "Scaling actions taken by the scaler, by function, direction (up, down, pause, stop, wake) and reason (load, cooldown, idle, demand, manual).",
            ),
            &["function_name", "direction", "reason"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                FAILURES,
                "Scaling actions that failed, by function and operation.",
            ),
            &["function_name", "operation"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        Ok(Metrics {
            registry,
            events,
            failures,
        })
    }

    pub fn event(&self, function: &str, direction: Direction, reason: crate::policy::Reason) {
        self.events
            .with_label_values(&[function, direction.as_str(), reason.as_str()])
            .inc();
    }

    pub fn failure(&self, function: &str, operation: &str) {
        self.failures
            .with_label_values(&[function, operation])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
