//! The gateway's configuration, read once from the environment.

use std::path::PathBuf;
use std::time::Duration;

use rfa_wire::env;

#[derive(Debug, Clone)]
pub struct Config {
    /// The admin bearer token; `/system/*` and `/store/*` need it.
    pub token: String,
    /// Base URL of the document store.
    pub store_url: String,
    /// NATS for async calls; `None` turns async calls into 503s.
    pub nats_url: Option<String>,
    /// Where the route table is persisted; `None` keeps it in memory only.
    pub data_dir: Option<PathBuf>,
    /// Largest sync request body.
    pub max_body: u64,
    /// Largest async request body.
    pub max_async_body: u64,
    /// Time allowed for a function to send its response headers.
    pub upstream_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set: the gateway needs an admin token")]
    MissingToken(&'static str),
    #[error("{name} must be a whole number, not '{value}'")]
    NotANumber { name: &'static str, value: String },
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let token = std::env::var(env::TOKEN)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingToken(env::TOKEN))?;
        Ok(Config {
            token,
            store_url: std::env::var(env::STORE_URL)
                .unwrap_or_else(|_| format!("http://rfa-store:{}", rfa_wire::STORE_PORT)),
            nats_url: std::env::var(env::NATS_URL).ok().filter(|u| !u.is_empty()),
            data_dir: std::env::var(env::DATA_DIR).ok().map(PathBuf::from),
            max_body: number(env::MAX_BODY, 16 * 1024 * 1024)?,
            max_async_body: number(env::MAX_ASYNC_BODY, 256 * 1024)?,
            upstream_timeout: Duration::from_secs(number(env::UPSTREAM_TIMEOUT, 60)?),
        })
    }
}

fn number(name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| ConfigError::NotANumber { name, value }),
        Err(_) => Ok(default),
    }
}
