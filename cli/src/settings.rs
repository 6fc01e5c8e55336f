//! What an instance was started with (port, bind address, NATS, limits, tracing …), kept in
//! `<config dir>/settings[-<instance>].json` beside its token, so a plain `startFaas` (the
//! documented repair, or a restart after `stopFaas`) brings the platform back as it was. A flag
//! given to `startFaas` wins over the kept value and is kept from then on; `--defaults` forgets
//! the kept values. `stopFaas --prune` removes the file.

use std::path::{Path, PathBuf};

use std::net::IpAddr;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::instance::Instance;

/// Where NATS comes from, resolved for this run.
#[derive(Debug, Clone)]
pub enum NatsSource {
    /// The host's `nats-server`, packed onto the base image (the default).
    HostBinary(PathBuf),
    /// A local image the user named (`--nats-image`).
    Image(String),
    /// A server rfaas does not run (`--nats-url`).
    External(String),
}

/// What `startFaas` runs the platform with, resolved for this run: the kept values, and where
/// NATS comes from looked up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kept: Kept,
    pub nats: NatsSource,
}

/// Where NATS comes from, as kept (the host binary's path is looked up on each start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum NatsChoice {
    #[default]
    HostBinary,
    Image(String),
    Url(String),
}

impl std::fmt::Display for NatsChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsChoice::HostBinary => write!(f, "the host's nats-server"),
            NatsChoice::Image(i) => write!(f, "image {i}"),
            NatsChoice::Url(u) => write!(f, "{u}"),
        }
    }
}

/// The kept settings: every value `startFaas` takes a flag for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Kept {
    pub bind: String,
    pub port: u16,
    pub nats: NatsChoice,
    pub otlp_endpoint: Option<String>,
    pub base_image: Option<String>,
    pub upstream_timeout: u64,
    pub max_async_body: u64,
    pub max_connections: u32,
    pub header_timeout: u64,
    pub max_headers: u32,
    pub max_header_bytes: u32,
    /// Run on Docker Swarm (`--swarm`, docs/SWARM.md).
    pub swarm: bool,
    /// On Swarm: the engines of the other nodes that run functions (`--node-engine`), which
    /// `deploy` copies function images to.
    pub node_engines: Vec<String>,
    /// On Swarm, with `DOCKER_HOST` not a local socket: the group of the manager's engine
    /// socket, for the scaler (`--engine-socket-gid`).
    pub engine_socket_gid: Option<u32>,
}

impl Default for Kept {
    fn default() -> Kept {
        Kept {
            bind: "127.0.0.1".into(),
            port: rfa_wire::PROXY_PORT,
            nats: NatsChoice::HostBinary,
            otlp_endpoint: None,
            base_image: None,
            upstream_timeout: 60,
            max_async_body: 256 * 1024,
            max_connections: 1024,
            header_timeout: 10,
            max_headers: 100,
            max_header_bytes: 16 * 1024,
            swarm: false,
            node_engines: Vec::new(),
            engine_socket_gid: None,
        }
    }
}

/// The values given on this `startFaas`'s command line (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub bind: Option<String>,
    pub port: Option<u16>,
    pub nats_image: Option<String>,
    pub nats_url: Option<String>,
    pub otlp_endpoint: Option<String>,
    pub base_image: Option<String>,
    pub upstream_timeout: Option<u64>,
    pub max_async_body: Option<u64>,
    pub max_connections: Option<u32>,
    pub header_timeout: Option<u64>,
    pub max_headers: Option<u32>,
    pub max_header_bytes: Option<u32>,
    pub swarm: Option<bool>,
    pub node_engines: Option<Vec<String>>,
    pub engine_socket_gid: Option<u32>,
}

/// `settings.json`, or `settings-<instance>.json`.
pub fn path(instance: &Instance) -> anyhow::Result<PathBuf> {
    Ok(crate::paths::config_dir()?.join(format!("{}.json", instance.object("settings"))))
}

/// The kept settings of `instance`, if it has any.
pub fn load(file: &Path) -> anyhow::Result<Option<Kept>> {
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    match serde_json::from_slice(&text) {
        Ok(kept) => Ok(Some(kept)),
        Err(e) => bail!(
            "{} holds the settings this platform was started with, and it is not valid ({e}): \
             fix it, delete it, or run startFaas with --defaults to start over from the defaults",
            file.display()
        ),
    }
}

/// Keeps `kept` for the next `startFaas`.
pub fn save(file: &Path, kept: &Kept) -> anyhow::Result<()> {
    let body = serde_json::to_vec_pretty(kept)?;
    crate::paths::write_private(file, &body)
        .with_context(|| format!("cannot keep the platform's settings in {}", file.display()))
}

