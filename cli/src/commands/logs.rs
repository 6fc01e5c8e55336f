//! `proxyCli logs <name> [-f] [--tail N]`: a function's logs, from all its replicas.
//!
//! It tells apart a function that is not deployed (the gateway has no route and no container
//! carries its label), one that is deployed but down (no replica runs: the logs its stopped
//! replicas kept are shown, with how to start it), and a platform that is not running. With more
//! than one replica, each line starts with the replica it came from, and the lines are merged in
//! time order. `-f` follows the running replicas and keeps following through a redeploy or a
//! restart: a replica that appears is followed from its first line, until the function is removed.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use futures_util::StreamExt;
use rfa_engine::ContainerSummary;
use tokio::sync::mpsc;

use crate::functions::container_name;
use crate::gateway::Gateway;
use crate::instance::{Instance, LABEL_DEPLOYMENT, LABEL_FUNCTION, Role};
use crate::platform::{self, instance_flag};
use rfa_engine::{Engine, LogRequest};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function, as named in its deploy file (see `proxyCli details`).
    pub name: String,
    /// Keep printing new lines, from every replica, also through redeploys (Ctrl-C stops).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (of each replica when following).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

/// How often `-f` looks for replicas that appeared or went.
const POLL: Duration = Duration::from_millis(500);

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let engine = Engine::connect().await?;
    let name = &args.name;
    let flag = instance_flag(instance);
    let containers = replicas(&engine, instance, name).await?;

    let proxy = engine.inspect(&instance.proxy()).await?;
    let proxy_running = proxy
        .as_ref()
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running)
        .unwrap_or(false);
    let mut wanted = None;
    if !proxy_running {
        let why = format!(
            "the rfaas platform is not running ({} {})",
            instance.proxy(),
            if proxy.is_some() {
                "is stopped"
            } else {
                "does not exist"
            }
        );
        if containers.is_empty() {
            bail!(
                "{why}, so no function runs and '{name}' has no logs: start it with \
                 `proxyCli startFaas{flag}`"
            );
        }
        eprintln!(
            "note: {why}: start it with `proxyCli startFaas{flag}`. Below are the logs the \
             containers of '{name}' kept."
        );
    } else {
        let routes = match routes(&engine, instance).await {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("warning: cannot read the gateway's routes ({e:#}); going by containers");
                None
            }
        };
        let route = routes
            .as_ref()
            .and_then(|r| r.iter().find(|r| &r.name == name));
        wanted = route.map(|r| r.upstreams.len());
        if route.is_none() && containers.is_empty() {
            let deployed: Vec<&str> = routes.iter().flatten().map(|r| r.name.as_str()).collect();
            let listing = if deployed.is_empty() {
                " (none is)".to_string()
            } else if routes.is_some() {
                format!(" (deployed: {})", deployed.join(", "))
            } else {
                String::new()
            };
            bail!(
                "no function named '{name}' is deployed{listing}: check the name with \
                 `proxyCli details{flag}`, or deploy it with `proxyCli deploy{flag} <deploy.json>`"
            );
        }
        if containers.is_empty() {
            bail!(
                "'{name}' is deployed but has no replica (its containers were removed), so it has \
                 no logs: run `proxyCli startFaas{flag}` to restore it, or deploy it again"
            );
        }
    }

    let running: Vec<&ContainerSummary> = containers.iter().filter(|c| is_running(c)).collect();
    if running.is_empty() && proxy_running {
        eprintln!(
            "note: '{name}' is deployed but down (no replica running): its last logs are below. \
             Start it again with `proxyCli startFaas{flag}` (or deploy it again)."
        );
    }
    // Shown now: the running replicas, or, when none runs, what the stopped ones kept.
    let shown: Vec<&ContainerSummary> = if running.is_empty() {
        containers.iter().collect()
    } else {
        running
    };
    let prefixed = shown.len() > 1 || wanted.is_some_and(|n| n > 1);
    if args.follow {
        follow(&engine, instance, name, &shown, prefixed, args.tail).await
    } else {
        print_merged(&engine, &shown, prefixed, args.tail).await
    }
}

