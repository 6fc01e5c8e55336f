//! `proxyCli details [--json]`: the deployed functions, from the gateway's routes and the
//! engine's containers.

use std::time::{SystemTime, UNIX_EPOCH};

use rfa_engine::ContainerSummary;
use rfa_wire::time::unix_seconds;
use serde::Serialize;

use crate::functions::{self, Platform};
use crate::instance::Instance;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    kind: String,
    url: String,
    status: String,
    replicas: String,
    image: String,
    /// Since the longest-running running replica started; `-` when none runs.
    uptime: String,
    /// The same in seconds; `null` when no replica runs.
    #[serde(rename = "uptimeSeconds")]
    uptime_seconds: Option<u64>,
    /// Async calls waiting for a replica.
    queued: Option<u64>,
    /// Async calls a replica is running.
    inflight: Option<u64>,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let p = Platform::connect(instance).await?;
    let routes = p.gateway.list().await?;
    let mut containers = functions::by_function(p.all_replicas().await?);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut names: Vec<String> = routes.iter().map(|r| r.name.clone()).collect();
    for name in containers.keys() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort();
    let mut rows = Vec::new();
    for name in names {
        let route = routes.iter().find(|r| r.name == name);
        let replicas = containers.remove(&name).unwrap_or_default();
        let running = replicas.iter().filter(|c| is_running(c)).count();
        let wanted = route.map(|r| r.upstreams.len()).unwrap_or(replicas.len());
        let status = match (route.is_some(), running) {
            (false, _) => "unrouted",
            (true, 0) => "down",
            (true, n) if n < wanted => "degraded",
            _ => "ready",
        };
        let uptime_seconds = uptime(&p, &replicas, now).await;
        rows.push(Row {
            kind: route
                .map(|r| r.kind)
                .or_else(|| replicas.first().map(functions::kind_of))
                .unwrap_or_default()
                .to_string(),
            url: format!("{}/functions/{name}", p.gateway.url),
            status: status.to_string(),
            replicas: format!("{running}/{wanted}"),
            image: route
                .map(|r| r.image.clone())
                .or_else(|| replicas.first().and_then(|c| c.image.clone()))
                .unwrap_or_default(),
            uptime: uptime_seconds.map(human).unwrap_or_else(|| "-".into()),
            uptime_seconds,
            queued: route.and_then(|r| r.queue).map(|q| q.pending),
            inflight: route.and_then(|r| r.queue).map(|q| q.inflight),
            name,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no functions deployed (deploy some with `proxyCli deploy deploy.json`)");
        return Ok(());
    }
    let header = [
        "NAME",
        "KIND",
        "URL",
        "STATUS",
        "REPLICAS",
        "IMAGE",
        "UPTIME",
        "QUEUED/RUNNING",
    ];
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.url.clone(),
                r.status.clone(),
                r.replicas.clone(),
                r.image.clone(),
                r.uptime.clone(),
                match (r.queued, r.inflight) {
                    (Some(q), Some(i)) => format!("{q}/{i}"),
                    _ => "-".to_string(),
                },
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            table
                .iter()
                .map(|row| row[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let print = |cells: Vec<&str>| {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print(header.to_vec());
    for row in &table {
        print(row.iter().map(String::as_str).collect());
    }
    Ok(())
}

fn is_running(c: &ContainerSummary) -> bool {
    c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running")
}

/// How long the function has been up: since the longest-running of its running replicas
/// started (`State.StartedAt`, so a replica restarted or started again counts from then, not
/// from its creation). `None` when no replica runs: a function that is down has no uptime.
async fn uptime(p: &Platform, replicas: &[ContainerSummary], now: u64) -> Option<u64> {
    let mut started = Vec::new();
    for c in replicas.iter().filter(|c| is_running(c)) {
        let Some(id) = c.id.as_deref() else { continue };
        // A replica that vanished or stopped since the listing simply does not count.
        let Ok(Some(info)) = p.engine.inspect(id).await else {
            continue;
        };
        let state = info.state.unwrap_or_default();
        if state.running != Some(true) {
            continue;
        }
        if let Some(t) = state.started_at.as_deref().and_then(unix_seconds) {
            started.push(t);
        }
    }
    started.into_iter().min().map(|t| now.saturating_sub(t))
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}
