//! `proxyCli details [--json]`: the deployed functions, from the gateway's routes and the
//! engine's containers: desired and ready replicas (numbers in `--json`), power (running,
//! paused, stopped), the scale block, uptime, the async queue, and the current and previous
//! version (what `proxyCli rollback` goes back to).

use std::time::{SystemTime, UNIX_EPOCH};

use rfa_engine::ContainerSummary;
use rfa_wire::route::{FunctionRoute, Power, ScaleSpec};
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
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    kind: String,
    url: String,
    /// `ready`, `degraded` (fewer ready than desired), `down` (none ready), `paused` or
    /// `stopped` (idle: the next call wakes it), `unrouted` (containers, no route).
    status: String,
    replicas: Replicas,
    /// Whether the replicas run, are paused or are stopped (the route's `power`).
    power: Power,
    /// The deploy file's scale block, as the route keeps it (absent: fixed replicas).
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<ScaleSpec>,
    image: String,
    /// When the current version was deployed (or rolled back to).
    #[serde(skip_serializing_if = "Option::is_none")]
    deployed_at: Option<String>,
    /// The version `proxyCli rollback` would run again.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Version>,
    /// Since the longest-running running replica started; `-` when none runs.
    uptime: String,
    /// The same in seconds; `null` when no replica runs.
    uptime_seconds: Option<u64>,
    /// Async calls waiting for a replica.
    queued: Option<u64>,
    /// Async calls a replica is running.
    inflight: Option<u64>,
    /// On Swarm: the function's running tasks per node (hostname → count).
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<std::collections::BTreeMap<String, u32>>,
}

/// A version of a function: its image and when it was deployed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Version {
    image: String,
    deployed_at: String,
}

/// A function's replicas as numbers: how many it should have, and how many run now.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
struct Replicas {
    /// The route's count (`run.replicas`, which `deploy`, `scale` and the scaler set), or the
    /// containers there are when there is no route.
    desired: u32,
    /// Replicas running now (a paused or stopped one is not ready).
    ready: u32,
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
    if p.swarm {
        let nodes = p.engine.nodes().await?;
        for route in &routes {
            let tasks = crate::swarm::tasks(&p.engine, &p.instance, &route.name, &nodes).await?;
            let mut per_node = std::collections::BTreeMap::new();
            let mut since = Vec::new();
            for (task, node) in tasks.iter().filter(|(t, _)| t.is_running()) {
                *per_node.entry(node.clone()).or_insert(0u32) += 1;
                since.extend(unix_seconds(&task.since));
            }
            let uptime = since.into_iter().min().map(|t| now.saturating_sub(t));
            let mut r = row(route.name.clone(), Some(route), &[], &p.gateway.url, uptime);
            r.replicas.ready = per_node.values().sum();
            r.status = status_of(true, r.power, r.replicas.desired, r.replicas.ready).to_string();
            r.nodes = Some(per_node);
            rows.push(r);
        }
        names.clear();
    }
    for name in names {
        let route = routes.iter().find(|r| r.name == name);
        let replicas = containers.remove(&name).unwrap_or_default();
        let uptime_seconds = uptime(&p, &replicas, now).await;
        rows.push(row(name, route, &replicas, &p.gateway.url, uptime_seconds));
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
        "POWER",
        "IMAGE",
        "UPTIME",
        "QUEUED/RUNNING",
        "PREVIOUS",
    ];
    let table: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.clone(),
                r.url.clone(),
                r.status.clone(),
                replicas_cell(r),
                r.power.to_string(),
                r.image.clone(),
                r.uptime.clone(),
                match (r.queued, r.inflight) {
                    (Some(q), Some(i)) => format!("{q}/{i}"),
                    _ => "-".to_string(),
                },
                r.previous
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |v| v.image.clone()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..10)
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
    if p.swarm {
        // One line per function's tasks would not fit the table's columns: listed under it.
        for r in &rows {
            if let Some(nodes) = &r.nodes {
                let per: Vec<String> = nodes.iter().map(|(n, c)| format!("{n}: {c}")).collect();
                println!(
                    "{}: tasks per node: {}",
                    r.name,
                    if per.is_empty() {
                        "none running".to_string()
                    } else {
                        per.join(", ")
                    }
                );
            }
        }
    }
    Ok(())
}

