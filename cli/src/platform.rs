//! The platform's containers (NATS, store, proxy, scaler): what each should look like, and how
//! to make the engine match that. Shared by `startFaas`, `stopFaas` and the commands that need the
//! gateway's address and token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rfa_engine::EngineSocket;
use rfa_wire::{NATS_MONITOR_PORT, NATS_PORT, PROXY_PORT, SCALER_PORT, STORE_PORT, env};

use crate::instance::{HostFiles, Instance, LABEL_BASE, LABEL_SPEC, Role};
use crate::limits;
use rfa_engine::{ContainerFile, ContainerSpec, Engine};

pub use crate::settings::{NatsSource, Settings};

/// Where the proxy and the scaler read the admin token, on their data volumes (not in their
/// environment, where `docker inspect` would show it to anyone who may talk to the engine).
pub const PROXY_TOKEN_DIR: &str = "/data";
pub const PROXY_TOKEN_FILE: &str = "token";

/// Where an admin token came from: named in every message about a token the gateway refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// The `RFAAS_TOKEN` environment variable.
    Env,
    /// The instance's token file.
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env => write!(f, "RFAAS_TOKEN"),
            TokenSource::File(path) => write!(f, "the token file {}", path.display()),
        }
    }
}

/// The admin token a command uses, and where it came from.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: String,
    pub source: TokenSource,
}

/// The fewest characters an admin token may have (a generated one has 64 hex digits).
pub const MIN_TOKEN_LEN: usize = 32;

/// Checks that `token`, given by the user, is as hard to guess as a generated one: at least
/// [`MIN_TOKEN_LEN`] characters of `A-Z a-z 0-9 - . _ ~ + / =` and not mostly one repeated
/// pattern (at least 8 different characters). Returns what is wrong with it.
pub fn check_token_strength(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "it has {} characters and needs at least {MIN_TOKEN_LEN}",
            token.chars().count()
        ));
    }
    if let Some(bad) = token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(*c)))
    {
        return Err(format!(
            "it holds {bad:?}: use only A-Z a-z 0-9 - . _ ~ + / ="
        ));
    }
    let distinct: std::collections::BTreeSet<char> = token.chars().collect();
    if distinct.len() < 8 {
        return Err(format!(
            "it uses only {} different characters: it is too easy to guess",
            distinct.len()
        ));
    }
    Ok(())
}

/// The admin token of a running instance: `RFAAS_TOKEN` if set, else the token file.
pub fn admin_token(instance: &Instance) -> anyhow::Result<Token> {
    if let Ok(t) = std::env::var(env::TOKEN)
        && !t.is_empty()
    {
        return Ok(Token {
            value: t,
            source: TokenSource::Env,
        });
    }
    let path = instance.token_path()?;
    match read_token_file(&path) {
        Some(value) => Ok(Token {
            value,
            source: TokenSource::File(path),
        }),
        None => bail!(
            "no admin token at {}: start the platform with `proxyCli startFaas{}` (it writes one), \
             or set RFAAS_TOKEN to the platform's token",
            path.display(),
            instance_flag(instance)
        ),
    }
}

/// Reads the instance's admin token (see [`admin_token`]); `create` is for `startFaas`, see
/// [`startup_token`].
pub fn token(instance: &Instance, create: bool) -> anyhow::Result<String> {
    if create {
        return Ok(startup_token(instance)?.0);
    }
    Ok(admin_token(instance)?.value)
}

/// The token `startFaas` gives the gateway, and a line to tell the user when it is new to the
/// token file. With `RFAAS_TOKEN` set, that token must be strong (else an error) and becomes the
/// instance's token: it is written to the token file too, so the file, the variable and the
/// gateway agree. Otherwise the token file's, created (random, mode 0600) if missing.
pub fn startup_token(instance: &Instance) -> anyhow::Result<(String, Option<String>)> {
    let path = instance.token_path()?;
    let kept = read_token_file(&path);
    if let Ok(t) = std::env::var(env::TOKEN)
        && !t.is_empty()
    {
        if let Err(why) = check_token_strength(&t) {
            bail!(
                "RFAAS_TOKEN is too weak to be the admin token: {why}. Give a random one (e.g. \
                 `export RFAAS_TOKEN=$(openssl rand -hex 32)`), or unset RFAAS_TOKEN and startFaas \
                 uses the token in {} (made for you if missing)",
                path.display()
            );
        }
        if kept.as_deref() == Some(t.as_str()) {
            return Ok((t, None));
        }
        write_token_value(&path, &t)?;
        let note = format!(
            "admin token: taken from RFAAS_TOKEN and saved to {}{}",
            path.display(),
            if kept.is_some() {
                " (it replaces the token that was there)"
            } else {
                ""
            }
        );
        return Ok((t, Some(note)));
    }
    match kept {
        Some(t) => Ok((t, None)),
        None => Ok((write_token(&path)?, None)),
    }
}