/// The settings for this run: each given flag, else the kept value, else the default; and one
/// line per kept value a flag changed (`port: 9997 -> 9998`).
pub fn resolve(given: &Given, kept: Option<&Kept>) -> (Kept, Vec<String>) {
    let base = kept.cloned().unwrap_or_default();
    let mut out = base.clone();
    let mut changes = Vec::new();
    fn set<T: PartialEq + Clone + std::fmt::Debug>(
        name: &str,
        field: &mut T,
        value: Option<T>,
        show: impl Fn(&T) -> String,
        changes: &mut Vec<String>,
    ) {
        if let Some(v) = value
            && *field != v
        {
            changes.push(format!("{name}: {} -> {}", show(field), show(&v)));
            *field = v;
        }
    }
    let plain = |v: &String| v.clone();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    set(
        "bind",
        &mut out.bind,
        given.bind.clone(),
        plain,
        &mut changes,
    );
    set(
        "port",
        &mut out.port,
        given.port,
        u16::to_string,
        &mut changes,
    );
    let nats = match (&given.nats_url, &given.nats_image) {
        (Some(url), _) => Some(NatsChoice::Url(url.clone())),
        (None, Some(image)) => Some(NatsChoice::Image(image.clone())),
        (None, None) => None,
    };
    set(
        "nats",
        &mut out.nats,
        nats,
        NatsChoice::to_string,
        &mut changes,
    );
    set(
        "otlp-endpoint",
        &mut out.otlp_endpoint,
        given.otlp_endpoint.clone().map(Some),
        opt,
        &mut changes,
    );
    set(
        "base-image",
        &mut out.base_image,
        given.base_image.clone().map(Some),
        opt,
        &mut changes,
    );
    set(
        "upstream-timeout",
        &mut out.upstream_timeout,
        given.upstream_timeout,
        u64::to_string,
        &mut changes,
    );
    set(
        "max-async-body",
        &mut out.max_async_body,
        given.max_async_body,
        u64::to_string,
        &mut changes,
    );
    set(
        "max-connections",
        &mut out.max_connections,
        given.max_connections,
        u32::to_string,
        &mut changes,
    );
    set(
        "header-timeout",
        &mut out.header_timeout,
        given.header_timeout,
        u64::to_string,
        &mut changes,
    );
    set(
        "max-headers",
        &mut out.max_headers,
        given.max_headers,
        u32::to_string,
        &mut changes,
    );
    set(
        "max-header-bytes",
        &mut out.max_header_bytes,
        given.max_header_bytes,
        u32::to_string,
        &mut changes,
    );
    set(
        "swarm",
        &mut out.swarm,
        given.swarm,
        bool::to_string,
        &mut changes,
    );
    set(
        "node-engine",
        &mut out.node_engines,
        given.node_engines.clone(),
        |v: &Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(",")
            }
        },
        &mut changes,
    );
    set(
        "engine-socket-gid",
        &mut out.engine_socket_gid,
        given.engine_socket_gid.map(Some),
        |v: &Option<u32>| v.map_or_else(|| "none".to_string(), |g| g.to_string()),
        &mut changes,
    );
    if kept.is_none() {
        // A first start: nothing was kept, so nothing changed.
        changes.clear();
    }
    (out, changes)
}

/// Checks the resolved settings and turns them into what this run uses.
pub fn check(k: &Kept) -> anyhow::Result<Settings> {
    let bind: IpAddr = k.bind.parse().with_context(|| {
        format!(
            "--bind '{}' is not an IP address (e.g. 127.0.0.1, ::1 or 0.0.0.0)",
            k.bind
        )
    })?;
    let nats = match &k.nats {
        NatsChoice::Url(url) => {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                bail!("--nats-url '{url}' must start with nats:// (e.g. nats://host.docker.internal:4222)");
            }
            NatsSource::External(url.clone())
        }
        NatsChoice::Image(image) => NatsSource::Image(image.clone()),
        NatsChoice::HostBinary => NatsSource::HostBinary(crate::paths::find_nats_server().context(
            "nats-server is not installed on this host, and rfaas runs NATS from it. Install it \
             (Debian/Ubuntu: `sudo apt-get install nats-server`), or pass --nats-image <local image> \
             or --nats-url nats://…",
        )?),
    };
    if let Some(endpoint) = &k.otlp_endpoint {
        check_otlp_endpoint(endpoint)?;
    }
    if !k.node_engines.is_empty() && !k.swarm {
        bail!("--node-engine names the engines of a swarm's other nodes: it needs --swarm");
    }
    for url in &k.node_engines {
        let ok = url
            .strip_prefix("tcp://")
            .and_then(|rest| rest.rsplit_once(':'))
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            bail!(
                "--node-engine '{url}' is not an engine address: give tcp://<host>:<port> (e.g. \
                 tcp://10.0.0.2:2375) of another swarm node's Docker engine"
            );
        }
    }
    Ok(Settings {
        kept: Kept {
            bind: bind.to_string(),
            ..k.clone()
        },
        nats,
    })
}