/// One function's row, from its route (if any) and its containers.
fn row(
    name: String,
    route: Option<&FunctionRoute>,
    replicas: &[ContainerSummary],
    gateway_url: &str,
    uptime_seconds: Option<u64>,
) -> Row {
    // Ready: running and named by the route (taking calls). A container of another deployment
    // (a blue/green switch under way, a replica draining) is not counted.
    let ready = replicas
        .iter()
        .filter(|c| {
            is_running(c)
                && route.is_none_or(|r| r.discover.is_some() || functions::is_routed(r, c))
        })
        .count();
    let ready = u32::try_from(ready).unwrap_or(u32::MAX);
    let desired = match route {
        Some(r) => r
            .run
            .as_ref()
            .map(|run| run.replicas)
            .unwrap_or_else(|| u32::try_from(r.upstreams.len()).unwrap_or(u32::MAX)),
        None => u32::try_from(replicas.len()).unwrap_or(u32::MAX),
    };
    let power = match route {
        Some(r) => r.power,
        None => power_of(replicas),
    };
    let status = status_of(route.is_some(), power, desired, ready);
    Row {
        kind: route
            .map(|r| r.kind)
            .or_else(|| replicas.first().map(functions::kind_of))
            .unwrap_or_default()
            .to_string(),
        url: format!("{gateway_url}/functions/{name}"),
        status: status.to_string(),
        replicas: Replicas { desired, ready },
        power,
        scale: route.and_then(|r| r.run.as_ref()).and_then(|run| run.scale),
        image: route
            .map(|r| r.image.clone())
            .or_else(|| replicas.first().and_then(|c| c.image.clone()))
            .unwrap_or_default(),
        deployed_at: route.map(|r| r.deployed_at.clone()),
        previous: route.and_then(|r| r.previous.as_ref()).map(|v| Version {
            image: v.image.clone(),
            deployed_at: v.deployed_at.clone(),
        }),
        uptime: uptime_seconds.map(human).unwrap_or_else(|| "-".into()),
        uptime_seconds,
        queued: route.and_then(|r| r.queue).map(|q| q.pending),
        inflight: route.and_then(|r| r.queue).map(|q| q.inflight),
        nodes: None,
        name,
    }
}

fn status_of(routed: bool, power: Power, desired: u32, ready: u32) -> &'static str {
    match (routed, power) {
        (false, _) => "unrouted",
        (true, Power::Paused) => "paused",
        (true, Power::Stopped) => "stopped",
        (true, Power::Running) if desired == 0 => "stopped",
        (true, Power::Running) if ready == 0 => "down",
        (true, Power::Running) if ready < desired => "degraded",
        (true, Power::Running) => "ready",
    }
}

/// The table's REPLICAS cell: ready/desired, and the scale block's bounds when there is one
/// (`1/2 (0-8)`).
fn replicas_cell(r: &Row) -> String {
    let counts = format!("{}/{}", r.replicas.ready, r.replicas.desired);
    match r.scale {
        Some(s) => format!("{counts} ({}-{})", s.min, s.max),
        None => counts,
    }
}

/// The power of containers no route speaks for: running if one runs, else paused if one is.
fn power_of(replicas: &[ContainerSummary]) -> Power {
    if replicas.iter().any(is_running) {
        Power::Running
    } else if replicas
        .iter()
        .any(|c| state(c).as_deref() == Some("paused"))
    {
        Power::Paused
    } else {
        Power::Stopped
    }
}

fn is_running(c: &ContainerSummary) -> bool {
    state(c).as_deref() == Some("running")
}

