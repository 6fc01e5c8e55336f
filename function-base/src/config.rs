//! Runtime settings, read from the environment the platform gives every function container.

use std::time::Duration;

use rfa_wire::{FUNCTION_PORT, env, route::FunctionKind};

/// How long in-flight work may take to finish after SIGTERM before the process exits anyway.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(25);

/// `RFAAS_ASYNC_ACK_WAIT_MS`: the async consumer's `ack_wait`, in milliseconds (default 30 s).
pub const ASYNC_ACK_WAIT_MS: &str = "RFAAS_ASYNC_ACK_WAIT_MS";
/// `RFAAS_CALLBACK_ATTEMPTS`: how many times a callback is tried (default 8).
pub const CALLBACK_ATTEMPTS: &str = "RFAAS_CALLBACK_ATTEMPTS";
/// `RFAAS_CALLBACK_BACKOFF_MS`: the first wait between callback attempts (default 100 ms);
/// it doubles each time, up to 10 s, with jitter.
pub const CALLBACK_BACKOFF_MS: &str = "RFAAS_CALLBACK_BACKOFF_MS";
/// `RFAAS_CALLBACK_TIMEOUT_MS`: how long one callback attempt may take (default 30 s).
pub const CALLBACK_TIMEOUT_MS: &str = "RFAAS_CALLBACK_TIMEOUT_MS";
/// `RFAAS_EVENT_ATTEMPTS`: how many times a store-event handler is tried (default 5).
pub const EVENT_ATTEMPTS: &str = "RFAAS_EVENT_ATTEMPTS";
/// `RFAAS_EVENT_BACKOFF_MS`: the first wait before a failed event is retried (default 1 s);
/// it doubles each time, up to 60 s, with jitter.
pub const EVENT_BACKOFF_MS: &str = "RFAAS_EVENT_BACKOFF_MS";

/// A setting in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// The runtime's settings. [`Config::from_env`] reads them; tests build one from
/// [`Config::default`] and change the fields they need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `RFAAS_PORT`, default 6000.
    pub port: u16,
    /// `RFAAS_FUNCTION_NAME`; needed for async calls and store events.
    pub function_name: Option<String>,
    /// `RFAAS_FUNCTION_KIND` (`http`, `async`, `main`), default `http`.
    pub kind: FunctionKind,
    /// `RFAAS_NATS_URL`; when set, the runtime also runs async calls and store events.
    pub nats_url: Option<String>,
    /// `RFAAS_STORE_URL`, the document store's base URL.
    pub store_url: Option<String>,
    /// Longest wait for in-flight requests after a shutdown signal.
    pub drain_timeout: Duration,
    /// `RFAAS_MAX_INFLIGHT` (default 8): async calls this replica runs at once, and the
    /// `max_ack_pending` of the function's shared consumer.
    pub max_inflight: usize,
    /// `RFAAS_ASYNC_ACK_WAIT_MS` (default 30 s): redelivery time of an unacknowledged call;
    /// a running call is kept alive with a progress ack every third of it.
    pub ack_wait: Duration,
    /// `RFAAS_CALLBACK_ATTEMPTS` (default 8).
    pub callback_attempts: u32,
    /// `RFAAS_CALLBACK_BACKOFF_MS` (default 100 ms): first wait between callback attempts.
    pub callback_backoff: Duration,
    /// Longest wait between callback attempts (10 s).
    pub callback_backoff_max: Duration,
    /// `RFAAS_CALLBACK_TIMEOUT_MS` (default 30 s): one callback attempt.
    pub callback_timeout: Duration,
    /// `RFAAS_EVENT_ATTEMPTS` (default 5): tries of a store-event handler before it is given up.
    pub event_attempts: u32,
    /// `RFAAS_EVENT_BACKOFF_MS` (default 1 s): first wait before a failed event is retried.
    pub event_backoff: Duration,
    /// Longest wait before a failed event is retried (60 s).
    pub event_backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: FUNCTION_PORT,
            function_name: None,
            kind: FunctionKind::Http,
            nats_url: None,
            store_url: None,
            drain_timeout: DEFAULT_DRAIN,
            max_inflight: 8,
            ack_wait: Duration::from_secs(30),
            callback_attempts: 8,
            callback_backoff: Duration::from_millis(100),
            callback_backoff_max: Duration::from_secs(10),
            callback_timeout: Duration::from_secs(30),
            event_attempts: 5,
            event_backoff: Duration::from_secs(1),
            event_backoff_max: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Reads the settings from the process environment; unset or empty variables keep their
    /// defaults, malformed ones are an error.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut config = Config::default();
        if let Some(port) = get(env::PORT) {
            config.port = parse(env::PORT, &port)?;
        }
        config.function_name = get(env::FUNCTION_NAME);
        if let Some(kind) = get(env::FUNCTION_KIND) {
            config.kind = match kind.as_str() {
                "http" => FunctionKind::Http,
                "async" => FunctionKind::Async,
                "main" => FunctionKind::Main,
                _ => {
                    return Err(ConfigError {
                        name: env::FUNCTION_KIND,
                        value: kind,
                        reason: "expected http, async or main".to_string(),
                    });
                }
            };
        }
        config.nats_url = get(env::NATS_URL);
        config.store_url = get(env::STORE_URL);
        if let Some(v) = get(env::MAX_INFLIGHT) {
            config.max_inflight = positive(env::MAX_INFLIGHT, &v)?;
        }
        if let Some(v) = get(ASYNC_ACK_WAIT_MS) {
            config.ack_wait = Duration::from_millis(positive(ASYNC_ACK_WAIT_MS, &v)?);
        }
        if let Some(v) = get(CALLBACK_ATTEMPTS) {
            config.callback_attempts = positive(CALLBACK_ATTEMPTS, &v)?;
        }
        if let Some(v) = get(CALLBACK_BACKOFF_MS) {
            config.callback_backoff = Duration::from_millis(parse(CALLBACK_BACKOFF_MS, &v)?);
        }
        if let Some(v) = get(CALLBACK_TIMEOUT_MS) {
            config.callback_timeout = Duration::from_millis(positive(CALLBACK_TIMEOUT_MS, &v)?);
        }
        if let Some(v) = get(EVENT_ATTEMPTS) {
            config.event_attempts = positive(EVENT_ATTEMPTS, &v)?;
        }
        if let Some(v) = get(EVENT_BACKOFF_MS) {
            config.event_backoff = Duration::from_millis(parse(EVENT_BACKOFF_MS, &v)?);
        }
        Ok(config)
    }
}

