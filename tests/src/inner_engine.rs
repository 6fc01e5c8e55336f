//! Docker engines of their own, each in a container of the host engine, for tests that need
//! Docker Swarm. Entering or leaving swarm mode on the host engine broke Docker's embedded DNS on
//! its existing bridge networks, so tests never switch the host engine's mode: they start
//! [`InnerEngine`]s and make a swarm of those.
//!
//! - The image, `rfa-test-dockerd:<hash>`, is made once per process FROM scratch by `docker
//!   import` of a rootfs that `tests/inner-engine/build.sh` assembles from the host's own dockerd,
//!   containerd, runc, iptables and their libraries (no registry is needed). `<hash>` covers the
//!   script and every file that goes in, so a later run reuses the image while nothing changed.
//! - Each engine runs in a container labelled `io.rfaas.test=inner-engine` on a bridge network
//!   this process owns, with its own `/var/lib/docker` on a tmpfs and its own bridge subnet, and
//!   answers the Docker API on `tcp://<ip>:2375` (no TLS: the network is the harness's own).
//! - Dropping an [`InnerEngine`] removes its container (and the network with the last one), also
//!   when the test panics. Leftovers of killed runs older than two hours are removed by the first
//!   start of a later run.
//!
//! A machine that cannot run a second engine makes [`InnerEngine::start`] return an error that
//! says why; [`or_skip`] turns it into a test failure, or into a loud `SKIPPED` line when
//! `RFAAS_ALLOW_NO_INNER_ENGINE=1` is set. Never a silent pass.
//!
//! Over 600 lines on purpose: the whole life of an inner engine (image, start, swarm, images,
//! clean-up) in one place, so that no test reaches the host engine by mistake.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// The label on every container, network and image the harness makes.
pub const LABEL: &str = "io.rfaas.test=inner-engine";
/// Unix time of creation, read by the stale-leftover sweep.
const CREATED_LABEL: &str = "io.rfaas.test.created";
/// The repository of the inner engine's image; the tag is a content hash.
pub const IMAGE_REPO: &str = "rfa-test-dockerd";
/// Set to `1` to let tests skip (loudly) instead of failing where no inner engine can start.
pub const ALLOW_NO_INNER_ENGINE: &str = "RFAAS_ALLOW_NO_INNER_ENGINE";
/// Containers and networks of the harness older than this are leftovers of a killed run.
pub const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);
/// How long an inner engine may take to answer `GET /_ping` (1–3 s is usual).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one docker CLI command.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for an image to be built, saved or loaded.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(180);
const API_PORT: u16 = 2375;
const SWARM_PORT: u16 = 2377;

/// One Docker engine running in a container of the host engine. See the module documentation.
pub struct InnerEngine {
    /// Container name, also its hostname and so its swarm node name.
    name: String,
    container_id: String,
    ip: String,
    engine_id: String,
    /// The subnet of the engine's own address pool (its user bridges come from it).
    pool: String,
    /// Whether the host has a route to `pool` through this engine ([`InnerEngine::route_bridges`]).
    routed: bool,
}

