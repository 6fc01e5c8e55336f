//! `proxyCli startFaas`: builds what is missing, then makes NATS, the store, the proxy and the
//! scaler run on the instance's network, healthy. Idempotent: what already runs as asked is left alone, a
//! missing or changed piece is (re)created.

use std::time::Duration;

use anyhow::{Context, bail};
use rfa_engine::{Engine, EngineSocket, FunctionEngine, ReplicaState};
use rfa_wire::PROXY_PORT;
use rfa_wire::route::{FunctionRoute, Power};

use crate::functions;
use crate::images::{AppImage, BaseImage, UserImage};
use crate::instance::{HostFiles, Instance, LABEL_SPEC, Role};
use crate::paths;
use crate::platform::{self, NatsSource, PlatformImages, Settings};
use crate::progress::Progress;
use crate::settings::{self, Given};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Host port the gateway is published on (0: let Docker choose) [default: 9999].
    #[arg(long)]
    pub port: Option<u16>,
    /// Host address the gateway is published on, IPv4 or IPv6 [default: 127.0.0.1].
    #[arg(long)]
    pub bind: Option<String>,
    /// Build the platform on this local image instead of the host-made base (it must have a
    /// glibc compatible with this host's).
    #[arg(long)]
    pub base_image: Option<String>,
    /// Run NATS from this local image instead of the host's nats-server.
    #[arg(long, conflicts_with = "nats_url")]
    pub nats_image: Option<String>,
    /// Use this NATS server (reachable from containers) instead of running one.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Send OpenTelemetry traces to this OTLP endpoint (passed to every container).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Seconds the gateway waits for a function's response headers before answering 504
    /// [default: 60].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upstream_timeout: Option<u64>,
    /// Largest async call body the gateway accepts, in bytes (larger: 413) [default: 262144].
    #[arg(long)]
    pub max_async_body: Option<u64>,
    /// Most client connections the gateway holds open at once; past it a new connection gets
    /// 503 with Retry-After and is closed [default: 1024].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: Option<u32>,
    /// Seconds a client has to send a whole request head; it is also how long an idle
    /// keep-alive connection stays open [default: 10].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: Option<u64>,
    /// Most header fields in one request (more: 431) [default: 100].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_headers: Option<u32>,
    /// Largest request head (request line and headers) in bytes (larger: 431) [default: 16384].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_header_bytes: Option<u32>,
    /// Forget the settings this instance was started with before: every value not given as a
    /// flag takes its default. (Without it, a value not given keeps the one the instance last
    /// ran with.)
    #[arg(long)]
    pub defaults: bool,
    /// Run the platform and its functions as Docker Swarm services (the engine must be a swarm
    /// manager; docs/SWARM.md). Kept: later commands of the instance work on Swarm without it.
    #[arg(long)]
    pub swarm: bool,
    /// On Swarm: the Docker engine of another node that runs functions, `tcp://<host>:<port>`
    /// (repeat for more nodes); `deploy` copies function images to it. Function tasks run only
    /// on this node and the ones given here.
    #[arg(long = "node-engine", value_name = "URL")]
    pub node_engines: Vec<String>,
    /// On Swarm when DOCKER_HOST is not this machine's socket: the group id of the manager's
    /// /var/run/docker.sock, which the scaler (the one container with the socket) is given.
    /// Without it the platform runs without the scaler there.
    #[arg(long, value_name = "GID")]
    pub engine_socket_gid: Option<u32>,
    /// Replace the admin token with a new one: the token file gets it, the running gateway
    /// reloads it without a restart, and the old token is refused from then on.
    #[arg(long)]
    pub rotate_token: bool,
}