/// The function's containers, running or not, in name order.
async fn replicas(
    engine: &Engine,
    instance: &Instance,
    name: &str,
) -> anyhow::Result<Vec<ContainerSummary>> {
    let mut filters = instance.filters(Some(Role::Function));
    if let Some(labels) = filters.get_mut("label") {
        labels.push(format!("{LABEL_FUNCTION}={name}"));
    }
    let mut list = engine.list_containers(filters).await?;
    list.sort_by_key(container_name);
    Ok(list)
}

async fn routes(
    engine: &Engine,
    instance: &Instance,
) -> anyhow::Result<Vec<rfa_wire::route::FunctionRoute>> {
    let url = platform::gateway_url(engine, instance).await?;
    let token = platform::admin_token(instance)?;
    Gateway::new(url, token, platform::instance_flag(instance))?
        .list()
        .await
}

fn is_running(c: &ContainerSummary) -> bool {
    c.state.as_ref().map(|s| s.to_string()).as_deref() == Some("running")
}

/// The replica's name for line prefixes: its container name without the deployment suffix a
/// new replica carries until the roll-out renames it.
fn replica_label(c: &ContainerSummary) -> String {
    let name = container_name(c);
    let deployment = c
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_DEPLOYMENT))
        .map(|d| format!("-{d}"));
    match deployment {
        Some(d) => name.strip_suffix(&d).unwrap_or(&name).to_string(),
        None => name,
    }
}

/// One line of a replica's log.
#[derive(Debug)]
struct Line {
    replica: String,
    stderr: bool,
    text: String,
}

/// Splits a stream of log pieces into lines.
#[derive(Default)]
struct Splitter {
    partial: Vec<u8>,
}

impl Splitter {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let line = &line[..line.len() - 1];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            lines.push(String::from_utf8_lossy(line).into_owned());
        }
        lines
    }

    fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned())
    }
}

/// Writes one line where it came from (stdout or stderr); false once the output is closed
/// (e.g. `| head`).
fn print(line: &Line, prefixed: bool) -> bool {
    let text = if prefixed {
        format!("{} | {}\n", line.replica, line.text)
    } else {
        format!("{}\n", line.text)
    };
    if line.stderr {
        std::io::stderr().write_all(text.as_bytes()).is_ok()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).is_ok() && out.flush().is_ok()
    }
}

/// Every shown replica's log up to now, merged in time order (by the engine's timestamps); the
/// last `tail` lines of that.
async fn print_merged(
    engine: &Engine,
    shown: &[&ContainerSummary],
    prefixed: bool,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    let mut all: Vec<(String, Line)> = Vec::new();
    for c in shown {
        let id = c.id.clone().unwrap_or_else(|| container_name(c));
        let request = LogRequest {
            tail,
            timestamps: true,
            ..Default::default()
        };
        let mut stream = engine.log_stream(&id, request);
        let mut splitter = Splitter::default();
        let replica = replica_label(c);
        let mut add = |raw: String, stderr: bool| {
            let (stamp, text) = split_timestamp(&raw);
            all.push((
                stamp,
                Line {
                    replica: replica.clone(),
                    stderr,
                    text,
                },
            ));
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            for raw in splitter.push(&chunk.bytes) {
                add(raw, chunk.stderr);
            }
        }
        if let Some(raw) = splitter.finish() {
            add(raw, false);
        }
    }
    // Stable: lines of one replica with the same stamp keep their order.
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = tail.map_or(0, |t| all.len().saturating_sub(t));
    for (_, line) in all.iter().skip(skip) {
        if !print(line, prefixed) {
            break;
        }
    }
    Ok(())
}

/// `2024-05-01T12:34:56.5Z text` → (a key that sorts in time order, `text`)
/// ([`rfa_engine::log_stamp_sort_key`]); a line without a stamp → ("", the line).
fn split_timestamp(raw: &str) -> (String, String) {
    match rfa_engine::split_log_stamp(raw) {
        Some((stamp, text)) => (rfa_engine::log_stamp_sort_key(stamp), text.to_string()),
        None => (String::new(), raw.to_string()),
    }
}