/// Replaces the instance's admin token with a new random one in its file (mode 0600); returns
/// the new token and the old one, if there was one. The running gateway still has the old one
/// until it is handed the file (`startFaas` does that).
pub fn rotate_token(instance: &Instance) -> anyhow::Result<(String, Option<String>)> {
    if std::env::var(env::TOKEN).is_ok_and(|t| !t.is_empty()) {
        bail!(
            "RFAAS_TOKEN is set, and it would override the rotated token: unset it and run \
             `proxyCli startFaas --rotate-token{}` again",
            instance_flag(instance)
        );
    }
    let path = instance.token_path()?;
    let old = read_token_file(&path);
    let new = write_token(&path)?;
    Ok((new, old))
}

/// The token kept in the file at `path`, trimmed; `None` when the file is missing or empty.
fn read_token_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Writes a new random token to `path` (mode 0600).
fn write_token(path: &Path) -> anyhow::Result<String> {
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_token_value(path, &token)?;
    Ok(token)
}

/// Writes `token` to `path` (mode 0600, its directory 0700): to a temporary file first, then
/// renamed over the old one, so a reader never sees a half-written token.
fn write_token_value(path: &Path, token: &str) -> anyhow::Result<()> {
    crate::paths::write_private(path, token.as_bytes())
        .with_context(|| format!("cannot write the admin token to {}", path.display()))
}

/// ` --instance <name>` for messages, or nothing for the default instance.
pub fn instance_flag(instance: &Instance) -> String {
    if instance.is_default() {
        String::new()
    } else {
        format!(" --instance {}", instance.label())
    }
}

/// The gateway's base URL on the host, read from the running proxy container.
pub async fn gateway_url(engine: &Engine, instance: &Instance) -> anyhow::Result<String> {
    let name = instance.proxy();
    let info = engine.inspect(&name).await?;
    if info.is_none()
        && crate::swarm::is_swarm(engine, instance).await?
        && let Some(url) = crate::swarm::gateway_url(engine, instance).await?
    {
        return Ok(url);
    }
    let info = info.filter(|c| c.state.as_ref().and_then(|s| s.running).unwrap_or(false));
    let Some(info) = info else {
        bail!(
            "the rfaas gateway ({name}) is not running: start the platform with `proxyCli startFaas{}`",
            instance_flag(instance)
        );
    };
    let port = rfa_engine::published_port_of(&info, PROXY_PORT).with_context(|| {
        format!("{name} publishes no port: run `proxyCli startFaas` to repair it")
    })?;
    let ip = info
        .host_config
        .and_then(|h| h.port_bindings)
        .and_then(|mut p| p.remove(&format!("{PROXY_PORT}/tcp")))
        .flatten()
        .and_then(|b| b.into_iter().find_map(|b| b.host_ip))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    Ok(format!("http://{}:{port}", url_host(&ip)))
}

/// `ip` as the host part of a URL reaching a gateway published on it: IPv6 in brackets, and
/// an all-addresses bind (`0.0.0.0`, `::`) reached on the matching loopback.
pub fn url_host(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) if v4.is_unspecified() => "127.0.0.1".to_string(),
        Ok(std::net::IpAddr::V6(v6)) if v6.is_unspecified() => "[::1]".to_string(),
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => ip.to_string(),
    }
}

/// The URL of NATS as containers on the network see it.
pub fn nats_url(instance: &Instance, settings: &Settings) -> String {
    match &settings.nats {
        NatsSource::External(url) => url.clone(),
        _ => format!("nats://{}:{NATS_PORT}", instance.nats()),
    }
}