/// Parses one variable's value, naming the variable in the error.
pub(crate) fn parse<T>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError {
        name,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

/// Parses a number that must be at least 1.
fn positive<T>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let n: T = parse(name, value)?;
    if n < T::from(1) {
        return Err(ConfigError {
            name,
            value: value.to_string(),
            reason: "must be at least 1".to_string(),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() -> Result<(), ConfigError> {
        let c = config(&[])?;
        assert_eq!(c.port, 6000);
        assert_eq!(c.kind, FunctionKind::Http);
        assert!(c.function_name.is_none() && c.nats_url.is_none() && c.store_url.is_none());
        Ok(())
    }

    #[test]
    fn reads_values() -> Result<(), ConfigError> {
        let c = config(&[
            (env::PORT, "7000"),
            (env::FUNCTION_NAME, "method2"),
            (env::FUNCTION_KIND, "main"),
            (env::NATS_URL, "nats://rfa-nats:4222"),
            (env::STORE_URL, ""),
            (env::MAX_INFLIGHT, "3"),
            (ASYNC_ACK_WAIT_MS, "1500"),
            (CALLBACK_ATTEMPTS, "2"),
            (CALLBACK_BACKOFF_MS, "0"),
            (EVENT_ATTEMPTS, "2"),
            (EVENT_BACKOFF_MS, "50"),
        ])?;
        assert_eq!(c.event_attempts, 2);
        assert_eq!(c.event_backoff, Duration::from_millis(50));
        assert_eq!(c.max_inflight, 3);
        assert_eq!(c.ack_wait, Duration::from_millis(1500));
        assert_eq!(c.callback_attempts, 2);
        assert_eq!(c.callback_backoff, Duration::ZERO);
        assert_eq!(c.port, 7000);
        assert_eq!(c.function_name.as_deref(), Some("method2"));
        assert_eq!(c.kind, FunctionKind::Main);
        assert_eq!(c.nats_url.as_deref(), Some("nats://rfa-nats:4222"));
        assert!(c.store_url.is_none());
        Ok(())
    }

    #[test]
    fn rejects_bad_values() {
        let e = config(&[(env::PORT, "x")]).err();
        assert!(e.is_some_and(|e| e.name == env::PORT));
        let e = config(&[(env::MAX_INFLIGHT, "0")]).err();
        assert!(e.is_some_and(|e| e.reason.contains("at least 1")));
        let e = config(&[(env::FUNCTION_KIND, "cron")]).err();
        assert!(e.is_some_and(|e| e.to_string().contains("http, async or main")));
    }
}
