//! Gateway metrics under the OpenFaaS gateway names, so existing dashboards work, plus the
//! `rfa_async_*` family.
//!
//! Two OpenFaaS names break Prometheus' naming rules: `gateway_function_invocation_started`
//! counts but lacks `_total`, and `gateway_service_count` is a gauge ending in `_count` (a
//! suffix reserved for histograms and summaries). They keep their names, so dashboards work,
//! and are exposed as `untyped`, which `promtool check metrics` accepts; PromQL treats them the
//! same (`rate()` works on the first).
//!
//! `rfa_async_queued{function_name}` is read at scrape time: the pending count of each
//! function's JetStream consumer (`fn-<name>`), i.e. calls stored and not yet delivered to a
//! replica. It is absent for a function whose consumer does not exist yet (no replica has
//! connected to NATS) and for every function while NATS is unreachable.
//!
//! Scaling (issue #16): `gateway_service_count` counts the replicas that take calls (0 while a
//! function is paused or stopped), `rfa_functions_paused` the functions paused now, and
//! `rfa_wake_seconds{function_name,kind}` how long a held call waited for its function to wake
//! (`kind` `resume` from paused, `cold` from stopped). When a scaler is configured, its own
//! `/metrics` (`rfa_scale_events_total` …) is appended, so one scrape covers both; families the
//! gateway already wrote are dropped from it, and it is left out (logged) when the scaler does not
//! answer within [`SCALER_METRICS_TIMEOUT`].

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use rfa_wire::dashboard::RecentCall;
use rfa_wire::route::{FunctionRoute, Power};

use crate::SharedState;

/// Longest a scrape waits for the queue counts from NATS; past it they are left out.
const QUEUE_STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a scrape waits for the scaler's own metrics; past it they are left out.
pub const SCALER_METRICS_TIMEOUT: Duration = Duration::from_millis(300);

const STARTED: &str = "gateway_function_invocation_started";
const STARTED_HELP: &str = "Function calls started (a counter; untyped to keep the OpenFaaS name)";
const SERVICE_COUNT: &str = "gateway_service_count";
const SERVICE_COUNT_HELP: &str = "Replicas that take calls per function, 0 while it is paused or \
     stopped (a gauge; untyped to keep the OpenFaaS name)";
const QUEUED: &str = "rfa_async_queued";
const QUEUED_HELP: &str =
    "Async calls stored on JetStream and not yet delivered to a replica, read at scrape time";

pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    seconds: HistogramVec,
    /// Rendered by hand as untyped (see the module docs): not in `registry`.
    started: IntCounterVec,
    /// Rendered by hand as untyped (see the module docs): not in `registry`.
    service_count: IntGaugeVec,
    async_accepted: IntCounterVec,
    async_rejected: IntCounterVec,
    wake_seconds: HistogramVec,
    paused: IntGauge,
    /// Client connections open now (`rfa_gateway_connections`).
    pub connections: IntGauge,
    /// The cap on open connections (`rfa_gateway_connections_max`).
    pub connections_max: IntGauge,
    /// Connections refused with `503` because the cap was reached.
    pub connections_rejected: IntCounter,
    /// The last calls answered, newest at the back (for the dashboard).
    recent: Mutex<VecDeque<RecentCall>>,
}

/// How many answered calls [`Metrics::recent`] keeps.
pub const RECENT_CALLS: usize = 100;

/// The totals of one function's calls at one moment, summed over status codes: what
/// [`crate::activity`] diffs into a series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionTotals {
    pub calls: u64,
    pub errors: u64,
    /// Cumulative counts per bucket of `gateway_functions_seconds`, in [`Snapshot::bounds`]
    /// order (the `+Inf` bucket is `calls_timed`).
    pub buckets: Vec<u64>,
    /// Calls with a latency observed (all but those never forwarded for want of a route).
    pub calls_timed: u64,
}

