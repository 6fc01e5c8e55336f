//! The gateway's configuration, read once from the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rfa_io::env::{Env, EnvError};
use rfa_wire::env;

#[derive(Debug, Clone)]
pub struct Config {
    /// `RFAAS_PORT`: the port to listen on (all interfaces), default 9999.
    pub port: u16,
    /// The admin bearer token at start; `/system/*` and `/store/*` need it. The live value is
    /// kept in [`crate::auth::Token`], which re-reads `token_file` on `SIGHUP`.
    pub token: String,
    /// Where the token came from, when it came from a file (`RFAAS_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
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
    /// Limits on client connections.
    pub limits: Limits,
    /// `RFAAS_SCALER_URL` (`http://rfa-scaler:7070`, no trailing `/`): where the gateway asks
    /// for a wake or a scale. `None`: a call to a paused function is answered 503 at once.
    pub scaler_url: Option<String>,
}

/// What one client may do to the gateway's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once; the next one gets `503` and is closed.
    pub max_connections: usize,
    /// Time to send a whole request head, counted from the connection's opening or the end of
    /// the previous response (so an idle keep-alive connection is closed after it too).
    pub header_timeout: Duration,
    /// Most header fields in one request (more: `431`).
    pub max_headers: usize,
    /// Largest request head in bytes (more: `431`).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("neither {0} nor {1} is set: the gateway needs an admin token")]
    MissingToken(&'static str, &'static str),
    #[error("cannot read the admin token from {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("{var} must be an http:// URL such as http://rfa-scaler:{port}, not '{value}'")]
    ScalerUrl {
        var: &'static str,
        port: u16,
        value: String,
    },
    #[error(transparent)]
    Env(#[from] EnvError),
}

impl Config {
    /// Reads the environment (once, at start).
    pub fn from_env() -> Result<Config, ConfigError> {
        let vars = Env::process();
        let token_file = vars.text(env::TOKEN_FILE).map(PathBuf::from);
        let token = match (&token_file, vars.text(env::TOKEN)) {
            (Some(path), _) => read_token(path)?,
            (None, Some(token)) => token,
            _ => return Err(ConfigError::MissingToken(env::TOKEN_FILE, env::TOKEN)),
        };
        let defaults = Limits::default();
        let scaler_url = vars
            .text(env::SCALER_URL)
            .map(|url| scaler_url(&url))
            .transpose()?;
        Ok(Config {
            scaler_url,
            port: vars.number(env::PORT, rfa_wire::PROXY_PORT)?,
            token,
            token_file,
            store_url: vars
                .text(env::STORE_URL)
                .unwrap_or_else(|| format!("http://rfa-store:{}", rfa_wire::STORE_PORT)),
            nats_url: vars.text(env::NATS_URL),
            data_dir: vars.text(env::DATA_DIR).map(PathBuf::from),
            max_body: vars.number(env::MAX_BODY, 16 * 1024 * 1024)?,
            max_async_body: vars.number(env::MAX_ASYNC_BODY, 256 * 1024)?,
            upstream_timeout: Duration::from_secs(vars.number_at_least(
                env::UPSTREAM_TIMEOUT,
                60,
                1,
            )?),
            limits: Limits {
                max_connections: vars.number_at_least(
                    env::MAX_CONNECTIONS,
                    defaults.max_connections,
                    1,
                )?,
                header_timeout: Duration::from_secs(vars.number_at_least(
                    env::HEADER_TIMEOUT,
                    defaults.header_timeout.as_secs(),
                    1,
                )?),
                max_headers: vars.number_at_least(env::MAX_HEADERS, defaults.max_headers, 1)?,
                // hyper's smallest read buffer is 8 KiB; a smaller head limit would not be kept.
                max_header_bytes: vars.number_at_least(
                    env::MAX_HEADER_BYTES,
                    defaults.max_header_bytes,
                    1024,
                )?,
            },
        })
    }
}

/// The scaler's base URL, checked (plain http: the scaler is on the instance's private network)
/// and without a trailing `/`.
pub fn scaler_url(value: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::ScalerUrl {
        var: env::SCALER_URL,
        port: rfa_wire::SCALER_PORT,
        value: value.to_string(),
    };
    let trimmed = value.trim().trim_end_matches('/');
    let authority = trimmed.strip_prefix("http://").ok_or_else(bad)?;
    if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) {
        return Err(bad());
    }
    trimmed.parse::<axum::http::Uri>().map_err(|_| bad())?;
    Ok(trimmed.to_string())
}

/// The token in `path`, trimmed; an empty file is an error.
fn read_token(path: &Path) -> Result<String, ConfigError> {
    rfa_io::env::read_secret_file(path).map_err(|e| ConfigError::TokenFile {
        path: e.path,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_urls() {
        assert_eq!(
            scaler_url("http://rfa-scaler:7070/").unwrap(),
            "http://rfa-scaler:7070"
        );
        assert_eq!(
            scaler_url("http://127.0.0.1:1").unwrap(),
            "http://127.0.0.1:1"
        );
        for bad in [
            "https://x:1",
            "rfa-scaler:7070",
            "http://",
            "http://x/y",
            "http://a b",
        ] {
            let e = scaler_url(bad).unwrap_err().to_string();
            assert!(e.contains("RFAAS_SCALER_URL") && e.contains(bad), "{e}");
        }
    }
}
