//! The scaler's configuration, read once from the environment.

use std::path::PathBuf;

use rfa_io::env::{Env, EnvError, SecretFileError, read_secret_file};
use rfa_wire::env;

#[derive(Debug, Clone)]
pub struct Config {
    /// `RFAAS_PORT`: the port to listen on inside the instance's network, default 7070.
    pub port: u16,
    /// The platform's admin token: the gateway's wake and scale requests must carry it, and the
    /// scaler carries it to the gateway's admin API.
    pub token: String,
    /// `RFAAS_TOKEN_FILE`, re-read on `SIGHUP` like the gateway's.
    pub token_file: Option<PathBuf>,
    /// `RFAAS_GATEWAY_URL`: where the gateway's admin API is (`http://rfa-proxy:9999`).
    pub gateway_url: String,
    /// `RFAAS_INSTANCE`: the instance label value; the scaler acts only on containers carrying it.
    pub instance: String,
    /// What a function container gets from the platform (`RFAAS_NATS_URL`, `RFAAS_STORE_URL`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), passed on to replicas the scaler starts.
    pub platform_env: Vec<String>,
    /// `RFAAS_ENGINE_MODE=swarm`: functions are Swarm services (scale = the service's replica
    /// count; Swarm cannot pause a task, so an idle pause stops it).
    pub swarm: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("neither {0} nor {1} is set: the scaler needs the platform's admin token")]
    MissingToken(&'static str, &'static str),
    #[error("the admin token: {0}")]
    TokenFile(#[from] SecretFileError),
    #[error(transparent)]
    Env(#[from] EnvError),
}

impl Config {
    /// Reads the environment (once, at start).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from(&Env::process())
    }

    pub fn from<L: Fn(&str) -> Option<String>>(vars: &Env<L>) -> Result<Config, ConfigError> {
        let token_file = vars.text(env::TOKEN_FILE).map(PathBuf::from);
        let token = match (&token_file, vars.text(env::TOKEN)) {
            (Some(path), _) => read_secret_file(path)?,
            (None, Some(token)) => token,
            _ => return Err(ConfigError::MissingToken(env::TOKEN_FILE, env::TOKEN)),
        };
        let platform_env = [env::NATS_URL, env::STORE_URL, "OTEL_EXPORTER_OTLP_ENDPOINT"]
            .iter()
            .filter_map(|k| vars.text(k).map(|v| format!("{k}={v}")))
            .collect();
        Ok(Config {
            port: vars.number(env::PORT, rfa_wire::SCALER_PORT)?,
            token,
            token_file,
            gateway_url: vars
                .text(env::GATEWAY_URL)
                .unwrap_or_else(|| format!("http://rfa-proxy:{}", rfa_wire::PROXY_PORT)),
            instance: vars
                .text(env::INSTANCE)
                .unwrap_or_else(|| "default".to_string()),
            platform_env,
            swarm: vars.text(env::ENGINE_MODE).as_deref() == Some("swarm"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from(&Env::from_lookup(move |k: &str| map.get(k).cloned()))
    }

    #[test]
    fn reads_once_with_defaults() {
        let c = config(&[(env::TOKEN, "t"), (env::NATS_URL, "nats://n:4222")]).unwrap();
        assert_eq!(c.port, rfa_wire::SCALER_PORT);
        assert_eq!(c.instance, "default");
        assert!(!c.swarm);
        assert!(
            config(&[(env::TOKEN, "t"), (env::ENGINE_MODE, "swarm")])
                .unwrap()
                .swarm
        );
        assert_eq!(
            c.platform_env,
            vec!["RFAAS_NATS_URL=nats://n:4222".to_string()]
        );
        assert!(matches!(config(&[]), Err(ConfigError::MissingToken(..))));
        assert!(matches!(
            config(&[(env::TOKEN, "t"), (env::PORT, "x")]),
            Err(ConfigError::Env(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("token");
        std::fs::write(&empty, "  \n").unwrap();
        let err = config(&[(env::TOKEN_FILE, empty.to_str().unwrap())]).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
