//! The platform's three containers (NATS, store, proxy): what each should look like, and how to
//! make the engine match that. Shared by `startFaas`, `stopFaas` and the commands that need the
//! gateway's address and token.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rfa_wire::{NATS_MONITOR_PORT, NATS_PORT, PROXY_PORT, STORE_PORT, env};
use sha2::{Digest, Sha256};

use crate::docker::{ContainerFile, ContainerSpec, Engine};
use crate::instance::{Instance, LABEL_BASE, LABEL_SPEC, Role};
use crate::limits;

/// Where NATS comes from.
#[derive(Debug, Clone)]
pub enum NatsSource {
    /// The host's `nats-server`, packed onto the base image (the default).
    HostBinary(PathBuf),
    /// A local image the user named (`--nats-image`).
    Image(String),
    /// A server rfaas does not run (`--nats-url`).
    External(String),
}

/// What `startFaas` was asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: String,
    pub port: u16,
    pub nats: NatsSource,
    pub otlp_endpoint: Option<String>,
    pub base_image: Option<String>,
    pub upstream_timeout: u64,
    pub max_async_body: u64,
    pub max_connections: u32,
    pub header_timeout: u64,
    pub max_headers: u32,
    pub max_header_bytes: u32,
}

/// Where the proxy reads its admin token, on its data volume (not in its environment, where
/// `docker inspect` would show it to anyone who may talk to the engine).
pub const PROXY_TOKEN_DIR: &str = "/data";
pub const PROXY_TOKEN_FILE: &str = "token";

/// Reads the instance's admin token, creating it (mode 0600) when `create` is set.
pub fn token(instance: &Instance, create: bool) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var(env::TOKEN)
        && !t.is_empty()
    {
        return Ok(t);
    }
    let path = instance.token_path()?;
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) | Err(_) if !create => bail!(
            "no admin token at {}: start the platform with `proxyCli startFaas{}` or set RFAAS_TOKEN",
            path.display(),
            instance_flag(instance)
        ),
        _ => {}
    }
    write_token(&path)
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
    let old = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let new = write_token(&path)?;
    Ok((new, old))
}

/// Writes a new random token to `path` (mode 0600): to a temporary file first, then renamed
/// over the old one, so a reader never sees a half-written token.
fn write_token(path: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write the admin token to {}", tmp.display()))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    Ok(token)
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
    let info = engine
        .inspect(&name)
        .await?
        .filter(|c| c.state.as_ref().and_then(|s| s.running).unwrap_or(false));
    let Some(info) = info else {
        bail!(
            "the rfaas gateway ({name}) is not running: start the platform with `proxyCli startFaas{}`",
            instance_flag(instance)
        );
    };
    let port = crate::docker::published_port_of(&info, PROXY_PORT).with_context(|| {
        format!("{name} publishes no port: run `proxyCli startFaas` to repair it")
    })?;
    let ip = info
        .host_config
        .and_then(|h| h.port_bindings)
        .and_then(|mut p| p.remove(&format!("{PROXY_PORT}/tcp")))
        .flatten()
        .and_then(|b| b.into_iter().find_map(|b| b.host_ip))
        .filter(|ip| !ip.is_empty() && ip != "0.0.0.0")
        .unwrap_or_else(|| "127.0.0.1".to_string());
    Ok(format!("http://{ip}:{port}"))
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
) -> Vec<(Role, ContainerSpec)> {
    let net = instance.network();
    let nats_url = nats_url(instance, settings);
    let mut otel = Vec::new();
    if let Some(endpoint) = &settings.otlp_endpoint {
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
        format!("{}={}", env::UPSTREAM_TIMEOUT, settings.upstream_timeout),
        format!("{}={}", env::MAX_ASYNC_BODY, settings.max_async_body),
        format!("{}={}", env::MAX_CONNECTIONS, settings.max_connections),
        format!("{}={}", env::HEADER_TIMEOUT, settings.header_timeout),
        format!("{}={}", env::MAX_HEADERS, settings.max_headers),
        format!("{}={}", env::MAX_HEADER_BYTES, settings.max_header_bytes),
    ];
    proxy_env.extend(otel);
    out.push((
        Role::Proxy,
        ContainerSpec {
            name: instance.proxy(),
            image: images.proxy.clone(),
            env: proxy_env,
            labels: instance.labels(Role::Proxy),
            network: net,
            aliases: vec![instance.proxy()],
            publish: Some((settings.bind.clone(), settings.port, PROXY_PORT)),
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
    for (_, spec) in &mut out {
        spec.labels
            .insert(LABEL_BASE.to_string(), images.base.clone());
        let digest = spec_hash(spec);
        spec.labels.insert(LABEL_SPEC.to_string(), digest);
    }
    out
}

/// The admin token as the proxy reads it: `/data/token`, readable by the container's user only.
pub fn proxy_token_file(token: &str) -> ContainerFile {
    ContainerFile {
        dir: PROXY_TOKEN_DIR.to_string(),
        name: PROXY_TOKEN_FILE.to_string(),
        contents: token.as_bytes().to_vec(),
        mode: 0o400,
        owner: crate::images::UID,
    }
}

/// A hash of everything in a spec, so a changed platform (new image, flag) is recreated.
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut h = Sha256::new();
    if spec.hardened {
        // A change to what hardening means recreates the containers that have the old one.
        h.update(format!(
            "hardened:{}:{}|",
            crate::images::UID,
            crate::docker::TMPFS_OPTIONS
        ));
    }
    h.update(format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.image,
        spec.cmd,
        spec.env,
        spec.network,
        spec.aliases,
        spec.publish,
        spec.volumes,
        (
            spec.memory_bytes,
            spec.nano_cpus,
            spec.pids_limit,
            spec.hardened
        )
    ));
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The images the platform runs (already built).
pub struct PlatformImages {
    pub base: String,
    pub nats: Option<String>,
    pub store: String,
    pub proxy: String,
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