/// Every function's totals at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Upper bounds of the latency buckets, in seconds.
    pub bounds: Vec<f64>,
    pub functions: std::collections::HashMap<String, FunctionTotals>,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new(
                "gateway_function_invocation_total",
                "Function calls answered, by function and HTTP status code",
            ),
            &["function_name", "code"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "gateway_functions_seconds",
                "Seconds until the function's response headers, by function and HTTP status code",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["function_name", "code"],
        )?;
        let started = IntCounterVec::new(Opts::new(STARTED, STARTED_HELP), &["function_name"])?;
        let service_count = IntGaugeVec::new(
            Opts::new(SERVICE_COUNT, SERVICE_COUNT_HELP),
            &["function_name"],
        )?;
        let async_accepted = IntCounterVec::new(
            Opts::new(
                "rfa_async_accepted_total",
                "Async calls stored on JetStream and answered 202",
            ),
            &["function_name"],
        )?;
        let async_rejected = IntCounterVec::new(
            Opts::new(
                "rfa_async_rejected_total",
                "Async calls refused, by HTTP status code",
            ),
            &["function_name", "code"],
        )?;
        let wake_seconds = HistogramVec::new(
            HistogramOpts::new(
                "rfa_wake_seconds",
                "Seconds a call was held until its function ran again, by kind: resume (it was \
                 paused) or cold (it was stopped)",
            )
            .buckets(vec![
                0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["function_name", "kind"],
        )?;
        let paused = IntGauge::new(
            "rfa_functions_paused",
            "Functions whose replicas are paused",
        )?;
        let connections = IntGauge::new(
            "rfa_gateway_connections",
            "Client connections the gateway holds open now",
        )?;
        let connections_max = IntGauge::new(
            "rfa_gateway_connections_max",
            "Most client connections the gateway holds open at once (--max-connections)",
        )?;
        let connections_rejected = IntCounter::new(
            "rfa_gateway_connections_rejected_total",
            "Client connections refused with 503 because --max-connections were open",
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(connections_max.clone()))?;
        registry.register(Box::new(connections_rejected.clone()))?;
        registry.register(Box::new(invocations.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        registry.register(Box::new(async_accepted.clone()))?;
        registry.register(Box::new(async_rejected.clone()))?;
        registry.register(Box::new(wake_seconds.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        Ok(Metrics {
            wake_seconds,
            paused,
            registry,
            invocations,
            seconds,
            started,
            service_count,
            async_accepted,
            async_rejected,
            connections,
            connections_max,
            connections_rejected,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_CALLS)),
        })
    }

    fn remember(&self, call: RecentCall) {
        // A poisoned lock only means another request panicked mid-push: the ring is still whole.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_CALLS {
            recent.pop_front();
        }
        recent.push_back(call);
    }

    /// The last calls answered, newest first.
    pub fn recent(&self) -> Vec<RecentCall> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }

    /// Every function's call totals now, from `gateway_function_invocation_total` and
    /// `gateway_functions_seconds`.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let function_of = |m: &prometheus::proto::Metric| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "function_name")
                .map(|l| l.value().to_string())
        };
        let code_of = |m: &prometheus::proto::Metric| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "code")
                .and_then(|l| l.value().parse::<u16>().ok())
                .unwrap_or(0)
        };
        for family in self.invocations.collect() {
            for m in family.get_metric() {
                let Some(name) = function_of(m) else { continue };
                let totals = snapshot.functions.entry(name).or_default();
                let n = m.get_counter().get_value() as u64;
                totals.calls += n;
                if code_of(m) >= 500 {
                    totals.errors += n;
                }
            }
        }
        for family in self.seconds.collect() {
            for m in family.get_metric() {
                let Some(name) = function_of(m) else { continue };
                let h = m.get_histogram();
                if snapshot.bounds.is_empty() {
                    snapshot.bounds = h.get_bucket().iter().map(|b| b.upper_bound()).collect();
                }
                let totals = snapshot.functions.entry(name).or_default();
                totals.buckets.resize(snapshot.bounds.len(), 0);
                for (sum, b) in totals.buckets.iter_mut().zip(h.get_bucket()) {
                    *sum += b.cumulative_count();
                }
                totals.calls_timed += h.get_sample_count();
            }
        }
        snapshot
    }

    pub fn started(&self, function: &str) {
        self.started.with_label_values(&[function]).inc();
    }

    pub fn invocation(&self, function: &str, code: u16, elapsed: Option<Duration>) {
        self.remember(RecentCall {
            at_ms: rfa_wire::time::unix_millis(),
            function: function.to_string(),
            kind: "sync".to_string(),
            status: code,
            millis: elapsed.map(|e| e.as_secs_f64() * 1000.0),
            call_id: None,
        });
        let code = code.to_string();
        self.invocations
            .with_label_values(&[function, code.as_str()])
            .inc();
        if let Some(elapsed) = elapsed {
            self.seconds
                .with_label_values(&[function, code.as_str()])
                .observe(elapsed.as_secs_f64());
        }
    }

    pub fn async_accepted(&self, function: &str, call_id: &str) {
        self.remember(RecentCall {
            at_ms: rfa_wire::time::unix_millis(),
            function: function.to_string(),
            kind: "async".to_string(),
            status: 202,
            millis: None,
            call_id: Some(call_id.to_string()),
        });
        self.async_accepted.with_label_values(&[function]).inc();
    }

    pub fn async_rejected(&self, function: &str, code: u16) {
        self.remember(RecentCall {
            at_ms: rfa_wire::time::unix_millis(),
            function: function.to_string(),
            kind: "async".to_string(),
            status: code,
            millis: None,
            call_id: None,
        });
        self.async_rejected
            .with_label_values(&[function, code.to_string().as_str()])
            .inc();
    }

    /// A held call went on after `waited`; `kind` is `resume` or `cold`.
    pub fn woken(&self, function: &str, kind: &str, waited: Duration) {
        self.wake_seconds
            .with_label_values(&[function, kind])
            .observe(waited.as_secs_f64());
    }

    /// The replicas that take calls per function, and the functions paused.
    pub fn set_service_counts(&self, routes: &[FunctionRoute]) {
        self.service_count.reset();
        let mut paused = 0;
        for route in routes {
            let serving = if route.power.is_running() {
                route.upstreams.len()
            } else {
                0
            };
            self.service_count
                .with_label_values(&[route.name.as_str()])
                .set(serving as i64);
            if route.power == Power::Paused {
                paused += 1;
            }
        }
        self.paused.set(paused);
    }

    /// Every family in the Prometheus text format; `queued` holds `(function, calls waiting)`,
    /// `scaler` the scaler's own page (its families the gateway has too are dropped).
    pub fn render(&self, queued: &[(String, u64)], scaler: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        let mut text = String::new();
        write_untyped(&mut text, STARTED_HELP, &self.started.collect(), |m| {
            m.get_counter().get_value()
        });
        write_untyped(
            &mut text,
            SERVICE_COUNT_HELP,
            &self.service_count.collect(),
            |m| m.get_gauge().get_value(),
        );
        if !queued.is_empty() {
            write_header(&mut text, QUEUED, QUEUED_HELP, "gauge");
            for (function, calls) in queued {
                let _ = writeln!(
                    text,
                    "{QUEUED}{{function_name=\"{}\"}} {calls}",
                    escape_label(function)
                );
            }
        }
        out.extend_from_slice(text.as_bytes());
        if let Some(page) = scaler {
            let ours = family_names(&String::from_utf8_lossy(&out));
            out.extend_from_slice(foreign_families(page, &ours).as_bytes());
        }
        out
    }
}