/// The spec of each platform container, in start order.
pub fn specs(
    instance: &Instance,
    settings: &Settings,
    images: &PlatformImages,
    token: &str,
    scaler_socket: Option<&EngineSocket>,
) -> Vec<(Role, ContainerSpec)> {
    let net = instance.network();
    let nats_url = nats_url(instance, settings);
    let mut otel = Vec::new();
    if let Some(endpoint) = &settings.kept.otlp_endpoint {
        otel.push(format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"));
    }
    let mut out = Vec::new();
    if let Some(image) = &images.nats {
        let spec = ContainerSpec {
            name: instance.nats(),
            image: image.clone(),
            cmd: vec![
                "-js".into(),
                "-sd".into(),
                "/data".into(),
                "-p".into(),
                NATS_PORT.to_string(),
                "-m".into(),
                NATS_MONITOR_PORT.to_string(),
                "--server_name".into(),
                instance.nats(),
            ],
            labels: instance.labels(Role::Nats),
            network: net.clone(),
            aliases: vec![instance.nats()],
            volumes: vec![(instance.nats_volume(), "/data".into())],
            memory_bytes: Some(limits::PLATFORM_MEMORY),
            nano_cpus: Some(limits::default_nano_cpus(limits::PLATFORM_CPUS)),
            pids_limit: Some(limits::NATS_PIDS),
            // A user's image (--nats-image) too: it runs through a layer of rfaas's that adds
            // the non-root user and its /data (see images::UserImage), keeping its entry point.
            hardened: true,
            // So a NATS or OTLP collector on the host is reachable (--nats-url).
            host_gateway: true,
            ..Default::default()
        };
        out.push((Role::Nats, spec));
    }
    let mut store_env = vec![
        format!("{}={nats_url}", env::NATS_URL),
        format!("{}=/data", env::DATA_DIR),
        format!("{}={STORE_PORT}", env::PORT),
    ];
    store_env.extend(otel.iter().cloned());
    out.push((
        Role::Store,
        ContainerSpec {
            name: instance.store(),
            image: images.store.clone(),
            env: store_env,
            labels: instance.labels(Role::Store),
            network: net.clone(),
            aliases: vec![instance.store()],
            volumes: vec![(instance.store_volume(), "/data".into())],
            memory_bytes: Some(limits::PLATFORM_MEMORY),
            nano_cpus: Some(limits::default_nano_cpus(limits::PLATFORM_CPUS)),
            pids_limit: Some(limits::STORE_PIDS),
            hardened: true,
            // So a NATS or OTLP collector on the host is reachable (--nats-url).
            host_gateway: true,
            ..Default::default()
        },
    ));
    let mut proxy_env = vec![
        format!("{}={PROXY_TOKEN_DIR}/{PROXY_TOKEN_FILE}", env::TOKEN_FILE),
        format!(
            "{}=http://{}:{STORE_PORT}",
            env::STORE_URL,
            instance.store()
        ),
        format!("{}={nats_url}", env::NATS_URL),
        format!("{}=/data", env::DATA_DIR),
        format!("{}={PROXY_PORT}", env::PORT),
        format!(
            "{}={}",
            env::UPSTREAM_TIMEOUT,
            settings.kept.upstream_timeout
        ),
        format!("{}={}", env::MAX_ASYNC_BODY, settings.kept.max_async_body),
        format!("{}={}", env::MAX_CONNECTIONS, settings.kept.max_connections),
        format!("{}={}", env::HEADER_TIMEOUT, settings.kept.header_timeout),
        format!("{}={}", env::MAX_HEADERS, settings.kept.max_headers),
        format!(
            "{}={}",
            env::MAX_HEADER_BYTES,
            settings.kept.max_header_bytes
        ),
        format!("{}=http://{SCALER_ALIAS}:{SCALER_PORT}", env::SCALER_URL),
    ];
    proxy_env.extend(otel.iter().cloned());
    out.push((
        Role::Proxy,
        ContainerSpec {
            name: instance.proxy(),
            image: images.proxy.clone(),
            env: proxy_env,
            labels: instance.labels(Role::Proxy),
            network: net.clone(),
            aliases: vec![instance.proxy()],
            publish: Some((settings.kept.bind.clone(), settings.kept.port, PROXY_PORT)),
            volumes: vec![(instance.proxy_volume(), "/data".into())],
            memory_bytes: Some(limits::PLATFORM_MEMORY),
            nano_cpus: Some(limits::default_nano_cpus(limits::PROXY_CPUS)),
            pids_limit: Some(limits::PROXY_PIDS),
            hardened: true,
            files: vec![proxy_token_file(token)],
            // So a NATS or OTLP collector on the host is reachable (--nats-url).
            host_gateway: true,
            ..Default::default()
        },
    ));
    if let Some(socket) = scaler_socket {
        // What a function gets from the platform (it passes it on to the replicas it starts),
        // and the gateway's admin API, where it reads load and writes routes.
        let mut scaler_env = vec![
            format!("{}={PROXY_TOKEN_DIR}/{PROXY_TOKEN_FILE}", env::TOKEN_FILE),
            format!(
                "{}=http://{}:{PROXY_PORT}",
                env::GATEWAY_URL,
                instance.proxy()
            ),
            format!("{}={}", env::INSTANCE, instance.label()),
            format!("{}={SCALER_PORT}", env::PORT),
            format!("{}={nats_url}", env::NATS_URL),
            format!(
                "{}=http://{}:{STORE_PORT}",
                env::STORE_URL,
                instance.store()
            ),
        ];
        scaler_env.extend(otel);
        let mut aliases = vec![SCALER_ALIAS.to_string()];
        if instance.scaler() != SCALER_ALIAS {
            aliases.push(instance.scaler());
        }
        out.push((
            Role::Scaler,
            ContainerSpec {
                name: instance.scaler(),
                image: images.scaler.clone(),
                env: scaler_env,
                labels: instance.labels(Role::Scaler),
                network: instance.network(),
                aliases,
                volumes: vec![(instance.scaler_volume(), "/data".into())],
                memory_bytes: Some(limits::SCALER_MEMORY),
                nano_cpus: Some(limits::default_nano_cpus(limits::SCALER_CPUS)),
                pids_limit: Some(limits::SCALER_PIDS),
                hardened: true,
                files: vec![proxy_token_file(token)],
                // The one container with the engine's socket (docs/RELIABILITY.md, "The
                // scaler's trust boundary").
                engine_socket: Some(socket.clone()),
                // So an OTLP collector on the host is reachable.
                host_gateway: true,
                ..Default::default()
            },
        ));
    }
    for (_, spec) in &mut out {
        spec.labels
            .insert(LABEL_BASE.to_string(), images.base.clone());
        let digest = spec.hash();
        spec.labels.insert(LABEL_SPEC.to_string(), digest);
    }
    out
}

/// The scaler's alias on the instance's network: each instance has its own network, so the name
/// is the same in all of them.
pub const SCALER_ALIAS: &str = "rfa-scaler";

/// The admin token as the proxy and the scaler read it: `/data/token`, readable by the
/// container's user only.
pub fn proxy_token_file(token: &str) -> ContainerFile {
    ContainerFile {
        dir: PROXY_TOKEN_DIR.to_string(),
        name: PROXY_TOKEN_FILE.to_string(),
        contents: token.as_bytes().to_vec(),
        mode: 0o400,
        owner: rfa_engine::UID,
    }
}

/// The images the platform runs (already built).
pub struct PlatformImages {
    pub base: String,
    pub nats: Option<String>,
    pub store: String,
    pub proxy: String,
    pub scaler: String,
}

/// Waits until the component answers, or fails naming it.
pub async fn wait_healthy(
    engine: &Engine,
    instance: &Instance,
    role: Role,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        let url = match role {
            Role::Proxy => Some(format!("{}/healthz", gateway_url(engine, instance).await?)),
            Role::Store => engine
                .ip_on(name, &instance.network())
                .await?
                .map(|ip| format!("http://{ip}:{STORE_PORT}/healthz")),
            Role::Nats => engine
                .ip_on(name, &instance.network())
                .await?
                .map(|ip| format!("http://{ip}:{NATS_MONITOR_PORT}/healthz")),
            Role::Scaler => engine
                .ip_on(name, &instance.network())
                .await?
                .map(|ip| format!("http://{ip}:{SCALER_PORT}/healthz")),
            _ => None,
        };
        if let Some(url) = url {
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("{url} answered {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        let state = engine.inspect(name).await?.and_then(|c| c.state);
        if let Some(state) = state
            && state.running == Some(false)
            && state.restarting != Some(true)
        {
            last = format!(
                "the container exited with code {}",
                state.exit_code.unwrap_or(-1)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = engine.tail_logs(name, 15).await;
    bail!(
        "{name} did not become healthy within {} s ({last}).\nIts last log lines:\n{logs}",
        timeout.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_tokens_must_be_as_strong_as_generated_ones() {
        assert!(check_token_strength(&"0123456789abcdef".repeat(4)).is_ok());
        assert!(check_token_strength("Zq8-Yp7.Xo6_Wn5~Vm4+Ul3/Tk2=Sj1Ri0").is_ok());
        let short = check_token_strength("abc").unwrap_err();
        assert!(
            short.contains("3 characters") && short.contains("32"),
            "{short}"
        );
        let odd = check_token_strength(&format!("{} x", "a1b2c3d4e5".repeat(4))).unwrap_err();
        assert!(odd.contains("' '"), "{odd}");
        let dull = check_token_strength(&"ab".repeat(20)).unwrap_err();
        assert!(dull.contains("2 different"), "{dull}");
    }

    #[test]
    fn ipv6_gateway_addresses_are_bracketed() {
        assert_eq!(url_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(url_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("::"), "[::1]");
        assert_eq!(url_host("fd00::5"), "[fd00::5]");
    }
}
