//! `GET /system/activity` (token): what the dashboard charts. A task samples the gateway's own
//! metrics ([`crate::metrics::Metrics::snapshot`]) every [`INTERVAL`] and keeps the last
//! [`POINTS`] + 1 samples; a function's series is the difference between neighbours: calls,
//! 5xx answers, and p50/p99 latency from the histogram's buckets the way Prometheus'
//! `histogram_quantile` reads them (linear within a bucket). No Prometheus server is needed, and
//! the request path pays nothing for it beyond the counters it already keeps. The answer also
//! holds the last calls answered and the dead-lettered count per function.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use rfa_wire::dashboard::{Activity, FunctionSeries, Point};

use crate::metrics::{FunctionTotals, Snapshot};
use crate::{ProxyError, SharedState, auth};

/// Time each point covers.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Points kept per function: five minutes.
pub const POINTS: usize = 60;
/// Longest the answer waits for NATS's dead-letter counts; past it they are left out.
const DEAD_COUNTS_TIMEOUT: Duration = Duration::from_secs(1);

/// The samples taken so far, oldest first.
#[derive(Default)]
pub struct Samples {
    taken: Mutex<VecDeque<(u64, Snapshot)>>,
}

impl Samples {
    pub fn push(&self, at_ms: u64, snapshot: Snapshot) {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if taken.len() == POINTS + 1 {
            taken.pop_front();
        }
        taken.push_back((at_ms, snapshot));
    }

    /// One series per function seen in the newest sample, by name.
    pub fn series(&self) -> Vec<FunctionSeries> {
        let taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, newest)) = taken.back() else {
            return Vec::new();
        };
        let mut names: Vec<&String> = newest.functions.keys().collect();
        names.sort();
        let empty = FunctionTotals::default();
        names
            .into_iter()
            .map(|name| FunctionSeries {
                name: name.clone(),
                points: taken
                    .iter()
                    .zip(taken.iter().skip(1))
                    .map(|((_, before), (at_ms, after))| {
                        let b = before.functions.get(name).unwrap_or(&empty);
                        let a = after.functions.get(name).unwrap_or(&empty);
                        point(*at_ms, &after.bounds, b, a)
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The interval between `before` and `after` (totals of one function).
fn point(at_ms: u64, bounds: &[f64], before: &FunctionTotals, after: &FunctionTotals) -> Point {
    let buckets: Vec<u64> = (0..bounds.len())
        .map(|i| {
            let a = after.buckets.get(i).copied().unwrap_or(0);
            let b = before.buckets.get(i).copied().unwrap_or(0);
            a.saturating_sub(b)
        })
        .collect();
    let timed = after.calls_timed.saturating_sub(before.calls_timed);
    let ms = |q| quantile(q, bounds, &buckets, timed).map(|s| (s * 1000.0 * 100.0).round() / 100.0);
    Point {
        at_ms,
        calls: after.calls.saturating_sub(before.calls),
        errors: after.errors.saturating_sub(before.errors),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    }
}

/// The `q` quantile, in seconds, of `total` observations whose cumulative counts per upper
/// bound are `cumulative` (the rest are above the last bound); `None` without observations.
/// Linear within the bucket it falls in, from the bucket below's bound (0 for the first); in the
/// `+Inf` bucket, the last finite bound (as `histogram_quantile` does).
pub fn quantile(q: f64, bounds: &[f64], cumulative: &[u64], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, (&bound, &count)) in bounds.iter().zip(cumulative).enumerate() {
        if count as f64 >= rank && count > below {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = (rank - below as f64) / (count - below) as f64;
            return Some(lower + (bound - lower) * within.clamp(0.0, 1.0));
        }
        below = count;
    }
    bounds.last().copied()
}

/// Samples the metrics every [`INTERVAL`] for as long as the gateway runs.
pub fn spawn(state: SharedState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            state
                .samples
                .push(rfa_wire::time::unix_millis(), state.metrics.snapshot());
        }
    });
}

/// `GET /system/activity`.
pub async fn handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<Activity>, ProxyError> {
    auth::check(&state.token, &headers)?;
    let dead = tokio::time::timeout(DEAD_COUNTS_TIMEOUT, state.nats.dead_counts())
        .await
        .ok()
        .flatten();
    Ok(Json(Activity {
        now_ms: rfa_wire::time::unix_millis(),
        interval_secs: INTERVAL.as_secs(),
        functions: state.samples.series(),
        recent: state.metrics.recent(),
        dead,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const BOUNDS: [f64; 4] = [0.001, 0.005, 0.01, 0.1];

    fn totals(calls: u64, errors: u64, cumulative: [u64; 4]) -> FunctionTotals {
        FunctionTotals {
            calls,
            errors,
            buckets: cumulative.to_vec(),
            calls_timed: calls,
        }
    }

    fn snapshot(f: &[(&str, FunctionTotals)]) -> Snapshot {
        Snapshot {
            bounds: BOUNDS.to_vec(),
            functions: f
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn quantile_interpolates_within_the_bucket() {
        // 10 calls: 4 under 1 ms, 6 between 1 and 5 ms.
        let q = |q| quantile(q, &BOUNDS, &[4, 10, 10, 10], 10).unwrap();
        // Rank 5 is the first of 6 in (1, 5] ms: 1 + 4 * 1/6.
        assert!((q(0.5) - (0.001 + 0.004 / 6.0)).abs() < 1e-9, "{}", q(0.5));
        assert!((q(0.99) - (0.001 + 0.004 * 5.9 / 6.0)).abs() < 1e-9);
        assert!((q(0.2) - 0.0005).abs() < 1e-9);
    }

    #[test]
    fn quantile_above_every_bound_reads_the_last_bound_and_none_without_calls() {
        assert_eq!(quantile(0.99, &BOUNDS, &[0, 0, 0, 1], 10), Some(0.1));
        assert_eq!(quantile(0.5, &BOUNDS, &[0, 0, 0, 0], 0), None);
    }

    #[test]
    fn series_are_differences_between_samples() {
        let samples = Samples::default();
        samples.push(1_000, snapshot(&[]));
        samples.push(6_000, snapshot(&[("a", totals(10, 1, [0, 10, 10, 10]))]));
        samples.push(
            11_000,
            snapshot(&[
                ("a", totals(12, 3, [0, 10, 12, 12])),
                ("b", totals(5, 0, [5, 5, 5, 5])),
            ]),
        );
        let series = samples.series();
        assert_eq!(
            series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let a = &series[0].points;
        assert_eq!((a[0].at_ms, a[0].calls, a[0].errors), (6_000, 10, 1));
        assert_eq!((a[1].at_ms, a[1].calls, a[1].errors), (11_000, 2, 2));
        // The second interval's 2 calls were both in (5, 10] ms.
        let p50 = a[1].p50_ms.unwrap();
        assert!((5.0..=10.0).contains(&p50), "{p50}");
        let b = &series[1].points;
        assert_eq!((b[0].calls, b[0].p50_ms), (0, None));
        assert_eq!(b[1].calls, 5);
    }

    #[test]
    fn only_the_last_points_are_kept() {
        let samples = Samples::default();
        for i in 0..(POINTS as u64 + 10) {
            samples.push(i, snapshot(&[("a", totals(i, 0, [i, i, i, i]))]));
        }
        let points = &samples.series()[0].points;
        assert_eq!(points.len(), POINTS);
        assert!(points.iter().all(|p| p.calls == 1));
    }
}
