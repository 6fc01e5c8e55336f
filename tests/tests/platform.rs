//! Issue #2: platform bring-up and tear-down, end to end against the real engine.

use std::time::Duration;

use rfaas_tests::*;

fn labels(v: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    v["Config"]["Labels"].as_object().expect("labels")
}

#[tokio::test]
async fn start_faas_brings_up_a_locked_down_platform_and_stop_faas_removes_it() {
    let p = Platform::start("bringup");
    let net = p.object("rfa-net");

    // The three containers run on the instance's network, labelled, hardened.
    for (base, role) in [
        ("rfa-proxy", "proxy"),
        ("rfa-store", "store"),
        ("rfa-nats", "nats"),
    ] {
        let name = p.object(base);
        let c = inspect(&name);
        assert_eq!(c["State"]["Running"], true, "{name} runs");
        let l = labels(&c);
        assert_eq!(l["io.rfaas.managed"], "true");
        assert_eq!(l["io.rfaas.role"], role);
        assert_eq!(l["io.rfaas.instance"], p.instance.as_str());
        assert!(
            c["NetworkSettings"]["Networks"][&net].is_object(),
            "{name} on {net}"
        );
        assert_eq!(
            c["Config"]["User"], "10001:10001",
            "{name} runs as the non-root user"
        );
        assert_eq!(
            c["HostConfig"]["ReadonlyRootfs"], true,
            "{name} has a read-only root"
        );
        assert_eq!(c["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
        assert!(
            c["HostConfig"]["Binds"].is_null() && !c.to_string().contains("docker.sock"),
            "{name} gets no Docker socket"
        );
        let published = &c["HostConfig"]["PortBindings"];
        if role == "proxy" {
            let binding = &published["9999/tcp"][0];
            assert_eq!(binding["HostIp"], "127.0.0.1");
            assert_eq!(binding["HostPort"], p.port.to_string());
        } else {
            assert!(
                published.is_null() || published.as_object().is_some_and(|m| m.is_empty()),
                "{name} publishes nothing: {published}"
            );
        }
    }
    // The scaler runs beside them, hardened too; it alone has the engine's socket.
    let scaler = inspect(&p.object("rfa-scaler"));
    assert_eq!(scaler["State"]["Running"], true, "the scaler runs");
    let l = labels(&scaler);
    assert_eq!(l["io.rfaas.role"], "scaler");
    assert_eq!(l["io.rfaas.instance"], p.instance.as_str());
    assert_eq!(scaler["Config"]["User"], "10001:10001");
    assert_eq!(scaler["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(scaler["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
    let aliases = scaler["NetworkSettings"]["Networks"][&net]["Aliases"].to_string();
    assert!(aliases.contains("\"rfa-scaler\""), "{aliases}");
    let env = scaler["Config"]["Env"].to_string();
    for var in [
        format!("RFAAS_INSTANCE={}", p.instance),
        format!("RFAAS_GATEWAY_URL=http://{}:9999", p.object("rfa-proxy")),
        "RFAAS_TOKEN_FILE=/data/token".to_string(),
    ] {
        assert!(env.contains(&var), "{var} in {env}");
    }
    assert!(
        !env.contains(&p.token()),
        "the token is not in the scaler's environment"
    );
    let mounts = scaler["Mounts"].to_string();
    assert!(mounts.contains("/var/run/docker.sock"), "{mounts}");
    let net_info: serde_json::Value =
        serde_json::from_str(&docker(&["network", "inspect", &net])).unwrap();
    assert_eq!(net_info[0]["Labels"]["io.rfaas.managed"], "true");

    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.token_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode");

    // The gateway answers, checks the token, and forwards to the store.
    let client = http();
    let health = client.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let anon = client.get(p.url("/system/functions")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert_eq!(anon.headers()["content-type"], "application/problem+json");
    let wrong = client
        .get(p.url("/system/functions"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let authed = client
        .get(p.url("/system/functions"))
        .bearer_auth(p.token())
        .send()
        .await
        .unwrap();
    assert_eq!(authed.status(), 200);
    assert_eq!(
        authed.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!([])
    );
    let store_anon = client.get(p.url("/store/tables")).send().await.unwrap();
    assert_eq!(store_anon.status(), 401);
    let store = client
        .get(p.url("/store/healthz"))
        .bearer_auth(p.token())
        .send()
        .await
        .unwrap();
    assert_eq!(store.status(), 200, "the store answers through the gateway");
    let unknown = client.get(p.url("/functions/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    assert!(problem["detail"].as_str().unwrap().contains("nope"));
    let metrics = client.get(p.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    // Unknown names are not counted: a client could grow the label set without bound.
    assert!(!metrics.contains("\"nope\""), "{metrics}");

    // Again: nothing changes.
    let ids_before: Vec<String> = ["rfa-proxy", "rfa-store", "rfa-nats", "rfa-scaler"]
        .iter()
        .map(|b| inspect(&p.object(b))["Id"].as_str().unwrap().to_string())
        .collect();
    let again = p.cli(&["startFaas", "--port", &p.port.to_string()]).ok();
    assert!(again.stdout.contains("already up and unchanged"), "{again}");
    let ids_after: Vec<String> = ["rfa-proxy", "rfa-store", "rfa-nats", "rfa-scaler"]
        .iter()
        .map(|b| inspect(&p.object(b))["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids_before, ids_after,
        "a second startFaas recreates nothing"
    );

    // stopFaas leaves no labelled container or network; twice is fine.
    p.cli(&["stopFaas"]).ok();
    assert!(
        p.containers().is_empty(),
        "containers left: {:?}",
        p.containers()
    );
    let nets = docker_lines(&[
        "network",
        "ls",
        "--filter",
        &format!("label=io.rfaas.instance={}", p.instance),
        "-q",
    ]);
    assert!(nets.is_empty(), "networks left: {nets:?}");
    let volumes = || {
        docker_lines(&[
            "volume",
            "ls",
            "--filter",
            &format!("label=io.rfaas.instance={}", p.instance),
            "-q",
        ])
    };
    let mut kept = volumes();
    kept.sort();
    let mut data: Vec<String> = [
        "rfa-nats-data",
        "rfa-proxy-data",
        "rfa-scaler-data",
        "rfa-store-data",
    ]
    .iter()
    .map(|v| p.object(v))
    .collect();
    data.sort();
    assert_eq!(
        kept, data,
        "stopFaas without --prune keeps the data volumes"
    );
    let second = p.cli(&["stopFaas"]).ok();
    assert!(second.stdout.contains("nothing to remove"), "{second}");
    p.cli(&["stopFaas", "--prune"]).ok();
    assert!(
        volumes().is_empty(),
        "--prune removes the volumes: {:?}",
        volumes()
    );
}

#[tokio::test]
async fn a_dead_container_is_restarted_and_start_faas_repairs_a_partial_platform() {
    let mut p = Platform::start("repair");
    let client = http();
    let store = p.object("rfa-store");
    let token = p.token();
    let health_url = p.url("/store/healthz");
    let store_ok = || {
        let client = client.clone();
        let token = token.clone();
        let url = health_url.clone();
        async move {
            let r = client.get(&url).bearer_auth(&token).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    };

    // The store's process dies (as under an OOM kill): the restart policy brings it back.
    let pid = inspect(&store)["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(
        Duration::from_secs(20),
        "the store restarted by its policy",
        || async {
            let c = inspect(&store);
            (c["RestartCount"].as_i64().unwrap_or(0) >= 1 && c["State"]["Running"] == true)
                .then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(20), "the store healthy again", store_ok).await;

    // The proxy too.
    let proxy = p.object("rfa-proxy");
    let pid = inspect(&proxy)["State"]["Pid"].as_i64().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the proxy back after a crash",
        || async {
            let r = client.get(p.url("/healthz")).send().await.ok()?;
            (r.status() == 200 && inspect(&proxy)["RestartCount"].as_i64() >= Some(1)).then_some(())
        },
    )
    .await;

    // `docker kill` and removal are what a user does on purpose; startFaas repairs both.
    docker(&["kill", &p.object("rfa-nats")]);
    docker(&["rm", "-f", &store]);
    let repaired = p.start_faas(&[]).ok();
    assert!(
        repaired.output().contains(&format!("created {store}")),
        "{repaired}"
    );
    assert!(
        repaired
            .output()
            .contains(&format!("started {}", p.object("rfa-nats"))),
        "{repaired}"
    );
    eventually(
        Duration::from_secs(20),
        "the store healthy after repair",
        store_ok,
    )
    .await;
    assert_eq!(inspect(&p.object("rfa-nats"))["State"]["Running"], true);
}

#[tokio::test]
async fn bad_inputs_get_clear_errors_and_leave_nothing_behind() {
    // Docker not reachable.
    let p = Platform::new("baddocker");
    let run = p
        .cli_env(
            &["startFaas"],
            &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        )
        .failed();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("unix:///nonexistent/docker.sock"),
        "{run}"
    );
    assert!(run.stderr.contains("start Docker"), "{run}");
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line: {run}");

    // The port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let p = Platform::new("badport");
    let run = p.cli(&["startFaas", "--port", &port]).failed();
    assert!(run.stderr.contains(&format!("port {port}")), "{run}");
    assert!(run.stderr.contains("--port"), "says what to do: {run}");
    assert!(
        p.containers().is_empty(),
        "nothing left running: {:?}",
        p.containers()
    );

    // nats-server missing.
    let p = Platform::new("nonats");
    let run = p
        .cli_env(
            &["startFaas", "--port", &p.port.to_string()],
            &[("RFAAS_NATS_SERVER", "/nonexistent/nats-server")],
        )
        .failed();
    assert!(run.stderr.contains("apt-get install nats-server"), "{run}");
    assert!(run.stderr.contains("--nats-url"), "{run}");
    assert!(p.containers().is_empty());

    // Flags that make no sense.
    let run = p.cli(&["startFaas", "--bind", "not-an-ip"]).failed();
    assert!(run.stderr.contains("--bind"), "{run}");
    let run = p
        .cli(&["startFaas", "--nats-url", "http://x:4222"])
        .failed();
    assert!(run.stderr.contains("nats://"), "{run}");
    let run = p
        .cli(&[
            "startFaas",
            "--nats-image",
            "nope:1",
            "--nats-url",
            "nats://x:4222",
        ])
        .failed();
    assert!(run.stderr.contains("cannot be used with"), "{run}");
    let run = p.cli(&["--instance", "Bad_Name", "stopFaas"]).failed();
    assert!(run.stderr.contains("instance name"), "{run}");
    assert!(p.containers().is_empty());
}

#[tokio::test]
async fn nats_can_be_an_external_server_or_a_users_image() {
    // An external NATS on the host, reached as host.docker.internal.
    let nats_port = free_port();
    let js_dir = tempfile::tempdir().unwrap();
    let nats = std::process::Command::new("nats-server")
        .args(["-js", "-a", "0.0.0.0", "-p", &nats_port.to_string(), "-sd"])
        .arg(js_dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server is installed (apt-get install nats-server)");
    let nats = KillOnDrop(nats);
    eventually(
        Duration::from_secs(20),
        "the host nats-server listening",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", nats_port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let mut p = Platform::new("natsurl");
    let url = format!("nats://host.docker.internal:{nats_port}");
    p.start_faas(&["--nats-url", &url]).ok();
    assert!(
        !p.containers().contains(&p.object("rfa-nats")),
        "no NATS container: {:?}",
        p.containers()
    );
    let (_d, file) = deploy_file(serde_json::json!([echo_entry("echo")]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let env = inspect(&p.object("rfa-fn-echo"))["Config"]["Env"].to_string();
    assert!(env.contains(&format!("RFAAS_NATS_URL={url}")), "{env}");
    let client = http();
    eventually(
        Duration::from_secs(30),
        "an async call stored on the external NATS",
        || async {
            let r = client
                .post(p.url("/async-functions/echo"))
                .send()
                .await
                .ok()?;
            (r.status() == 202).then_some(())
        },
    )
    .await;
    drop(p);
    drop(nats);

    // A NATS image the user names (here: the one rfaas builds, made the user's own: it runs as
    // root, as many images do). rfaas runs it hardened all the same, through a layer of its own.
    let source = Platform::start("natssrc");
    let image = inspect(&source.object("rfa-nats"))["Config"]["Image"]
        .as_str()
        .unwrap()
        .to_string();
    let own = format!("my-nats:{}", rand::random::<u32>());
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &own, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut build.stdin.take().unwrap(),
        format!("FROM {image}\nUSER 0:0\n").as_bytes(),
    )
    .unwrap();
    assert!(build.wait().unwrap().success(), "docker build {own}");
    drop(source);
    let mut p = Platform::new("natsimage");
    p.start_faas(&["--nats-image", &own]).ok();
    let nats = inspect(&p.object("rfa-nats"));
    let derived = nats["Config"]["Image"].as_str().unwrap().to_string();
    let derived_info: serde_json::Value =
        serde_json::from_str(&docker(&["image", "inspect", &derived])).unwrap();
    assert_eq!(
        derived_info[0]["Config"]["Labels"]["io.rfaas.from"],
        own.as_str(),
        "{derived} is made from the user's image"
    );
    assert_eq!(
        nats["Config"]["User"], "10001:10001",
        "not the image's root"
    );
    assert_eq!(nats["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(nats["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        nats["HostConfig"]["SecurityOpt"],
        serde_json::json!(["no-new-privileges:true"])
    );
    // JetStream writes to its /data volume as that user: an async call is stored.
    let (_d, file) = deploy_file(serde_json::json!([echo_entry("echo")]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let r = http()
        .post(p.url("/async-functions/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    drop(p);
    for tag in [&derived, &own] {
        let _ = std::process::Command::new("docker")
            .args(["rmi", tag])
            .output();
    }
    let mut missing = Platform::new("natsmissing");
    let run = missing.start_faas(&["--nats-image", "not-here:1"]).failed();
    assert!(run.stderr.contains("never pulls"), "{run}");
    assert!(
        missing.containers().is_empty(),
        "{:?}",
        missing.containers()
    );
}

/// A child process ended (and reaped) when the test ends, even by a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