pub async fn run(instance: &Instance, args: Args) -> anyhow::Result<()> {
    let progress = Progress::new();
    let settings_file = settings::path(instance)?;
    let kept = if args.defaults {
        None
    } else {
        settings::load(&settings_file)?
    };
    let given = Given {
        bind: args.bind,
        port: args.port,
        nats_image: args.nats_image,
        nats_url: args.nats_url,
        otlp_endpoint: args.otlp_endpoint,
        base_image: args.base_image,
        upstream_timeout: args.upstream_timeout,
        max_async_body: args.max_async_body,
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
        max_headers: args.max_headers,
        max_header_bytes: args.max_header_bytes,
        swarm: args.swarm.then_some(true),
        node_engines: (!args.node_engines.is_empty()).then(|| args.node_engines.clone()),
        engine_socket_gid: args.engine_socket_gid,
    };
    let (wanted, setting_changes) = settings::resolve(&given, kept.as_ref());
    // Said before anything else can fail: it is about what the user asked for.
    if let Some(warning) = wanted
        .bind
        .parse()
        .ok()
        .and_then(|bind| settings::bind_warning(bind, wanted.port))
    {
        eprintln!("{warning}");
    }
    let settings = settings::check(&wanted).map_err(|e| {
        if kept.is_some() {
            anyhow::anyhow!(
                "{e:#} (values not given as flags are the ones kept in {}; --defaults forgets them)",
                settings_file.display()
            )
        } else {
            e
        }
    })?;

    let engine = Engine::connect().await?;
    let (token, replaced, token_note) = if args.rotate_token {
        let (new, old) = platform::rotate_token(instance)?;
        (new, Some(old), None)
    } else {
        let (token, note) = platform::startup_token(instance)?;
        (token, None, note)
    };
    let on_swarm = settings.kept.swarm;
    if on_swarm {
        crate::swarm::manager_node(&engine).await?;
        if engine.inspect(&instance.proxy()).await?.is_some() {
            bail!(
                "instance '{}' runs in bridge mode on this engine (container {} exists): an \
                 instance is one mode. Remove it with `proxyCli stopFaas{flag}` first, then \
                 `proxyCli startFaas --swarm{flag}`",
                instance.label(),
                instance.proxy(),
                flag = platform::instance_flag(instance)
            );
        }
    } else {
        if crate::swarm::is_swarm(&engine, instance).await? {
            bail!(
                "instance '{}' runs on Swarm on this engine (service {} exists): an instance is one \
                 mode. Run `proxyCli startFaas --swarm{flag}` to keep it there, or remove it with \
                 `proxyCli stopFaas{flag}` and start again with --defaults",
                instance.label(),
                instance.proxy(),
                flag = platform::instance_flag(instance)
            );
        }
        check_port_free(&engine, instance, &settings).await?;
    }

    // Images.
    let proxy_bin = paths::platform_binary("rfa-proxy")?;
    let store_bin = paths::platform_binary("rfa-store")?;
    let scaler_bin = paths::platform_binary("rfa-scaler")?;
    // The scaler needs the engine's socket; without one it cannot run, and the rest can.
    let scaler_socket = match EngineSocket::of_host() {
        // On Swarm the scaler runs on the manager; its socket's group may be given.
        _ if on_swarm && settings.kept.engine_socket_gid.is_some() => {
            settings.kept.engine_socket_gid.map(|gid| EngineSocket {
                host_path: rfa_engine::ENGINE_SOCKET.to_string(),
                gid,
            })
        }
        Ok(socket) => Some(socket),
        Err(e) => {
            eprintln!(
                "warning: the scaler cannot run: {e}. The platform starts without it: functions \
                 keep their fixed replicas, and `proxyCli scale`, autoscaling and idle pause are \
                 unavailable until startFaas runs where the engine's unix socket is reachable"
            );
            None
        }
    };
    let base = match &settings.kept.base_image {
        None => BaseImage::assemble()?,
        Some(image) => {
            if !engine.image_exists(image).await? {
                bail!(
                    "--base-image {image} is not on this machine: rfaas never pulls. Load it first \
                     (`docker pull {image}` where a registry is reachable, or `docker load`)"
                );
            }
            BaseImage::external(image)
        }
    };
    base.ensure(&engine, &progress).await?;
    let proxy_image = AppImage::assemble(&base, "rfa-proxy", &proxy_bin, Role::Proxy, None)?;
    let store_image = AppImage::assemble(&base, "rfa-store", &store_bin, Role::Store, None)?;
    let scaler_image = AppImage::assemble(&base, "rfa-scaler", &scaler_bin, Role::Scaler, None)?;
    proxy_image.ensure(&engine, &base, &progress).await?;
    store_image.ensure(&engine, &base, &progress).await?;
    scaler_image.ensure(&engine, &base, &progress).await?;
    let nats_image = match &settings.nats {
        NatsSource::HostBinary(bin) => {
            let image = AppImage::assemble(&base, "rfa-nats", bin, Role::Nats, None)?;
            image.ensure(&engine, &base, &progress).await?;
            Some(image.tag)
        }
        NatsSource::Image(image) => {
            let Some(id) = engine.image_id(image).await? else {
                bail!(
                    "--nats-image {image} is not on this machine: rfaas never pulls. Load it first, \
                     or drop --nats-image to use the host's nats-server"
                );
            };
            // Run hardened like every other container: non-root, with a /data it owns.
            let derived = UserImage::assemble(image, &id, "rfa-nats-user", Role::Nats)?;
            derived.ensure(&engine, &progress).await?;
            Some(derived.tag)
        }
        NatsSource::External(_) => None,
    };
    progress.done();
    // Kept from here on, so that a plain startFaas repairs the platform as asked now even if
    // this run fails part way.
    settings::save(&settings_file, &wanted)?;
    let images = PlatformImages {
        base: base.tag.clone(),
        nats: nats_image,
        store: store_image.tag,
        proxy: proxy_image.tag,
        scaler: scaler_image.tag,
    };

    if on_swarm {
        let changed = crate::swarm::start_platform(
            &engine,
            instance,
            &settings,
            &images,
            &token,
            scaler_socket.as_ref(),
            &progress,
        )
        .await?;
        let url = platform::gateway_url(&engine, instance).await?;
        for line in &changed {
            progress.step(line);
        }
        if changed.is_empty() && setting_changes.is_empty() {
            println!("rfaas is already up and unchanged on Swarm: {url}");
        } else {
            println!("rfaas is up on Swarm: {url}");
        }
        println!(
            "note: on Swarm the gateway's port {} is published on every address of the platform \
             node (Swarm cannot bind 127.0.0.1 only); the admin token guards /system and /store",
            settings.kept.port
        );
        if let Some(note) = token_note {
            println!("{note}");
        }
        println!("admin token: {}", instance.token_path()?.display());
        return Ok(());
    }

    // Network and volumes.
    let mut changed = Vec::new();
    if engine
        .ensure_network(&instance.network(), instance.labels(Role::Proxy))
        .await?
    {
        changed.push(format!("created network {}", instance.network()));
    }
    for (volume, role) in [
        (instance.store_volume(), Role::Store),
        (instance.nats_volume(), Role::Nats),
        (instance.proxy_volume(), Role::Proxy),
        (instance.scaler_volume(), Role::Scaler),
    ] {
        if engine.ensure_volume(&volume, instance.labels(role)).await? {
            changed.push(format!("created volume {volume}"));
        }
    }

    // Containers, in dependency order; each waited for before the next.
    let specs = platform::specs(instance, &settings, &images, &token, scaler_socket.as_ref());
    if scaler_socket.is_none() {
        // One left from a run that could give it the socket would act with its old settings.
        engine.remove_container(&instance.scaler()).await?;
    }
    let mut started_now = Vec::new();
    // Whether the running proxy had to be handed the token: the scaler then needs it too.
    let mut token_synced = false;
    for (role, spec) in &specs {
        let current = engine.inspect(&spec.name).await?;
        let wanted = spec.labels.get(LABEL_SPEC);
        let action = match &current {
            Some(c) => {
                let same = c
                    .config
                    .as_ref()
                    .and_then(|cfg| cfg.labels.as_ref())
                    .and_then(|l| l.get(LABEL_SPEC))
                    == wanted;
                let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                match (same, running) {
                    (true, true) => None,
                    (true, false) => Some("started"),
                    (false, _) => Some("recreated"),
                }
            }
            None => Some("created"),
        };
        match action {
            None => {}
            Some("started") => {
                engine.put_files(&spec.name, &spec.files).await?;
                engine.start(&spec.name).await?;
                started_now.push(spec.name.clone());
            }
            Some(what) => {
                engine.remove_container(&spec.name).await?;
                if let Err(e) = engine.run(spec).await {
                    report_partial(&engine, instance, &started_now, &spec.name).await;
                    return Err(e.into());
                }
                started_now.push(spec.name.clone());
                changed.push(format!("{what} {}", spec.name));
            }
        }
        if action.is_some() {
            progress.step(&format!("waiting for {} to be healthy", spec.name));
        }
        if let Err(e) = platform::wait_healthy(
            &engine,
            instance,
            *role,
            &spec.name,
            Duration::from_secs(60),
        )
        .await
        {
            report_partial(&engine, instance, &started_now, &spec.name).await;
            return Err(e);
        }
        if let Some("started") = action {
            changed.push(format!("started {}", spec.name));
        }
        if *role == Role::Proxy && action.is_none() {
            // It kept running: it may hold another token than the file's (a rotation, or a
            // token file that was lost and made anew).
            if sync_token(&engine, instance, &spec.name, &token).await? {
                token_synced = true;
                changed.push(format!(
                    "gave {} the current admin token (reloaded on SIGHUP, no restart)",
                    spec.name
                ));
            }
        }
        if *role == Role::Scaler && action.is_none() && (token_synced || args.rotate_token) {
            // It kept running with the token it was given then: hand it the current one.
            give_scaler_token(&engine, instance, &spec.name, &token).await?;
            changed.push(format!(
                "gave {} the current admin token (reloaded on SIGHUP, no restart)",
                spec.name
            ));
        }
    }

    // The names on the network must resolve (they stop doing so after the engine's swarm mode
    // was switched while the network existed): repaired before the functions are looked at.
    let url = platform::gateway_url(&engine, instance).await?;
    if let Some(repair) = crate::dns::check_and_repair(
        &engine,
        instance,
        &url,
        &token,
        crate::dns::Mode::Bridge,
        &progress,
    )
    .await?
    {
        changed.push(repair);
    }

    // Function replicas stopped on purpose (`docker stop`, `docker kill`) are left down by their
    // restart policy, as the platform's own are: start them again too, unless the scaler
    // stopped them (their route says `power: stopped`; a call wakes them). Their routes and
    // durable consumers are unchanged, so they serve and take their queued work as soon as they
    // run. Then the functions the platform ran before a restart (or whose replicas were
    // removed): run them again from their kept images and settings before saying the platform
    // is up.
    let p = functions::Platform::on(engine.clone(), instance).await?;
    let routes = p.gateway.list().await?;
    for r in p.replicas.list(None).await? {
        let asleep = routes
            .iter()
            .any(|route| route.name == r.function && route.power != Power::Running);
        if r.state == ReplicaState::Stopped && !asleep {
            p.replicas.start(&r).await?;
            changed.push(format!("started {}", r.container));
        }
    }
    let not_restored = restore_functions(&p, routes, &progress, &mut changed).await?;

    let token_path = instance.token_path()?;
    changed.extend(setting_changes.iter().map(|c| format!("changed {c}")));
    if changed.is_empty() {
        println!("rfaas is already up and unchanged: {url}");
    } else {
        for line in &changed {
            progress.step(line);
        }
        println!("rfaas is up: {url}");
    }
    if let Some(old) = replaced {
        report_rotation(&url, &token, old.as_deref(), &token_path).await?;
    }
    if let Some(note) = token_note {
        println!("{note}");
    }
    println!("admin token: {}", token_path.display());
    for (name, why) in &not_restored {
        eprintln!(
            "warning: function '{name}' was not restored: {why} (`proxyCli deploy <deploy.json>{}`)",
            platform::instance_flag(instance)
        );
    }
    Ok(())
}