/// What to tell the user when the gateway is published beyond this machine's loopback.
pub fn bind_warning(bind: IpAddr, port: u16) -> Option<String> {
    if bind.is_loopback() {
        return None;
    }
    Some(format!(
        "warning: --bind {bind} publishes the gateway (port {port}) beyond this machine: anyone who \
         can reach this host on the network can call every function, and only the admin token \
         protects /system and /store. Use the default --bind 127.0.0.1 unless that is what you want \
         (and then put TLS in front of it)."
    ))
}

/// An OTLP/gRPC endpoint the containers can reach: `http(s)://host:port`, not the container's own
/// loopback.
fn check_otlp_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        bail!(
            "--otlp-endpoint '{endpoint}' must be an http:// or https:// URL of an OTLP/gRPC \
             receiver (e.g. http://host.docker.internal:4317)"
        );
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host.is_empty() {
        bail!("--otlp-endpoint '{endpoint}' names no host (e.g. http://host.docker.internal:4317)");
    }
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0") {
        bail!(
            "--otlp-endpoint '{endpoint}' would point every container at itself: containers \
             reach a receiver on this host as host.docker.internal (e.g. \
             http://host.docker.internal:4317)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_then_kept_values_then_defaults() {
        let (first, changes) = resolve(
            &Given {
                port: Some(9997),
                upstream_timeout: Some(7),
                ..Default::default()
            },
            None,
        );
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!((first.port, first.upstream_timeout), (9997, 7));
        assert_eq!(first.bind, "127.0.0.1");

        // A plain start keeps everything.
        let (again, changes) = resolve(&Given::default(), Some(&first));
        assert_eq!(again, first);
        assert!(changes.is_empty(), "{changes:?}");

        // A flag that differs changes only its value and says so; one that agrees says nothing.
        let (changed, changes) = resolve(
            &Given {
                port: Some(9997),
                upstream_timeout: Some(9),
                nats_url: Some("nats://h:4222".into()),
                ..Default::default()
            },
            Some(&first),
        );
        assert_eq!(changed.port, 9997);
        assert_eq!(changed.upstream_timeout, 9);
        assert_eq!(changed.nats, NatsChoice::Url("nats://h:4222".into()));
        assert_eq!(
            changes,
            vec![
                "nats: the host's nats-server -> nats://h:4222".to_string(),
                "upstream-timeout: 7 -> 9".to_string()
            ]
        );
    }

    #[test]
    fn kept_settings_round_trip_and_a_broken_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rfaas").join("settings-qa.json");
        assert_eq!(load(&file).unwrap(), None);
        let kept = Kept {
            port: 1234,
            otlp_endpoint: Some("http://host.docker.internal:4317".into()),
            nats: NatsChoice::Image("nats:2.10".into()),
            ..Default::default()
        };
        save(&file, &kept).unwrap();
        assert_eq!(load(&file).unwrap(), Some(kept));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Values missing from the file take their defaults.
        std::fs::write(&file, r#"{"port": 4321}"#).unwrap();
        let partial = load(&file).unwrap().unwrap();
        assert_eq!((partial.port, partial.max_headers), (4321, 100));

        std::fs::write(&file, "{not json").unwrap();
        let e = load(&file).unwrap_err().to_string();
        assert!(
            e.contains("settings-qa.json") && e.contains("--defaults"),
            "{e}"
        );
    }

    #[test]
    fn only_loopback_binds_are_quiet() {
        for quiet in ["127.0.0.1", "127.0.0.2", "::1"] {
            assert_eq!(bind_warning(quiet.parse().unwrap(), 9999), None, "{quiet}");
        }
        for loud in ["0.0.0.0", "::", "192.168.1.10"] {
            let w = bind_warning(loud.parse().unwrap(), 9999).expect(loud);
            assert!(w.starts_with("warning: --bind"), "{w}");
            assert!(
                w.contains("/system and /store") && w.contains("token"),
                "{w}"
            );
        }
    }

    #[test]
    fn otlp_endpoints_must_be_reachable_urls() {
        for ok in [
            "http://host.docker.internal:4317",
            "https://collector.example.com",
            "http://10.0.0.5:4317/",
        ] {
            assert!(check_otlp_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "host.docker.internal:4317",
            "grpc://c:4317",
            "http://",
            "http://localhost:4317",
            "http://127.0.0.1:4317",
        ] {
            let e = check_otlp_endpoint(bad).expect_err(bad).to_string();
            assert!(
                e.contains("--otlp-endpoint") && e.contains("host.docker.internal"),
                "{e}"
            );
        }
    }
}