/// The family names a text-format page declares (`# TYPE` and `# HELP` lines).
fn family_names(page: &str) -> std::collections::HashSet<String> {
    page.lines()
        .filter_map(|line| {
            let rest = line
                .strip_prefix("# TYPE ")
                .or_else(|| line.strip_prefix("# HELP "))?;
            rest.split(' ').next().map(str::to_string)
        })
        .collect()
}

/// The lines of `page` (another process's metrics) whose family is not in `ours`, ending with a
/// newline; an OpenMetrics `# EOF` is dropped. A sample belongs to the family it names, or, for
/// `_bucket`, `_sum`, `_count`, `_total` and `_created` series, to the one without the suffix.
fn foreign_families(page: &str, ours: &std::collections::HashSet<String>) -> String {
    let clash = |name: &str| {
        ours.contains(name)
            || ["_bucket", "_sum", "_count", "_total", "_created"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(|f| ours.contains(f)))
    };
    let mut kept = String::new();
    for line in page.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed == "# EOF" {
            continue;
        }
        let name = match trimmed.strip_prefix('#') {
            Some(comment) => {
                let mut words = comment.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("TYPE" | "HELP" | "UNIT"), Some(name)) => name,
                    _ => continue, // a plain comment
                }
            }
            None => trimmed.split(['{', ' ']).next().unwrap_or_default(),
        };
        if !clash(name) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// `# HELP` and `# TYPE` lines of one family.
fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The families as `untyped` in the text format (the text encoder of the `prometheus` crate
/// cannot write that type), each sample's value taken by `value`.
fn write_untyped(
    out: &mut String,
    help: &str,
    families: &[MetricFamily],
    value: impl Fn(&prometheus::proto::Metric) -> f64,
) {
    for family in families {
        if family.get_metric().is_empty() {
            continue;
        }
        write_header(out, family.name(), help, "untyped");
        for metric in family.get_metric() {
            let labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), escape_label(l.value())))
                .collect();
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                family.name(),
                labels.join(","),
                value(metric)
            );
        }
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The pending count of every registered function's async-call consumer, asked of NATS at
/// once; functions without a consumer (or all of them, if NATS does not answer in time) are
/// left out.
async fn queued(state: &SharedState) -> Vec<(String, u64)> {
    let names: Vec<String> = state.routes.all().into_iter().map(|r| r.name).collect();
    let stats = futures_util::future::join_all(names.iter().map(|n| state.nats.queue_stats(n)));
    match tokio::time::timeout(QUEUE_STATS_TIMEOUT, stats).await {
        Ok(stats) => names
            .into_iter()
            .zip(stats)
            .filter_map(|(name, stats)| stats.map(|s| (name, s.pending)))
            .collect(),
        Err(_) => {
            tracing::warn!("NATS did not give the queue counts in time; rfa_async_queued left out");
            Vec::new()
        }
    }
}

pub async fn handler(State(state): State<SharedState>) -> impl IntoResponse {
    let (queued, scaler) = tokio::join!(
        queued(&state),
        crate::scaler::metrics(&state, SCALER_METRICS_TIMEOUT)
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&queued, scaler.as_deref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, replicas: usize) -> FunctionRoute {
        FunctionRoute {
            name: name.to_string(),
            kind: Default::default(),
            upstreams: vec!["x:6000".to_string(); replicas],
            image: String::new(),
            deployed_at: String::new(),
            queue: None,
            run: None,
            power: Default::default(),
            discover: None,
            previous: None,
        }
    }

    #[test]
    fn the_openfaas_names_are_untyped_and_the_rest_typed() {
        let m = Metrics::new().unwrap();
        m.started("method2");
        m.started("method2");
        m.invocation("method2", 202, Some(Duration::from_millis(3)));
        m.set_service_counts(&[route("method2", 2)]);
        m.async_accepted("method2", "c1");
        let text = String::from_utf8(m.render(&[("method2".into(), 4)], None)).unwrap();
        for line in [
            "# TYPE gateway_function_invocation_started untyped",
            "gateway_function_invocation_started{function_name=\"method2\"} 2",
            "# TYPE gateway_service_count untyped",
            "gateway_service_count{function_name=\"method2\"} 2",
            "# TYPE gateway_function_invocation_total counter",
            "gateway_function_invocation_total{code=\"202\",function_name=\"method2\"} 1",
            "# TYPE gateway_functions_seconds histogram",
            "# TYPE rfa_async_accepted_total counter",
            "# TYPE rfa_async_queued gauge",
            "rfa_async_queued{function_name=\"method2\"} 4",
            "# TYPE rfa_gateway_connections gauge",
            "# TYPE rfa_gateway_connections_max gauge",
            "# TYPE rfa_gateway_connections_rejected_total counter",
            "rfa_gateway_connections_rejected_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no help for {name}"
            );
        }
    }

    #[test]
    fn empty_families_are_left_out_and_label_values_escaped() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.render(&[], None)).unwrap();
        assert!(!text.contains("gateway_function_invocation_started"));
        assert!(!text.contains("rfa_async_queued"));
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