impl InnerEngine {
    /// Starts an inner engine named after `name` (lowercase letters, digits and `-`) and waits
    /// until it answers the Docker API. Errors say why the engine could not start, with the
    /// container's logs when it started but never answered.
    pub fn start(name: &str) -> Result<InnerEngine> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("inner engine name {name:?}: use lowercase letters, digits and '-'");
        }
        let started = Instant::now();
        sweep_stale_once();
        let image = image().context("cannot build the inner engine's image")?;
        let network = acquire_network().context("cannot create the inner engines' network")?;
        let n = ENGINES.fetch_add(1, Ordering::Relaxed);
        let container = format!("rfa-inner-{name}-{}-{n}", run_id());
        let created = format!("{CREATED_LABEL}={}", unix_now());
        let bip = bridge_ip(n);
        let pool = address_pool(n);
        #[rustfmt::skip]
        let args = [
            "run", "-d", "--name", &container, "--hostname", &container,
            "--network", &network, "--label", LABEL, "--label", &created,
            // `--privileged` fails on machines whose bounding set lacks CAP_SYS_RESOURCE.
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            // Without seccomp=unconfined the inner containers fail on `keyctl`.
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
            // The inner engine's cgroups nest under this container's: its memory figure
            // includes the inner containers.
            "--cgroupns", "private",
            &image, "--bip", &bip,
            // Networks the inner engine makes itself (docker_gwbridge when it joins a swarm,
            // user bridges) come from here, not from 172.17.0.0/16 and the host's other
            // default ranges.
            "--default-address-pool", &pool,
        ];
        let container_id = match run(host().args(args), CLI_TIMEOUT) {
            Ok(id) => id.trim().to_string(),
            Err(e) => {
                // `docker run` can create the container and then fail to start it.
                let _ = run(host().args(["rm", "-f", "-v", &container]), CLI_TIMEOUT);
                release_network();
                return Err(e.context(format!("cannot run the inner engine {container}")));
            }
        };
        // From here on, Drop removes the container and releases the network.
        let mut engine = InnerEngine {
            name: container,
            container_id,
            ip: String::new(),
            engine_id: String::new(),
            pool: pool_subnet(n),
            routed: false,
        };
        let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
        engine.ip = run(
            host().args(["inspect", "-f", &format, &engine.container_id]),
            CLI_TIMEOUT,
        )?
        .trim()
        .to_string();
        if engine.ip.is_empty() {
            bail!(
                "the inner engine {} has no address on {network}",
                engine.name
            );
        }
        engine.wait_ready(READY_TIMEOUT)?;
        engine.engine_id = engine.info("{{.ID}}")?;
        let host_id = host_engine_id()?;
        if engine.engine_id.is_empty() || engine.engine_id == host_id {
            bail!(
                "{} answered with engine ID {:?} (host engine: {host_id:?}): not an engine of \
                 its own",
                engine.docker_host(),
                engine.engine_id
            );
        }
        eprintln!(
            "inner engine {} ready on {} in {:.1} s",
            engine.name,
            engine.docker_host(),
            started.elapsed().as_secs_f64()
        );
        Ok(engine)
    }

    /// Container name, hostname and swarm node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine's address on the harness's network (the host reaches it directly).
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// Lets the host reach the containers on this engine's own bridge networks at their
    /// addresses, as it reaches its own engine's (what `proxyCli` does for a bridge-mode platform
    /// on this engine): a host route to the engine's address pool through its container, and
    /// forwarding to them allowed in the engine (`DOCKER-USER`). The route goes with the engine.
    pub fn route_bridges(&mut self) -> Result<()> {
        run(
            self.exec()
                .args(["iptables", "-I", "DOCKER-USER", "-j", "ACCEPT"]),
            CLI_TIMEOUT,
        )
        .context("cannot allow forwarding in the inner engine")?;
        run(
            Command::new("ip").args(["route", "replace", &self.pool, "via", &self.ip]),
            CLI_TIMEOUT,
        )
        .context("cannot add a host route to the inner engine's networks")?;
        self.routed = true;
        Ok(())
    }

    /// `docker exec <this engine's container>` on the host engine.
    fn exec(&self) -> Command {
        let mut cmd = host();
        cmd.args(["exec", &self.container_id]);
        cmd
    }

    /// `tcp://<ip>:2375`.
    pub fn docker_host(&self) -> String {
        format!("tcp://{}:{API_PORT}", self.ip)
    }

    /// The engine's own ID (`docker info`), never the host engine's.
    pub fn engine_id(&self) -> &str {
        &self.engine_id
    }

    /// The host's docker CLI aimed at this engine: `DOCKER_HOST` set, and every variable that
    /// could send it elsewhere (a context, TLS settings) removed.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.docker_host())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_TLS");
        cmd
    }

    /// Runs `docker <args>` against this engine; its stdout, or an error with its stderr.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        self.docker_within(args, CLI_TIMEOUT)
    }

    /// [`InnerEngine::docker`] with a timeout of its own.
    pub fn docker_within(&self, args: &[&str], timeout: Duration) -> Result<String> {
        run(self.command().args(args), timeout)
    }

    /// `docker info --format <format>` through this engine, trimmed.
    pub fn info(&self, format: &str) -> Result<String> {
        Ok(self
            .docker(&["info", "--format", format])?
            .trim()
            .to_string())
    }

    /// Makes this engine a single-node swarm manager, advertising its address.
    pub fn swarm_init(&self) -> Result<()> {
        self.ensure_is_self()?;
        let listen = format!("{}:{SWARM_PORT}", self.ip);
        self.docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            &self.ip,
            "--listen-addr",
            &listen,
        ])
        .with_context(|| format!("swarm init on {}", self.name))?;
        let state = self.info("{{.Swarm.LocalNodeState}}")?;
        if state != "active" {
            bail!("after swarm init {} is {state:?}, not active", self.name);
        }
        Ok(())
    }

    /// Joins `manager`'s swarm as a worker and waits until the manager lists this node Ready.
    pub fn swarm_join(&self, manager: &InnerEngine) -> Result<()> {
        self.ensure_is_self()?;
        manager.ensure_is_self()?;
        let token = manager
            .docker(&["swarm", "join-token", "-q", "worker"])
            .with_context(|| format!("worker join token from {}", manager.name))?;
        let listen = format!("{}:{SWARM_PORT}", self.ip);
        let remote = format!("{}:{SWARM_PORT}", manager.ip);
        self.docker(&[
            "swarm",
            "join",
            "--advertise-addr",
            &self.ip,
            "--listen-addr",
            &listen,
            "--token",
            token.trim(),
            &remote,
        ])
        .with_context(|| format!("{} joining {}'s swarm", self.name, manager.name))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = manager.nodes()?;
            if nodes
                .iter()
                .any(|n| n.hostname == self.name && n.status == "Ready")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} joined but {} does not list it Ready after 30 s: {nodes:?}",
                    self.name,
                    manager.name
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The swarm's nodes as this engine (a manager) sees them.
    pub fn nodes(&self) -> Result<Vec<Node>> {
        let out = self.docker(&[
            "node",
            "ls",
            "--format",
            "{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}",
        ])?;
        Ok(out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut f = l.split('\t').map(str::to_string);
                Node {
                    hostname: f.next().unwrap_or_default(),
                    status: f.next().unwrap_or_default(),
                    availability: f.next().unwrap_or_default(),
                    manager_status: f.next().unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Copies the host engine's image `tag` into this engine (`docker save | docker load`):
    /// swarm services here use local images, and each node needs its own copy.
    pub fn load_image(&self, tag: &str) -> Result<()> {
        let mut save = host();
        save.args(["save", tag]);
        let mut load = self.command();
        load.args(["load", "--quiet"]);
        pipe(&mut save, &mut load, IMAGE_TIMEOUT)
            .with_context(|| format!("loading {tag} into {}", self.name))?;
        self.docker(&["image", "inspect", "--format", "{{.Id}}", tag])
            .with_context(|| format!("{tag} is not in {} after docker load", self.name))?;
        Ok(())
    }

    /// The group id of this engine's socket (`/var/run/docker.sock` inside its container), read
    /// through `/proc/<pid>/root` on the host: what `startFaas --engine-socket-gid` needs to give
    /// the scaler the socket (the harness runs as root).
    pub fn socket_gid(&self) -> Result<u32> {
        use std::os::unix::fs::MetadataExt;
        let pid = run(
            host().args(["inspect", "-f", "{{.State.Pid}}", &self.container_id]),
            CLI_TIMEOUT,
        )?;
        let path = format!("/proc/{}/root/var/run/docker.sock", pid.trim());
        let meta = std::fs::metadata(&path).with_context(|| format!("cannot stat {path}"))?;
        Ok(meta.gid())
    }

    /// The container's memory use as `docker stats` shows it (inner containers included).
    pub fn memory_usage(&self) -> Result<String> {
        Ok(run(
            host().args([
                "stats",
                "--no-stream",
                "--format",
                "{{.MemUsage}}",
                &self.container_id,
            ]),
            CLI_TIMEOUT,
        )?
        .trim()
        .to_string())
    }

    /// The last `lines` lines of the engine's log, without the gRPC chatter.
    pub fn logs(&self, lines: usize) -> String {
        let out = host()
            .args(["logs", "--tail", "400", &self.container_id])
            .output();
        let Ok(out) = out else {
            return "(docker logs failed)".into();
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("module=grpc"))
            .collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `GET /_ping` until it answers 200, the container exits, or `timeout` passes.
    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let addr: SocketAddr = format!("{}:{API_PORT}", self.ip)
            .parse()
            .with_context(|| format!("address of {}: {:?}", self.name, self.ip))?;
        let deadline = Instant::now() + timeout;
        let mut next_check = Instant::now() + Duration::from_secs(1);
        loop {
            let last = match ping(addr) {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= next_check {
                next_check += Duration::from_secs(1);
                let state = run(
                    host().args([
                        "inspect",
                        "-f",
                        "{{.State.Running}} {{.State.ExitCode}}",
                        &self.container_id,
                    ]),
                    CLI_TIMEOUT,
                )?;
                if let Some(code) = state.trim().strip_prefix("false ") {
                    bail!(
                        "the inner engine {} exited with code {code} before answering \
                         GET /_ping; its logs:\n{}",
                        self.name,
                        self.logs(60)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the inner engine {} did not answer GET /_ping on {addr} within {timeout:?} \
                     (last: {last}); its logs:\n{}",
                    self.name,
                    self.logs(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails unless this engine's API answers with this engine's own ID: a guard before
    /// commands that change an engine's swarm mode.
    fn ensure_is_self(&self) -> Result<()> {
        let id = self.info("{{.ID}}")?;
        if id != self.engine_id {
            bail!(
                "{} answered with engine ID {id:?}, not {}'s {:?}: refusing to change its \
                 swarm mode",
                self.docker_host(),
                self.name,
                self.engine_id
            );
        }
        Ok(())
    }
}

impl Drop for InnerEngine {
    fn drop(&mut self) {
        if self.routed {
            let del = ["route", "del", &self.pool, "via", &self.ip];
            if let Err(e) = run(Command::new("ip").args(del), CLI_TIMEOUT) {
                eprintln!(
                    "inner engine {}: removing its host route failed: {e:#}",
                    self.name
                );
            }
        }
        if let Err(e) = run(
            host().args(["rm", "-f", "-v", &self.container_id]),
            CLI_TIMEOUT,
        ) {
            eprintln!(
                "inner engine {}: removing its container failed: {e:#}",
                self.name
            );
        }
        release_network();
    }
}

/// One swarm node as `docker node ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub hostname: String,
    pub status: String,
    pub availability: String,
    pub manager_status: String,
}

/// Turns a failure to start inner engines into a test failure (a panic that says why), or, with
/// `RFAAS_ALLOW_NO_INNER_ENGINE=1`, into `None` and a `SKIPPED:` line written straight to the
/// process's stderr, past libtest's output capture (and to the terminal under nextest).
pub fn or_skip<T>(test: &str, started: Result<T>) -> Option<T> {
    match started {
        Ok(v) => Some(v),
        Err(e) => {
            if std::env::var(ALLOW_NO_INNER_ENGINE).as_deref() == Ok("1") {
                let line = "=".repeat(78);
                let msg = format!(
                    "\n{line}\nSKIPPED: {test}: no inner Docker engine on this machine:\n{e:#}\n\
                     ({ALLOW_NO_INNER_ENGINE}=1 is set; without it this test fails)\n{line}\n"
                );
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(msg.as_bytes());
                let _ = stderr.flush();
                // nextest captures the process's stderr and shows it for failures only: write
                // to the terminal too when there is one (CI logs need `--success-output`).
                if std::env::var_os("NEXTEST_RUN_ID").is_some()
                    && let Ok(mut tty) = std::fs::OpenOptions::new().write(true).open("/dev/tty")
                {
                    let _ = tty.write_all(msg.as_bytes());
                }
                None
            } else {
                panic!(
                    "{test}: no inner Docker engine: {e:#}\n(set {ALLOW_NO_INNER_ENGINE}=1 to \
                     skip the inner-engine tests on a machine that cannot run one)"
                )
            }
        }
    }
}

/// Builds (or finds) a FROM scratch image holding `binary` as `/<file name>` (its entrypoint)
/// and every library `ldd` lists, tagged `<repo>:<hash of their contents>`. For images to load
/// into inner engines: nothing can be pulled.
pub fn image_from_binary(binary: &Path, repo: &str) -> Result<String> {
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{} has no file name", binary.display()))?;
    let mut files = vec![binary.to_path_buf()];
    files.extend(libraries(binary)?);
    // The tag: CRC and size of each file (`cksum`) with where it goes in the image, not where
    // the binary was built. The hasher has fixed keys: the same files give the same tag.
    let mut sums = Command::new("cksum");
    sums.args(&files);
    let sums = run(&mut sums, CLI_TIMEOUT)?;
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    for (line, file) in sums.lines().zip(&files) {
        line.split_whitespace()
            .take(2)
            .for_each(|f| f.hash(&mut hasher));
        file.hash(&mut hasher);
    }
    let tag = format!("{repo}:{:016x}", hasher.finish());
    if image_exists(&tag) {
        return Ok(tag);
    }
    let dir = tempfile::tempdir()?;
    std::fs::copy(binary, dir.path().join(name))
        .with_context(|| format!("copying {}", binary.display()))?;
    for lib in &files[1..] {
        let to = dir.path().join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(lib, &to).with_context(|| format!("copying {}", lib.display()))?;
    }
    let mut tar = Command::new("tar");
    tar.args([
        "--sort=name",
        "--mtime=@0",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "-C",
    ])
    .arg(dir.path())
    .args(["-cf", "-", "."]);
    let entrypoint = format!("ENTRYPOINT [\"/{name}\"]");
    let label = format!("LABEL {LABEL}");
    let mut import = host();
    import.args([
        "import",
        "--change",
        &entrypoint,
        "--change",
        &label,
        "-",
        &tag,
    ]);
    pipe(&mut tar, &mut import, IMAGE_TIMEOUT).with_context(|| format!("building {tag}"))?;
    remove_other_tags(repo, &tag);
    Ok(tag)
}

/// Removes the harness's containers and networks created more than `older_than` ago (leftovers
/// of killed runs); returns how many containers went. The first [`InnerEngine::start`] of a
/// process runs it with [`STALE_AFTER`].
pub fn sweep_stale(older_than: Duration) -> Result<usize> {
    let cutoff = unix_now().saturating_sub(older_than.as_secs());
    let is_stale = |line: &str| -> Option<String> {
        let mut f = line.split_whitespace();
        let id = f.next()?.to_string();
        let created = f.next().and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        (created < cutoff).then_some(id)
    };
    let filter = format!("label={LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{CREATED_LABEL}\"}}}}");
    let containers = run(
        host().args(["ps", "-a", "--filter", &filter, "--format", &format]),
        CLI_TIMEOUT,
    )?;
    let stale: Vec<String> = containers.lines().filter_map(is_stale).collect();
    for id in &stale {
        run(host().args(["rm", "-f", "-v", id]), CLI_TIMEOUT)?;
    }
    let networks = run(
        host().args(["network", "ls", "--filter", &filter, "--format", &format]),
        CLI_TIMEOUT,
    )?;
    for id in networks.lines().filter_map(is_stale) {
        // Fails while a container still uses it: then it is not a leftover.
        let _ = run(host().args(["network", "rm", &id]), CLI_TIMEOUT);
    }
    Ok(stale.len())
}

fn sweep_stale_once() {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| match sweep_stale(STALE_AFTER) {
        Ok(0) => {}
        Ok(n) => eprintln!("inner engine: removed {n} stale container(s) of earlier runs"),
        Err(e) => eprintln!("inner engine: sweeping stale leftovers failed: {e:#}"),
    });
}

/// Counts engines started by this process: names and bridge subnets.
static ENGINES: AtomicU32 = AtomicU32::new(0);

/// Identifies this process's objects: `<pid><random>` in hex.
fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{:x}{:04x}", std::process::id(), rand::random::<u16>()))
}

/// A `/24` for the engine's default bridge (`--bip`), unique per engine of this process, in
/// 100.64.0.0/11 (shared address space): outside Docker's default pools, so it cannot shadow
/// the harness's network or the host's bridges.
fn bridge_ip(n: u32) -> String {
    let block = engine_slot(n) % (32 * 256);
    format!("100.{}.{}.1/24", 64 + block / 256, block % 256)
}

/// The inner engine's own address pool (`--default-address-pool`): a `/20` of 100.96.0.0/11
/// cut into `/24`s, unique per engine of this process.
fn address_pool(n: u32) -> String {
    format!("base={},size=24", pool_subnet(n))
}

/// The subnet of [`address_pool`]`(n)`.
fn pool_subnet(n: u32) -> String {
    let chunk = engine_slot(n) % 512;
    format!("100.{}.{}.0/20", 96 + chunk / 16, (chunk % 16) * 16)
}

/// A number unique per engine of this process, spread over processes by their id.
fn engine_slot(n: u32) -> u32 {
    std::process::id().wrapping_mul(97).wrapping_add(n)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The host's docker CLI, as the rest of the suite uses it.
fn host() -> Command {
    Command::new("docker")
}

fn host_engine_id() -> Result<String> {
    static ID: OnceLock<String> = OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(id.clone());
    }
    let id = run(host().args(["info", "--format", "{{.ID}}"]), CLI_TIMEOUT)?
        .trim()
        .to_string();
    Ok(ID.get_or_init(|| id).clone())
}

fn image_exists(tag: &str) -> bool {
    run(
        host().args(["image", "inspect", "--format", "{{.Id}}", tag]),
        CLI_TIMEOUT,
    )
    .is_ok()
}

fn build_script() -> PathBuf {
    crate::root()
        .join("tests")
        .join("inner-engine")
        .join("build.sh")
}

/// The inner engine's image tag, built at most once per process.
fn image() -> Result<String> {
    static IMAGE: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_image().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build_image() -> Result<String> {
    let started = Instant::now();
    let script = build_script();
    let hash = run(Command::new("sh").arg(&script).arg("hash"), CLI_TIMEOUT)?;
    let tag = format!("{IMAGE_REPO}:{}", hash.trim());
    if image_exists(&tag) {
        eprintln!(
            "inner engine image {tag} found ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(tag);
    }
    let mut tar = Command::new("sh");
    tar.arg(&script).arg("tar");
    let label = format!("LABEL {LABEL}");
    let mut import = host();
    import.args([
        "import",
        "--change",
        "ENTRYPOINT [\"/entrypoint.sh\"]",
        "--change",
        "ENV PATH=/usr/sbin:/usr/bin",
        "--change",
        &label,
        "-",
        &tag,
    ]);
    pipe(&mut tar, &mut import, IMAGE_TIMEOUT)?;
    eprintln!(
        "inner engine image {tag} built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    remove_other_tags(IMAGE_REPO, &tag);
    Ok(tag)
}

/// Removes the images of `repo` but `keep`: older builds are no use any more. An image a
/// container still runs stays (`docker image rm` refuses).
fn remove_other_tags(repo: &str, keep: &str) {
    let reference = format!("reference={repo}:*");
    let Ok(tags) = run(
        host().args([
            "image",
            "ls",
            "--filter",
            &reference,
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ]),
        CLI_TIMEOUT,
    ) else {
        return;
    };
    for old in tags.lines().filter(|t| *t != keep) {
        let _ = run(host().args(["image", "rm", old]), CLI_TIMEOUT);
    }
}

/// The bridge network this process's engines share, and how many use it.
static NETWORK: Mutex<Option<(String, usize)>> = Mutex::new(None);

/// The network's name, created with the first user.
fn acquire_network() -> Result<String> {
    let mut guard = NETWORK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((name, users)) = guard.as_mut() {
        *users += 1;
        return Ok(name.clone());
    }
    let name = format!("rfa-test-inner-{}", run_id());
    let created = format!("{CREATED_LABEL}={}", unix_now());
    run(
        host().args([
            "network", "create", "--driver", "bridge", "--label", LABEL, "--label", &created, &name,
        ]),
        CLI_TIMEOUT,
    )?;
    *guard = Some((name.clone(), 1));
    Ok(name)
}

/// Removes the network when its last user goes (under the lock: a concurrent first user waits
/// and makes it anew).
fn release_network() {
    let mut guard = NETWORK.lock().unwrap_or_else(|e| e.into_inner());
    let Some((name, users)) = guard.as_mut() else {
        return;
    };
    if *users > 1 {
        *users -= 1;
        return;
    }
    let name = name.clone();
    *guard = None;
    if let Err(e) = run(host().args(["network", "rm", &name]), CLI_TIMEOUT) {
        eprintln!("inner engine: removing network {name} failed: {e:#}");
    }
}

/// One `GET /_ping`: Ok when the engine answers 200 OK.
fn ping(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: inner-engine\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") && answer.ends_with("OK") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("answered {status:?}")))
    }
}

/// A command line for messages: its environment changes and arguments.
fn describe(cmd: &Command) -> String {
    format!("{cmd:?}")
}

/// Reads a pipe to its end on a thread of its own (so a full pipe never stalls the child).
fn drain<R: Read + Send + 'static>(from: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut r) = from {
            let _ = r.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for `child` until `deadline`, killing it past that.
fn wait_until(child: &mut Child, deadline: Instant, what: &str) -> Result<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish in time and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` with a timeout; its stdout, or an error with the command, exit status and stderr.
fn run(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = wait_until(&mut child, Instant::now() + timeout, &what)?;
    let output = Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `from | to` with a timeout; `to`'s stdout, or an error naming the side that failed.
fn pipe(from: &mut Command, to: &mut Command, timeout: Duration) -> Result<String> {
    let (what_from, what_to) = (describe(from), describe(to));
    let mut first = from
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what_from}"))?;
    let first_err = drain(first.stderr.take());
    let Some(data) = first.stdout.take() else {
        bail!("{what_from} has no stdout");
    };
    let mut second = match to
        .stdin(Stdio::from(data))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = first.kill();
            let _ = first.wait();
            return Err(anyhow!(e).context(format!("cannot run {what_to}")));
        }
    };
    let (second_out, second_err) = (drain(second.stdout.take()), drain(second.stderr.take()));
    let deadline = Instant::now() + timeout;
    let status_to = wait_until(&mut second, deadline, &what_to);
    // When the reader stopped early the writer gets EPIPE and exits on its own.
    let status_from = wait_until(&mut first, deadline, &what_from);
    let text = |h: std::thread::JoinHandle<Vec<u8>>| {
        String::from_utf8_lossy(&h.join().unwrap_or_default())
            .trim()
            .to_string()
    };
    let (from_err, to_out, to_err) = (text(first_err), text(second_out), text(second_err));
    let (status_from, status_to) = (status_from?, status_to?);
    if !status_from.success() {
        bail!("{what_from} failed ({status_from}): {from_err}");
    }
    if !status_to.success() {
        bail!("{what_to} failed ({status_to}): {to_err}");
    }
    Ok(to_out)
}

/// Every library `ldd` lists for `binary` (none for a static binary).
fn libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let path = match fields.as_slice() {
            [_, "=>", path, ..] if path.starts_with('/') => *path,
            [path, ..] if path.starts_with('/') => *path,
            _ => continue,
        };
        libs.push(PathBuf::from(path));
    }
    Ok(libs)
}
