//! A platform instance on Docker Swarm for the end-to-end tests: a swarm of [`InnerEngine`]s
//! (never the host engine's mode), `proxyCli` aimed at its manager through `DOCKER_HOST`, and
//! the gateway reached at the manager's address.

use std::time::Duration;

use crate::inner_engine::{self, InnerEngine};
use crate::{Platform, Receiver, Run};

/// One test's swarm and the instance on it. Drops the instance's local files, then the engines
/// (and with them everything the platform made).
pub struct SwarmPlatform {
    pub p: Platform,
    pub manager: InnerEngine,
    pub workers: Vec<InnerEngine>,
}

impl SwarmPlatform {
    /// A swarm of a manager and `workers` workers, the engines started side by side; `None` when
    /// no inner engine can run here and `RFAAS_ALLOW_NO_INNER_ENGINE=1` says to skip (see
    /// [`inner_engine::or_skip`]).
    pub fn new(test: &str, workers: usize) -> Option<SwarmPlatform> {
        let started = std::thread::scope(|s| {
            let manager = s.spawn(|| InnerEngine::start("mgr"));
            let others: Vec<_> = (0..workers)
                .map(|k| s.spawn(move || InnerEngine::start(&format!("wrk{k}"))))
                .collect();
            let manager = manager.join().expect("manager thread");
            let others: Vec<_> = others
                .into_iter()
                .map(|h| h.join().expect("worker thread"))
                .collect();
            let manager = manager?;
            let workers = others.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
            manager.swarm_init()?;
            for w in &workers {
                w.swarm_join(&manager)?;
            }
            anyhow::Ok((manager, workers))
        });
        let (manager, workers) = inner_engine::or_skip(test, started)?;
        Some(SwarmPlatform {
            p: Platform::new(test),
            manager,
            workers,
        })
    }

    /// `proxyCli startFaas --swarm --port <port> --engine-socket-gid <gid> <extra>` against the
    /// manager: the platform with its scaler.
    pub fn start_faas(&mut self, extra: &[&str]) -> Run {
        let gid = self
            .manager
            .socket_gid()
            .expect("the manager's socket group")
            .to_string();
        let mut args = vec!["--engine-socket-gid", gid.as_str()];
        args.extend_from_slice(extra);
        self.start_faas_without_scaler(&args)
    }

    /// `proxyCli startFaas --swarm --port <port> <extra>` against the manager: without
    /// `--engine-socket-gid` the CLI cannot tell the group of a remote engine's socket, so the
    /// platform runs without its scaler.
    pub fn start_faas_without_scaler(&mut self, extra: &[&str]) -> Run {
        let host = self.manager.docker_host();
        let mut args = vec!["--swarm"];
        args.extend_from_slice(extra);
        self.p
            .start_faas_env(&args, &[("DOCKER_HOST", host.as_str())])
    }

    /// `proxyCli <args>` for this instance, against the manager.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_on(&self.manager, args)
    }

    /// `proxyCli <args>` for this instance, against `engine`.
    pub fn cli_on(&self, engine: &InnerEngine, args: &[&str]) -> Run {
        self.p
            .cli_env(args, &[("DOCKER_HOST", engine.docker_host().as_str())])
    }

    /// The gateway's URL for `path`: the manager's address and the instance's port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.manager.ip(), self.p.port)
    }

    /// `<base>-<instance>`.
    pub fn object(&self, base: &str) -> String {
        self.p.object(base)
    }

    /// The host's address on the inner engines' network: what a function task reaches the host
    /// at (a [`Receiver`] listens on every address).
    pub fn host_ip(&self) -> String {
        let out = crate::docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
            self.manager.name(),
        ]);
        out.trim().to_string()
    }

    /// A callback URL for `receiver` that function tasks can reach.
    pub fn callback_url(&self, receiver: &Receiver, path: &str) -> String {
        format!("http://{}:{}{path}", self.host_ip(), receiver.port)
    }

    /// The running tasks of function `name` per node hostname, as `details --json` says.
    pub fn tasks_per_node(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        let run = self.cli(&["details", "--json"]).ok();
        let rows: serde_json::Value = serde_json::from_str(&run.stdout).expect("details JSON");
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == name))
            .and_then(|r| r["nodes"].as_object().cloned())
            .unwrap_or_default()
    }
}

/// How long the swarm tests give a deploy or scale to settle.
pub const SETTLE: Duration = Duration::from_secs(90);
