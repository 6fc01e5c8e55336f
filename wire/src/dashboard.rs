//! What the web dashboard (`/ui`) reads beyond the other admin routes: the gateway's recent
//! activity (`GET /system/activity`) and a function's recent log lines (`GET /system/logs/<name>`,
//! which the gateway relays from the scaler's `GET /logs/<name>`). All token-protected.

use serde::{Deserialize, Serialize};

/// The path of the activity route.
pub const ACTIVITY_PATH: &str = "/system/activity";

/// Most log lines one request may ask for (`?tail=`), per replica.
pub const MAX_LOG_TAIL: usize = 1000;
/// Log lines per replica when `?tail=` is not given.
pub const DEFAULT_LOG_TAIL: usize = 200;

/// `GET /system/activity`: per-function call counts, errors and latency over the last minutes,
/// sampled from the gateway's own metrics every `intervalSecs`, and the last calls it answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Unix milliseconds when this answer was made.
    pub now_ms: u64,
    /// Seconds each point covers.
    pub interval_secs: u64,
    /// One series per function that has been called since the gateway started, by name.
    pub functions: Vec<FunctionSeries>,
    /// The last calls answered (sync calls and async calls accepted or refused), newest first.
    pub recent: Vec<RecentCall>,
    /// Async calls given up (dead-lettered) and kept, per function; absent when NATS did not
    /// say in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<Vec<DeadCount>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSeries {
    pub name: String,
    /// Oldest first; one per interval.
    pub points: Vec<Point>,
}

/// One interval of one function's calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Unix milliseconds at the end of the interval.
    pub at_ms: u64,
    /// Calls answered in the interval.
    pub calls: u64,
    /// Of those, answered with a 5xx status.
    pub errors: u64,
    /// Median time to the response headers, in milliseconds (from the latency histogram's
    /// buckets, as Prometheus' `histogram_quantile` does); absent without calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// One call the gateway answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecentCall {
    /// Unix milliseconds when it was answered.
    pub at_ms: u64,
    pub function: String,
    /// `sync`, or `async` (accepted with 202 or refused).
    pub kind: String,
    pub status: u16,
    /// Time to the response headers, in milliseconds; absent when the call never reached a
    /// replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis: Option<f64>,
    /// The call id of an async call (`X-Call-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadCount {
    pub function: String,
    pub calls: u64,
}

/// One line of a function's log (`GET /system/logs/<name>`), oldest first across replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// The replica's container (or task) name.
    pub replica: String,
    /// RFC 3339 time the engine stamped on the line.
    pub at: String,
    pub stderr: bool,
    /// The line as written, without its newline (not escaped: render it as text).
    pub text: String,
}