/// The engine's word for a container's state (`running`, `paused`, `exited`, …).
fn state(c: &ContainerSummary) -> Option<String> {
    c.state.as_ref().map(|s| s.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use rfa_wire::route::{FunctionKind, QueueStats, RunSpec};
    use serde_json::json;

    /// A container as the engine lists it, in `state`, the replica the route calls `a:6000`.
    fn container(state: &str) -> ContainerSummary {
        container_at(state, "a:6000")
    }

    fn container_at(state: &str, upstream: &str) -> ContainerSummary {
        serde_json::from_value(json!({
            "State": state,
            "Image": "rfa-fn-echo:1",
            "Labels": {crate::instance::LABEL_UPSTREAM: upstream},
        }))
        .unwrap()
    }

    const RUNNING: &str = "running";
    const PAUSED: &str = "paused";
    const EXITED: &str = "exited";

    fn route(replicas: u32, power: Power, scale: Option<ScaleSpec>) -> FunctionRoute {
        FunctionRoute {
            name: "echo".into(),
            kind: FunctionKind::Async,
            upstreams: vec!["a:6000".into(), "b:6000".into()],
            image: "rfa-fn-echo:1".into(),
            deployed_at: "2025-01-01T00:00:00Z".into(),
            queue: Some(QueueStats {
                pending: 3,
                inflight: 1,
            }),
            run: Some(RunSpec {
                replicas,
                env: vec![],
                memory_bytes: 128 << 20,
                nano_cpus: 1_000_000_000,
                pids: 256,
                max_inflight: 8,
                scale,
            }),
            power,
            discover: None,
            previous: None,
        }
    }

    fn json_of(
        route: Option<&FunctionRoute>,
        containers: &[ContainerSummary],
    ) -> serde_json::Value {
        let r = row(
            "echo".into(),
            route,
            containers,
            "http://127.0.0.1:9999",
            None,
        );
        serde_json::to_value(&r).unwrap()
    }

    #[test]
    fn json_gives_numbers_power_and_the_scale_block() {
        let scale = ScaleSpec {
            min: 0,
            max: 8,
            target_inflight: 4,
            idle_pause_ms: Some(60_000),
            idle_stop_ms: None,
            scale_in_delay_ms: None,
        };
        let paused = route(2, Power::Paused, Some(scale));
        let v = json_of(Some(&paused), &[container(PAUSED), container(PAUSED)]);
        assert_eq!(
            v,
            json!({
                "name": "echo",
                "kind": "async",
                "url": "http://127.0.0.1:9999/functions/echo",
                "status": "paused",
                "replicas": {"desired": 2, "ready": 0},
                "power": "paused",
                "scale": {"min": 0, "max": 8, "targetInflight": 4, "idlePauseMs": 60000},
                "image": "rfa-fn-echo:1",
                "deployedAt": "2025-01-01T00:00:00Z",
                "uptime": "-",
                "uptimeSeconds": null,
                "queued": 3,
                "inflight": 1,
            })
        );
        // Fixed replicas: no scale key; status from the ready count.
        let fixed = route(2, Power::Running, None);
        for (containers, ready, status) in [
            (
                vec![container(RUNNING), container_at(RUNNING, "b:6000")],
                2,
                "ready",
            ),
            // A roll-out under way: the new deployment's replica runs, the route does not name
            // it yet. It is not counted.
            (
                vec![
                    container(RUNNING),
                    container_at(RUNNING, "b:6000"),
                    container_at(RUNNING, "next:6000"),
                ],
                2,
                "ready",
            ),
            (
                vec![container(RUNNING), container_at(RUNNING, "next:6000")],
                1,
                "degraded",
            ),
            (vec![container(RUNNING), container(EXITED)], 1, "degraded"),
            (vec![container(EXITED)], 0, "down"),
        ] {
            let v = json_of(Some(&fixed), &containers);
            assert_eq!(v["replicas"], json!({"desired": 2, "ready": ready}), "{v}");
            assert_eq!(
                (v["status"].as_str(), v["power"].as_str()),
                (Some(status), Some("running"))
            );
            assert!(v.get("scale").is_none(), "{v}");
        }
        let stopped = route(1, Power::Stopped, Some(scale));
        let v = json_of(Some(&stopped), &[container(EXITED)]);
        assert_eq!(
            (v["status"].as_str(), v["power"].as_str()),
            (Some("stopped"), Some("stopped"))
        );
        assert_eq!(v["replicas"], json!({"desired": 1, "ready": 0}));
        // Containers without a route: desired is what there is.
        let v = json_of(None, &[container(PAUSED)]);
        assert_eq!(v["status"], "unrouted");
        assert_eq!(v["power"], "paused");
        assert_eq!(v["replicas"], json!({"desired": 1, "ready": 0}));
        // A route kept without its RunSpec: desired from its upstreams.
        let mut old = route(5, Power::Running, None);
        old.run = None;
        assert_eq!(json_of(Some(&old), &[])["replicas"]["desired"], 2);
    }

    #[test]
    fn the_table_shows_ready_over_desired_and_the_bounds() {
        let scale = ScaleSpec {
            min: 1,
            max: 4,
            target_inflight: 4,
            idle_pause_ms: None,
            idle_stop_ms: None,
            scale_in_delay_ms: None,
        };
        let r = route(2, Power::Running, Some(scale));
        let with = row("echo".into(), Some(&r), &[container(RUNNING)], "u", None);
        assert_eq!(replicas_cell(&with), "1/2 (1-4)");
        let r = route(2, Power::Running, None);
        let without = row("echo".into(), Some(&r), &[container(RUNNING)], "u", None);
        assert_eq!(replicas_cell(&without), "1/2");
    }
}
