//! Restarts keep what the user set up (issue #22): a platform restart brings back every deployed
//! function with its replicas, env and limits; a plain `startFaas` keeps the settings the
//! instance was started with; one instance's `stopFaas --prune` leaves another's images,
//! volumes and token alone; a stopped replica costs no failed call while another is healthy;
//! IPv6 binds work; a weak `RFAAS_TOKEN` is refused.

use rfaas_tests::*;

/// The `Env` list of a container.
fn env_of(container: &str) -> Vec<String> {
    inspect(container)["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Running containers of function `name` in `p`.
fn running_replicas(p: &Platform, name: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "--filter",
        &format!("label=io.rfaas.instance={}", p.instance),
        "--filter",
        &format!("label=io.rfaas.function={name}"),
        "--format",
        "{{.Names}}",
    ])
}

fn details(p: &Platform) -> Vec<serde_json::Value> {
    let run = p.cli(&["details", "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .unwrap_or_else(|e| panic!("details --json: {e}\n{run}"))
        .as_array()
        .unwrap()
        .clone()
}

/// The status and the `version` (the `VERSION` env) the echo function at `url` answers with.
async fn version_of(url: &str) -> (u16, String) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (
        status,
        body["version"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_restart_brings_back_every_function_and_the_settings_it_ran_with() {
    let mut p = Platform::new("restart");
    p.start_faas(&["--upstream-timeout", "7", "--max-headers", "50"])
        .ok();
    let mut entry = echo_entry("echo");
    entry["replicas"] = 2.into();
    entry["memory"] = "96m".into();
    entry["env"] = serde_json::json!({ "VERSION": "v-kept" });
    let (_dir, file) = deploy_file(serde_json::json!([entry]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let url = p.url("/functions/echo/");
    assert_eq!(version_of(&url).await, (200, "v-kept".to_string()));

    // stopFaas removes every container; a plain startFaas (no --port, no other flag) brings the
    // platform back on the same port with the same limits, and the function with it.
    p.cli(&["stopFaas"]).ok();
    assert!(p.containers().is_empty(), "{:?}", p.containers());
    let up = p.cli(&["startFaas"]).ok();
    assert!(
        up.output()
            .contains("restored function 'echo' (2 replicas)"),
        "{up}"
    );
    assert!(up.stdout.contains(&p.url("")), "the same port: {up}");
    assert_eq!(
        version_of(&url).await,
        (200, "v-kept".to_string()),
        "answers with no deploy in between"
    );
    let replicas = running_replicas(&p, "echo");
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    for r in &replicas {
        assert!(env_of(r).contains(&"VERSION=v-kept".to_string()), "{r}");
        assert_eq!(
            inspect(r)["HostConfig"]["Memory"].as_i64(),
            Some(96 << 20),
            "{r} keeps its memory limit"
        );
    }
    let proxy_env = env_of(&p.object("rfa-proxy"));
    for kept in ["RFAAS_UPSTREAM_TIMEOUT_SECONDS=7", "RFAAS_MAX_HEADERS=50"] {
        assert!(
            proxy_env.contains(&kept.to_string()),
            "{kept}: {proxy_env:?}"
        );
    }
    let rows = details(&p);
    assert_eq!(rows[0]["status"], "ready", "{rows:?}");
    assert_eq!(
        rows[0]["replicas"],
        serde_json::json!({"desired": 2, "ready": 2}),
        "{rows:?}"
    );

    // Again: nothing to do, nothing moved.
    let again = p.cli(&["startFaas"]).ok();
    assert!(again.stdout.contains("already up and unchanged"), "{again}");
    // A flag that differs from the kept value changes it and says so; the rest stays.
    let changed = p.cli(&["startFaas", "--upstream-timeout", "9"]).ok();
    assert!(
        changed.output().contains("upstream-timeout: 7 -> 9"),
        "{changed}"
    );
    let proxy_env = env_of(&p.object("rfa-proxy"));
    assert!(proxy_env.contains(&"RFAAS_UPSTREAM_TIMEOUT_SECONDS=9".to_string()));
    assert!(proxy_env.contains(&"RFAAS_MAX_HEADERS=50".to_string()));
    assert_eq!(version_of(&url).await.0, 200);

    // A function whose image is gone cannot come back: startFaas says which and what to do.
    let image = rows[0]["image"].as_str().unwrap().to_string();
    assert!(
        image.starts_with(&format!("rfa-fn-echo-{}:", p.instance)),
        "each instance tags its own function images: {image}"
    );
    p.cli(&["stopFaas"]).ok();
    docker(&["rmi", &image]);
    let up = p.cli(&["startFaas"]).ok();
    assert!(
        up.stderr.contains("function 'echo' was not restored")
            && up.stderr.contains("deploy it again"),
        "{up}"
    );
    let rows = details(&p);
    assert_eq!(rows[0]["status"], "down", "{rows:?}");
}

#[tokio::test]
async fn pruning_one_instance_leaves_another_ones_images_volumes_and_token() {
    let keep = Platform::start("prune-keep");
    let gone = Platform::start("prune-gone");
    let (_dir, file) = deploy_file(serde_json::json!([echo_entry("echo")]));
    keep.cli(&["deploy", file.to_str().unwrap()]).ok();
    gone.cli(&["deploy", file.to_str().unwrap()]).ok();
    let image_of = |p: &Platform| details(p)[0]["image"].as_str().unwrap().to_string();
    let (kept_image, pruned_image) = (image_of(&keep), image_of(&gone));
    assert_ne!(kept_image, pruned_image, "each instance has its own tag");
    let volumes = |p: &Platform| {
        docker_lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=io.rfaas.instance={}", p.instance),
        ])
    };
    let kept_volumes = volumes(&keep);
    assert_eq!(
        kept_volumes.len(),
        4,
        "nats, store, proxy, scaler: {kept_volumes:?}"
    );

    let pruned = gone.cli(&["stopFaas", "--prune"]).ok();
    assert!(pruned.stdout.contains(&pruned_image), "{pruned}");
    assert!(!pruned.stdout.contains(&kept_image), "{pruned}");
    assert!(
        !gone.token_path().exists(),
        "its token went with it: {pruned}"
    );
    assert!(volumes(&gone).is_empty());
    let image_exists = |tag: &str| {
        std::process::Command::new("docker")
            .args(["image", "inspect", tag])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!image_exists(&pruned_image));

    // The other instance: image, volumes, token and its function untouched.
    assert!(image_exists(&kept_image), "{pruned}");
    assert_eq!(volumes(&keep), kept_volumes);
    assert!(keep.token_path().exists());
    let r = http()
        .get(keep.url("/functions/echo/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // And it still restarts with its function.
    keep.cli(&["stopFaas"]).ok();
    let up = keep.cli(&["startFaas"]).ok();
    assert!(up.output().contains("restored function 'echo'"), "{up}");
}

#[tokio::test]
async fn no_call_fails_while_one_of_two_replicas_is_stopped() {
    let p = Platform::start("one-down");
    let mut entry = echo_entry("echo");
    entry["replicas"] = 2.into();
    let (_dir, file) = deploy_file(serde_json::json!([entry]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();
    let second = format!("rfa-fn-echo-1-{}", p.instance);
    let payload = "x".repeat(4096);
    let mut failures = Vec::new();
    for i in 0..300 {
        if i == 50 {
            docker(&["stop", "-t", "2", &second]);
        }
        if i == 200 {
            docker(&["start", &second]);
        }
        // Calls with and without a body: both are sent to the other replica when the first
        // one cannot be reached.
        let (status, body) = if i % 2 == 0 {
            let r = client.get(p.url("/functions/echo/")).send().await.unwrap();
            (r.status().as_u16(), String::new())
        } else {
            let r = client
                .post(p.url("/functions/echo/body"))
                .body(payload.clone())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert!(status != 200 || body == payload, "call {i}: body changed");
            (status, body)
        };
        if status != 200 {
            failures.push(format!("call {i}: {status} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );

    // The replica that came back gets calls again once its health check passes (not after a
    // fixed time): its own request counter moves.
    let ip = inspect(&second)["NetworkSettings"]["Networks"]
        .as_object()
        .and_then(|n| n.values().next())
        .and_then(|n| n["IPAddress"].as_str())
        .unwrap()
        .to_string();
    let served = || {
        let client = client.clone();
        let ip = ip.clone();
        async move {
            let text = client
                .get(format!("http://{ip}:6000/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let total: f64 = text
                .lines()
                .filter(|l| l.starts_with("http_requests_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            Some(total)
        }
    };
    // (Its counters started from zero with its process.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        for _ in 0..10 {
            let r = client.get(p.url("/functions/echo/")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let total = served().await.unwrap_or(0.0);
        if total >= 3.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted replica got no calls within 15 s ({total})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_ipv6_bind_and_a_token_of_the_users_own_work_end_to_end() {
    // A weak RFAAS_TOKEN is refused before anything is made.
    let weak = Platform::new("weak-token");
    let refused = weak.cli_env(
        &["startFaas", "--port", &weak.port.to_string()],
        &[("RFAAS_TOKEN", "abc")],
    );
    let refused = refused.failed();
    assert!(
        refused.stderr.contains("RFAAS_TOKEN is too weak") && refused.stderr.contains("32"),
        "{refused}"
    );
    assert!(weak.containers().is_empty());

    // A strong one becomes the instance's token, in the file too; IPv6 loopback bind.
    let mut p = Platform::new("ipv6");
    let own: String = (0..48).map(|i| format!("{:x}", (i * 7 + 3) % 16)).collect();
    let port = p.port.to_string();
    p.start_faas(&[]).ok(); // marks it for clean-up; restarted below with the flags under test
    let up = p
        .cli_env(
            &["startFaas", "--port", &port, "--bind", "::1"],
            &[("RFAAS_TOKEN", &own)],
        )
        .ok();
    let url = format!("http://[::1]:{port}");
    assert!(up.stdout.contains(&url), "the URL is bracketed: {up}");
    assert!(
        up.stdout.contains("taken from RFAAS_TOKEN and saved to"),
        "{up}"
    );
    assert!(up.output().contains("bind: 127.0.0.1 -> ::1"), "{up}");
    assert_eq!(p.token(), own, "the token file and the gateway agree");
    let r = http()
        .get(format!("{url}/system/functions"))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The other commands find the gateway on ::1 and use the file's token.
    p.cli(&["details"]).ok();
    // A token that is not the platform's is named as the one at fault.
    let other: String = (0..48).map(|i| format!("{:x}", (i * 5 + 1) % 16)).collect();
    let wrong = p.cli_env(&["details"], &[("RFAAS_TOKEN", &other)]).failed();
    assert!(
        wrong
            .stderr
            .contains("refused the admin token in RFAAS_TOKEN")
            && wrong.stderr.contains("Unset RFAAS_TOKEN"),
        "{wrong}"
    );
}

/// The route of `name` as the gateway keeps it.
async fn route_of(p: &Platform, name: &str) -> serde_json::Value {
    let r = http()
        .get(p.url(&format!("/system/functions/{name}")))
        .bearer_auth(p.token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the route of {name}");
    r.json().await.unwrap()
}

/// Sets the `power` of `name`'s route, as the scaler does when it pauses or stops a function.
async fn set_power(p: &Platform, name: &str, power: &str) {
    let mut route = route_of(p, name).await;
    route["power"] = power.into();
    let r = http()
        .put(p.url(&format!("/system/functions/{name}")))
        .bearer_auth(p.token())
        .json(&route)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {name}: {}", r.status());
    assert_eq!(route_of(p, name).await["power"], power);
}

#[tokio::test]
async fn start_faas_leaves_paused_and_stopped_functions_asleep_and_restores_them_when_gone() {
    let p = Platform::start("restartpower");
    // The echo fixture under three more names.
    let work = tempfile::tempdir().unwrap();
    let pkg = work.path().join("sleepers");
    std::fs::create_dir_all(pkg.join("src")).unwrap();
    let manifest = std::fs::read_to_string(fixture("echo").join("Cargo.toml"))
        .unwrap()
        .replace(
            "../../../function-base",
            root().join("function-base").to_str().unwrap(),
        );
    std::fs::write(pkg.join("Cargo.toml"), manifest).unwrap();
    let mut source = std::fs::read_to_string(fixture("echo").join("src/lib.rs")).unwrap();
    let names = ["paused", "stopped", "gone"];
    for name in names {
        source.push_str(&format!(
            "\npub async fn {name}(req: Request) -> Response {{\n    echo(req).await\n}}\n"
        ));
    }
    std::fs::write(pkg.join("src/lib.rs"), source).unwrap();
    let entries: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n,
                "packageDir": pkg,
                "filePath": pkg.join("src").join("lib.rs"),
            })
        })
        .collect();
    let (_dir, file) = deploy_file(serde_json::Value::from(entries));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();

    // What the scaler leaves behind: a paused function, a stopped one, and a stopped one whose
    // containers were removed meanwhile.
    let paused = p.object("rfa-fn-paused");
    let stopped = p.object("rfa-fn-stopped");
    set_power(&p, "paused", "paused").await;
    docker(&["pause", &paused]);
    set_power(&p, "stopped", "stopped").await;
    docker(&["stop", "-t", "1", &stopped]);
    set_power(&p, "gone", "stopped").await;
    docker(&["rm", "-f", &p.object("rfa-fn-gone")]);
    let ids = (container_id(&paused), container_id(&stopped));

    let up = p.cli(&["startFaas"]).ok();
    // The sleeping ones are left as they are: not started, not recreated.
    assert_eq!((container_id(&paused), container_id(&stopped)), ids, "{up}");
    let state = |name: &str| inspect(name)["State"].clone();
    assert_eq!(state(&paused)["Paused"], true, "{up}");
    assert_eq!(state(&stopped)["Running"], false, "{up}");
    assert_eq!(route_of(&p, "paused").await["power"], "paused");
    assert_eq!(route_of(&p, "stopped").await["power"], "stopped");
    assert!(!up.output().contains("function 'paused'"), "{up}");
    assert!(!up.output().contains("function 'stopped'"), "{up}");
    // The one whose containers are gone is restored, and registered running.
    assert!(up.output().contains("restored function 'gone'"), "{up}");
    assert_eq!(running_replicas(&p, "gone").len(), 1);
    let gone = route_of(&p, "gone").await;
    assert!(
        gone["power"].is_null() || gone["power"] == "running",
        "{gone}"
    );
    let r = http().get(p.url("/functions/gone/")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // `stop` of a paused function resumes it so that it drains, then removes it.
    p.cli(&["stop", "paused"]).ok();
    assert!(
        docker_lines(&[
            "ps",
            "-a",
            "--filter",
            &format!("name=^{paused}$"),
            "--format",
            "{{.Names}}"
        ])
        .is_empty()
    );
}