enum Event {
    Line(Line),
    /// A followed container's stream ended (it stopped or went).
    Ended(String),
}

/// Follows the shown replicas, and every replica of the function that starts later, until the
/// function has no container left (removed by `proxyCli stop`, or the platform stopped).
async fn follow(
    engine: &Engine,
    instance: &Instance,
    name: &str,
    shown: &[&ContainerSummary],
    prefixed: bool,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    // Containers followed now, and when each one followed before stopped (so that a replica
    // started again is followed from then on, not from its first line once more).
    let mut followed: HashSet<String> = HashSet::new();
    let mut ended: HashMap<String, u64> = HashMap::new();
    let spawn = |c: &ContainerSummary, request: LogRequest| {
        let id = c.id.clone().unwrap_or_else(|| container_name(c));
        let replica = replica_label(c);
        let mut stream = engine.log_stream(&id, request);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut splitter = Splitter::default();
            let mut stderr = false;
            while let Some(Ok(chunk)) = stream.next().await {
                stderr = chunk.stderr;
                for text in splitter.push(&chunk.bytes) {
                    let line = Line {
                        replica: replica.clone(),
                        stderr,
                        text,
                    };
                    if tx.send(Event::Line(line)).await.is_err() {
                        return;
                    }
                }
            }
            if let Some(text) = splitter.finish() {
                let line = Line {
                    replica: replica.clone(),
                    stderr,
                    text,
                };
                let _ = tx.send(Event::Line(line)).await;
            }
            let _ = tx.send(Event::Ended(id)).await;
        });
    };
    for c in shown {
        let running = is_running(c);
        spawn(
            c,
            LogRequest {
                follow: running,
                tail,
                ..Default::default()
            },
        );
        if let Some(id) = &c.id {
            if running {
                followed.insert(id.clone());
            } else {
                // Its kept logs are printed now; if it starts again, follow it from then.
                ended.insert(id.clone(), now());
            }
        }
    }
    let mut tick = tokio::time::interval(POLL);
    let mut empty = 0;
    loop {
        tokio::select! {
            event = rx.recv() => match event {
                Some(Event::Line(line)) => {
                    if !print(&line, prefixed) {
                        return Ok(());
                    }
                }
                Some(Event::Ended(id)) => {
                    if followed.remove(&id) {
                        ended.insert(id, now());
                    }
                }
                None => return Ok(()),
            },
            _ = tick.tick() => {
                let containers = replicas(engine, instance, name).await?;
                if containers.is_empty() {
                    // Twice in a row: a redeploy never leaves the function without a container.
                    empty += 1;
                    if empty >= 2 {
                        break;
                    }
                    continue;
                }
                empty = 0;
                for c in containers.iter().filter(|c| is_running(c)) {
                    let Some(id) = c.id.clone() else { continue };
                    if followed.contains(&id) {
                        continue;
                    }
                    let request = LogRequest {
                        follow: true,
                        since: ended.get(&id).copied(),
                        ..Default::default()
                    };
                    spawn(c, request);
                    followed.insert(id);
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
    // Whatever the replicas wrote before they went.
    drop(tx);
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        if let Event::Line(line) = event
            && !print(&line, prefixed)
        {
            break;
        }
    }
    eprintln!("'{name}' has no replica any more (it was removed): stopped following");
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pieces_into_lines() {
        let mut s = Splitter::default();
        assert_eq!(s.push(b"a\nb"), vec!["a"]);
        assert_eq!(s.push(b"c\r\nd\n\n"), vec!["bc", "d", ""]);
        assert_eq!(s.push(b"e"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("e"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn timestamps_sort_whatever_their_fraction_length() {
        let (a, text) = split_timestamp("2024-05-01T12:34:56.5Z {\"x\":1}");
        let (b, _) = split_timestamp("2024-05-01T12:34:56.123456789Z y");
        let (c, _) = split_timestamp("2024-05-01T12:34:56Z z");
        assert_eq!(text, "{\"x\":1}");
        assert!(c < b && b < a, "{c} {b} {a}");
        assert_eq!(
            split_timestamp("no stamp"),
            (String::new(), "no stamp".into())
        );
    }
}