/// Recreates the replicas of every routed function that no running container serves (after
/// `stopFaas`, or when they were removed by hand). A function the scaler paused or stopped is
/// left as it is while its containers exist (they are not running on purpose; a call wakes
/// them); if they are gone it is restored like any other, and registered running. Returns the
/// functions it could not restore, with the reason.
async fn restore_functions(
    p: &functions::Platform,
    routes: Vec<FunctionRoute>,
    progress: &Progress,
    changed: &mut Vec<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut replicas = functions::by_function(p.all_replicas().await?);
    let mut failed = Vec::new();
    let mut todo = Vec::new();
    for route in routes {
        let current = replicas.remove(&route.name).unwrap_or_default();
        let asleep = route.power != Power::Running && !current.is_empty();
        if !asleep && !functions::route_served(&route, &current) {
            todo.push(route);
        }
    }
    for route in todo {
        progress.step(&format!("restoring function '{}'", route.name));
        match functions::restore(p, &route, progress).await {
            Ok(_) => changed.push(format!(
                "restored function '{}' ({} replica{})",
                route.name,
                route.run.as_ref().map_or(0, |r| r.replicas),
                if route.run.as_ref().is_some_and(|r| r.replicas == 1) {
                    ""
                } else {
                    "s"
                }
            )),
            Err(e) => failed.push((route.name.clone(), e.to_string())),
        }
    }
    Ok(failed)
}

