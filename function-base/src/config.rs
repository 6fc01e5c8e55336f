//! Runtime settings, read from the environment the platform gives every function container.

use std::sync::OnceLock;
use std::time::Duration;

use rfa_io::env::Env;
use rfa_wire::{FUNCTION_PORT, env, route::FunctionKind};
use tracing::warn;

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

/// A setting in the environment that cannot be used: names the variable and its value.
pub use rfa_io::env::EnvError as ConfigError;

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
    /// `RFAAS_GATEWAY_URL`, where [`crate::Ctx::call`] reaches other functions.
    pub gateway_url: Option<String>,
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
            gateway_url: None,
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
        let vars = Env::from_lookup(lookup);
        let d = Config::default();
        let kind = match vars.text(env::FUNCTION_KIND).as_deref() {
            None | Some("http") => FunctionKind::Http,
            Some("async") => FunctionKind::Async,
            Some("main") => FunctionKind::Main,
            Some(other) => {
                return Err(ConfigError::new(
                    env::FUNCTION_KIND,
                    other,
                    "expected http, async or main",
                ));
            }
        };
        let millis = |name, default: Duration, min| -> Result<Duration, ConfigError> {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            Ok(Duration::from_millis(
                vars.number_at_least(name, default, min)?,
            ))
        };
        Ok(Config {
            port: vars.number(env::PORT, d.port)?,
            function_name: vars.text(env::FUNCTION_NAME),
            kind,
            nats_url: vars.text(env::NATS_URL),
            store_url: vars.text(env::STORE_URL),
            gateway_url: vars.text(env::GATEWAY_URL),
            max_inflight: vars.number_at_least(env::MAX_INFLIGHT, d.max_inflight, 1)?,
            ack_wait: millis(ASYNC_ACK_WAIT_MS, d.ack_wait, 1)?,
            callback_attempts: vars.number_at_least(CALLBACK_ATTEMPTS, d.callback_attempts, 1)?,
            callback_backoff: millis(CALLBACK_BACKOFF_MS, d.callback_backoff, 0)?,
            callback_timeout: millis(CALLBACK_TIMEOUT_MS, d.callback_timeout, 1)?,
            event_attempts: vars.number_at_least(EVENT_ATTEMPTS, d.event_attempts, 1)?,
            event_backoff: millis(EVENT_BACKOFF_MS, d.event_backoff, 0)?,
            ..d
        })
    }
}

/// The settings of this process's function: those [`crate::run_http`] or [`crate::run_main`]
/// read at start; when neither started this process (a test, a tool), read from the environment
/// at the first use.
static PROCESS: OnceLock<Config> = OnceLock::new();

/// Keeps `config` as this process's settings (the first call wins).
pub(crate) fn set_process(config: &Config) {
    let _ = PROCESS.set(config.clone());
}

/// This process's settings (see [`PROCESS`]).
pub(crate) fn process() -> &'static Config {
    PROCESS.get_or_init(|| {
        Config::from_env().unwrap_or_else(|e| {
            warn!(error = %e, "using the default settings");
            Config::default()
        })
    })
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