/// Hands the running scaler `name` the admin token: its token file, then SIGHUP (it re-reads
/// the file, as the gateway does), then its health.
async fn give_scaler_token(
    engine: &Engine,
    instance: &Instance,
    name: &str,
    token: &str,
) -> anyhow::Result<()> {
    let fail = |what: String| {
        anyhow::anyhow!(
            "{what}. The token file holds the new token; run `proxyCli startFaas{}` again to hand \
             it to the scaler",
            platform::instance_flag(instance)
        )
    };
    engine
        .put_files(name, &[platform::proxy_token_file(token)])
        .await
        .map_err(|e| fail(format!("cannot give {name} the admin token: {e}")))?;
    engine
        .signal(name, "SIGHUP")
        .await
        .map_err(|e| fail(format!("cannot tell {name} to reload its token: {e}")))?;
    platform::wait_healthy(
        engine,
        instance,
        Role::Scaler,
        name,
        Duration::from_secs(30),
    )
    .await
}

/// What `/system/functions` answers `token` with.
async fn admin_status(url: &str, token: &str) -> anyhow::Result<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let r = client
        .get(format!("{url}/system/functions"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("the gateway at {url} does not answer"))?;
    Ok(r.status().as_u16())
}

/// Makes the running proxy `name` use `token` if it does not already: writes its token file
/// and sends it SIGHUP, then waits until the gateway accepts the token. Returns whether it had
/// to.
async fn sync_token(
    engine: &Engine,
    instance: &Instance,
    name: &str,
    token: &str,
) -> anyhow::Result<bool> {
    let url = platform::gateway_url(engine, instance).await?;
    if admin_status(&url, token).await? != 401 {
        return Ok(false);
    }
    let fail = |what: String| {
        anyhow::anyhow!(
            "{what}. The token file holds the new token; run `proxyCli startFaas{}` again to hand \
             it to the gateway",
            platform::instance_flag(instance)
        )
    };
    engine
        .put_files(name, &[platform::proxy_token_file(token)])
        .await
        .map_err(|e| fail(format!("cannot give {name} the admin token: {e:#}")))?;
    engine
        .signal(name, "SIGHUP")
        .await
        .map_err(|e| fail(format!("cannot tell {name} to reload its token: {e:#}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match admin_status(&url, token).await? {
            401 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            401 => {
                return Err(fail(format!(
                    "{name} still refuses the new admin token 10 s after SIGHUP (see `docker logs {name}`)"
                )));
            }
            _ => return Ok(true),
        }
    }
}

/// Checks and says what `--rotate-token` did: the new token is accepted, the old one refused.
async fn report_rotation(
    url: &str,
    token: &str,
    old: Option<&str>,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let new_status = admin_status(url, token).await?;
    if new_status != 200 {
        bail!("after rotating the admin token the gateway answers {new_status} to the new one");
    }
    match old {
        Some(old) => {
            let old_status = admin_status(url, old).await?;
            if old_status != 401 {
                bail!(
                    "after rotating the admin token the gateway still answers {old_status} to the \
                     old one"
                );
            }
            println!(
                "admin token rotated: {} holds the new one; the gateway accepts it and refuses \
                 the old one (401). Functions and routes were not touched.",
                path.display()
            );
        }
        None => println!(
            "admin token rotated: there was no old token; {} holds the new one",
            path.display()
        ),
    }
    Ok(())
}

/// Fails early, before anything is created, when the gateway's host port is taken by something
/// other than this instance's own proxy.
async fn check_port_free(
    engine: &Engine,
    instance: &Instance,
    settings: &Settings,
) -> anyhow::Result<()> {
    if settings.kept.port == 0 {
        return Ok(());
    }
    if let Some(c) = engine.inspect(&instance.proxy()).await? {
        let running = c.state.and_then(|s| s.running).unwrap_or(false);
        let ours = engine.published_port(&instance.proxy(), PROXY_PORT).await?;
        if running && ours == Some(settings.kept.port) {
            return Ok(());
        }
    }
    if crate::swarm::engine_host() != "127.0.0.1" {
        // An engine on another machine (DOCKER_HOST=tcp://…): this machine's ports say nothing
        // about its; the engine refuses a port in use when the gateway's container starts.
        return Ok(());
    }
    let addr = (settings.kept.bind.as_str(), settings.kept.port);
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "port {} on {} is not free ({e}): stop what listens there, or start rfaas on another \
             port with --port <n>",
            settings.kept.port,
            settings.kept.bind
        ),
    }
}

async fn report_partial(engine: &Engine, instance: &Instance, started: &[String], failed: &str) {
    let mut running = Vec::new();
    for (_, name) in instance.platform_containers() {
        if let Ok(Some(c)) = engine.inspect(&name).await
            && c.state.and_then(|s| s.running).unwrap_or(false)
        {
            running.push(name);
        }
    }
    eprintln!(
        "rfaas is only partly up: {failed} failed. Running now: {}{}.\n\
         Fix the cause above and run `proxyCli startFaas{flag}` again (it repairs what is missing), \
         or remove everything with `proxyCli stopFaas{flag}`.",
        if running.is_empty() {
            "nothing".to_string()
        } else {
            running.join(", ")
        },
        if started.is_empty() {
            String::new()
        } else {
            format!(" (started in this run: {})", started.join(", "))
        },
        flag = platform::instance_flag(instance),
    );
}
