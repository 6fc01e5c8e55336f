//! rfaas on Docker Swarm (`startFaas --swarm`, docs/SWARM.md), end to end: the real `proxyCli`
//! against swarms of inner engines (`tests/src/inner_engine.rs`), so the host engine's swarm
//! mode is never touched. Where no inner engine can run these tests fail, unless
//! `RFAAS_ALLOW_NO_INNER_ENGINE=1` makes them print `SKIPPED: <reason>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rfaas_tests::otlp::Collector;
use rfaas_tests::swarm::{SETTLE, SwarmPlatform};
use rfaas_tests::{Platform, Receiver, deploy_file, docker, echo_entry, eventually, http, root};
use serde_json::{Value, json};

/// Calls `url` from `workers` loops until stopped; counts answers and keeps every failure.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    versions: Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
    hosts: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, workers: usize) -> Load {
        let load = Load {
            stop: Arc::default(),
            ok: Arc::default(),
            versions: Arc::default(),
            hosts: Arc::default(),
            failures: Arc::default(),
            handles: Vec::new(),
        };
        let mut handles = Vec::new();
        for _ in 0..workers {
            let (stop, ok, versions, hosts, failures) = (
                load.stop.clone(),
                load.ok.clone(),
                load.versions.clone(),
                load.hosts.clone(),
                load.failures.clone(),
            );
            let url = url.clone();
            handles.push(tokio::spawn(async move {
                let client = http();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            let v: Value = r.json().await.unwrap_or_default();
                            let version = v["version"].as_str().unwrap_or_default().to_string();
                            *versions.lock().unwrap().entry(version).or_default() += 1;
                            let host = v["hostname"].as_str().unwrap_or_default().to_string();
                            hosts.lock().unwrap().insert(host);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("status {status}: {body}"));
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            }));
        }
        Load { handles, ..load }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    fn seen(&self, version: &str) -> usize {
        self.versions
            .lock()
            .unwrap()
            .get(version)
            .copied()
            .unwrap_or(0)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }

    /// How many failed, and the first few, for an assertion message.
    fn failure_report(&self) -> String {
        let f = self.failures();
        format!("{} failed: {:?}", f.len(), &f[..f.len().min(5)])
    }

    /// Stops the loops; every call they started has ended (none hangs: the client's timeout is
    /// 30 s).
    async fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for h in std::mem::take(&mut self.handles) {
            h.await.unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failures())
    }
}

/// `proxyCli` in a blocking task (the load keeps running meanwhile).
async fn cli_async(s: &SwarmPlatform, args: &[&str]) -> rfaas_tests::Run {
    let mut cmd = std::process::Command::new(rfaas_tests::cli_path());
    cmd.args(args)
        .env("RFAAS_INSTANCE", &s.p.instance)
        .env("XDG_CONFIG_HOME", config_home(&s.p))
        .env("DOCKER_HOST", s.manager.docker_host())
        .env_remove("RFAAS_TOKEN");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    rfaas_tests::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn config_home(p: &Platform) -> std::path::PathBuf {
    p.token_path()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .to_path_buf()
}

fn details(s: &SwarmPlatform) -> Vec<Value> {
    let run = s.cli(&["details", "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn swarm_needs_a_manager_and_says_how_to_get_one() {
    // The host engine is never in swarm mode in these tests (they use inner engines).
    let mut p = Platform::new("swarm-no-manager");
    let run = p.start_faas(&["--swarm"]).failed();
    let out = run.output();
    assert!(out.contains("swarm manager"), "{out}");
    assert!(out.contains("docker swarm init"), "{out}");
    assert!(
        p.containers().is_empty(),
        "nothing was started: {:?}",
        p.containers()
    );
    let run = p.start_faas(&["--node-engine", "10.0.0.2:2375"]).failed();
    assert!(run.output().contains("needs --swarm"), "{run}");
    let run = p
        .start_faas(&["--swarm", "--node-engine", "http//x"])
        .failed();
    assert!(run.output().contains("tcp://<host>:<port>"), "{run}");
}

#[tokio::test]
async fn the_readme_flow_runs_on_a_single_node_swarm() {
    let Some(mut s) = SwarmPlatform::new("sw-readme", 0) else {
        return;
    };
    // Traces go to a collector on this host, as function tasks reach it.
    let collector = Collector::start().await;
    let otlp = format!("http://{}:{}", s.host_ip(), collector.port);
    let run = s.start_faas(&["--otlp-endpoint", &otlp]).ok();
    assert!(run.stdout.contains("rfaas is up on Swarm"), "{run}");
    assert!(run.stdout.contains(&s.url("")), "{run}");
    assert!(run.stdout.contains("every address"), "{run}");
    let services = s
        .manager
        .docker(&["service", "ls", "--format", "{{.Name}}"])
        .unwrap();
    for svc in ["rfa-nats", "rfa-store", "rfa-proxy"] {
        assert!(services.contains(&s.object(svc)), "{services}");
    }
    let net = s
        .manager
        .docker(&[
            "network",
            "inspect",
            "-f",
            "{{.Driver}} {{.Attachable}} {{index .Options \"com.docker.network.driver.mtu\"}}",
            &s.object("rfa-net"),
        ])
        .unwrap();
    assert_eq!(net.trim(), "overlay true 1350");
    let again = s.start_faas(&[]).ok();
    assert!(again.stdout.contains("already up and unchanged"), "{again}");

    // The examples, as the README deploys them.
    let examples = root().join("examples").join("deploy.json");
    let run = s.cli(&["deploy", examples.to_str().unwrap()]).ok();
    for name in ["method2", "method1", "method_async", "database_events"] {
        assert!(
            run.stdout.contains(&format!(
                "{name} {} deployed",
                s.url(&format!("/functions/{name}"))
            )),
            "{run}"
        );
    }
    // The platform's and the functions' names resolve on the overlay (startFaas checks it).
    let health: Value = http()
        .get(s.url("/system/health"))
        .bearer_auth(s.p.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["dns"], "ok", "{health}");
    for (role, name) in [
        ("store", s.object("rfa-store")),
        ("nats", s.object("rfa-nats")),
        // The gateway calls the scaler by its network alias.
        ("scaler", "rfa-scaler:".to_string()),
        ("function", "tasks.rfa-fn-method2".to_string()),
    ] {
        let found = health["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["role"] == role && n["name"].as_str().unwrap().starts_with(&name));
        assert!(
            found.is_some_and(|n| n["resolves"] == true),
            "{name} resolves: {health}"
        );
    }
    let client = http();
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let r = client
        .get(s.url("/functions/method2"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "Accepted at method 2\n");
    // One trace across the gateway and the function's task; the call counted in /metrics.
    collector
        .trace(&trace, Duration::from_secs(30), |spans| {
            spans.iter().any(|s| s.service == "rfa-proxy")
                && spans
                    .iter()
                    .any(|s| s.service.starts_with("rfa-fn-method2"))
        })
        .await;
    let metrics = client.get(s.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics
            .contains(r#"gateway_function_invocation_total{code="202",function_name="method2"}"#),
        "{metrics}"
    );
    // method1 calls method2 through the gateway (Ctx, RFAAS_GATEWAY_URL: its service name on
    // the overlay).
    let r = client
        .post(s.url("/functions/method1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "method2's own answer, passed on");
    assert_eq!(r.text().await.unwrap(), "Accepted at method 2\n");

    // Async with a callback to this host.
    let receiver = Receiver::start(0).await;
    let r = client
        .post(s.url("/functions/method_async"))
        .header("X-Callback-Url", s.callback_url(&receiver, "/done"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let call_id = r.headers()["x-call-id"].to_str().unwrap().to_string();
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(got[0].path, "/done");
    assert_eq!(got[0].headers["x-call-id"], call_id);
    assert_eq!(got[0].headers["x-function-status"], "200");

    // A store event drives the mainProcess function: the payment gets its invoice and email.
    let r = client
        .post(s.url("/functions/database_events/pay"))
        .body(r#"{"payer": "ann", "amount": 12.5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let paid = eventually(Duration::from_secs(20), "the invoice and email", || async {
        let list: Value = http()
            .get(s.url("/functions/database_events/payments"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let doc = list.as_array()?.first()?.clone();
        (doc["data"]["emailed"] == true && doc["data"]["invoice"].is_string()).then_some(doc)
    })
    .await;
    assert_eq!(paid["data"]["payer"], "ann");

    // details: every function ready, with its task on the manager.
    for row in details(&s) {
        assert_eq!(row["status"], "ready", "{row}");
        assert_eq!(row["replicas"], json!({"desired": 1, "ready": 1}), "{row}");
        assert_eq!(row["nodes"][s.manager.name()], 1, "{row}");
    }

    // Hardening Swarm honours, on a function task's container.
    let task = s
        .manager
        .docker(&[
            "ps",
            "-q",
            "--filter",
            &format!(
                "label=com.docker.swarm.service.name={}",
                s.object("rfa-fn-method2")
            ),
        ])
        .unwrap();
    let info = s
        .manager
        .docker(&[
            "inspect",
            "-f",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.State.Health.Status}}",
            task.lines().next().unwrap(),
        ])
        .unwrap();
    assert_eq!(info.trim(), "10001:10001 true [ALL] healthy");
    // Nothing but the gateway publishes a port.
    let published = s
        .manager
        .docker(&["service", "ls", "--format", "{{.Name}} {{.Ports}}"])
        .unwrap();
    for line in published.lines() {
        if !line.starts_with(&s.object("rfa-proxy")) {
            assert!(line.trim().split(' ').nth(1).is_none(), "{line}");
        }
    }

    // An instance is one mode.
    let run = s.cli(&["startFaas", "--defaults"]).failed();
    assert!(run.output().contains("runs on Swarm"), "{run}");

    // stopFaas removes the services, the secret and the overlay.
    let run = s.cli(&["stopFaas"]).ok();
    assert!(run.stdout.contains(&s.object("rfa-proxy")), "{run}");
    let left = s.manager.docker(&["service", "ls", "-q"]).unwrap();
    assert_eq!(left.trim(), "", "no service is left");
    let secrets = s.manager.docker(&["secret", "ls", "-q"]).unwrap();
    assert_eq!(secrets.trim(), "", "no secret is left");
    let nets = s
        .manager
        .docker(&["network", "ls", "--format", "{{.Name}}"])
        .unwrap();
    assert!(!nets.contains(&s.object("rfa-net")), "{nets}");
}

#[tokio::test]
async fn rolling_update_scale_and_rollback_fail_no_call() {
    let Some(mut s) = SwarmPlatform::new("sw-rolling", 0) else {
        return;
    };
    s.start_faas(&[]).ok();
    let mut entry = echo_entry("echo");
    entry["replicas"] = json!(2);
    entry["env"] = json!({"VERSION": "1"});
    let (_d1, v1) = deploy_file(json!([entry.clone()]));
    s.cli(&["deploy", v1.to_str().unwrap()]).ok();
    entry["env"] = json!({"VERSION": "2"});
    let (_d2, v2) = deploy_file(json!([entry]));

    // A new version rolls start-first under load: no call fails.
    let load = Load::start(s.url("/functions/echo/work"), 4);
    eventually(Duration::from_secs(10), "calls to version 1", || async {
        (load.seen("1") > 20).then_some(())
    })
    .await;
    let t = Instant::now();
    let run = cli_async(&s, &["deploy", v2.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{run}");
    let rolled = t.elapsed();
    assert!(run.stdout.contains("deployed"), "{run}");
    eventually(Duration::from_secs(10), "calls to version 2", || async {
        (load.seen("2") > 20).then_some(())
    })
    .await;
    let before = load.seen("1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(load.seen("1"), before, "version 1 no longer answers");
    assert!(load.failures().is_empty(), "{}", load.failure_report());
    eprintln!("rolling update of 2 replicas under load: {rolled:?}");

    // Scale 1 -> 5 -> 1 under the same load.
    for n in ["1", "5", "1"] {
        let run = cli_async(&s, &["scale", "echo", n]).await;
        assert_eq!(run.code, 0, "{run}");
        let want: u64 = n.parse().unwrap();
        let rows = details(&s);
        assert_eq!(rows[0]["replicas"]["ready"], want, "{rows:?}");
        assert_eq!(rows[0]["replicas"]["desired"], want, "{rows:?}");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    assert!(
        load.hosts.lock().unwrap().len() >= 5,
        "calls reached all five replicas: {:?}",
        load.hosts.lock().unwrap()
    );

    // A task killed mid-traffic: replaced; calls go on (at most the ones it held fail), none
    // hangs.
    s.cli(&["scale", "echo", "2"]).ok();
    let failed_before = load.failures().len();
    let victim = s
        .manager
        .docker(&[
            "ps",
            "-q",
            "--filter",
            &format!(
                "label=com.docker.swarm.service.name={}",
                s.object("rfa-fn-echo")
            ),
        ])
        .unwrap();
    let victim = victim.lines().next().unwrap().to_string();
    s.manager.docker(&["kill", &victim]).unwrap();
    let ok_at_kill = load.ok();
    eventually(SETTLE, "the killed task replaced", || async {
        let rows = details(&s);
        (rows[0]["replicas"]["ready"] == 2 && load.ok() > ok_at_kill + 100).then_some(())
    })
    .await;
    let (ok, failures) = load.stop().await;
    let new_failures = &failures[failed_before.min(failures.len())..];
    assert!(
        new_failures.len() <= 4,
        "at most the 4 calls in flight on the killed task fail: {} {:?}",
        new_failures.len(),
        &new_failures[..new_failures.len().min(5)]
    );
    for f in new_failures {
        assert!(f.starts_with("status 502"), "{f}");
    }
    assert!(ok > 500, "{ok} calls answered");

    // A version that never gets healthy is rolled back; the old one keeps serving.
    let mut boom = echo_entry("boom");
    boom["mainProcess"] = json!(true);
    let (_b1, b1) = deploy_file(json!([boom.clone()]));
    s.cli(&["deploy", b1.to_str().unwrap()]).ok();
    boom["env"] = json!({"BOOM": "1"});
    let (_b2, b2) = deploy_file(json!([boom]));
    let run = s.cli(&["deploy", b2.to_str().unwrap()]).failed();
    let out = run.output();
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains("previous version keeps serving"), "{out}");
    assert!(out.contains("boom: failing at start on purpose"), "{out}");
    let r = http().get(s.url("/functions/boom/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "boom is fine\n");
}

#[tokio::test]
async fn a_second_node_gets_images_from_rfaas_and_serves() {
    let Some(mut s) = SwarmPlatform::new("sw-two-nodes", 1) else {
        return;
    };
    let worker_host = s.workers[0].docker_host();
    // Through a worker: refused, with what to do.
    let run = s.cli_on(&s.workers[0], &["startFaas", "--swarm", "--port", "9999"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(run.output().contains("swarm worker"), "{run}");

    s.start_faas_without_scaler(&["--node-engine", &worker_host])
        .ok();
    let mut entry = echo_entry("echo");
    entry["replicas"] = json!(2);
    let (_d, file) = deploy_file(json!([entry]));
    let run = s.cli(&["deploy", file.to_str().unwrap()]).ok();
    assert!(run.output().contains(&format!("to {worker_host}")), "{run}");
    let image = s
        .manager
        .docker(&[
            "service",
            "inspect",
            "-f",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            &s.object("rfa-fn-echo"),
        ])
        .unwrap();
    let image = image.trim();
    assert!(
        s.workers[0].docker(&["image", "inspect", image]).is_ok(),
        "rfaas copied {image} to the worker"
    );
    // No scaler runs (no --engine-socket-gid): the CLI sets counts itself, and refuses 0
    // (nothing would start the function again on its next call).
    let run = s.cli(&["scale", "echo", "0"]).failed();
    assert!(run.output().contains("cannot be scaled to 0"), "{run}");
    let per_node = s.tasks_per_node("echo");
    assert_eq!(per_node[s.workers[0].name()], 1, "{per_node:?}");
    assert_eq!(per_node[s.manager.name()], 1, "{per_node:?}");
    // The worker's replica answers through the gateway.
    let worker_tasks = s.workers[0].docker(&["ps", "-q", "--no-trunc"]).unwrap();
    let worker_task = worker_tasks.lines().next().unwrap().to_string();
    let client = http();
    eventually(
        Duration::from_secs(10),
        "an answer from the worker's replica",
        || async {
            let v: Value = client
                .get(s.url("/functions/echo"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            worker_task
                .starts_with(v["hostname"].as_str()?)
                .then_some(())
        },
    )
    .await;

    // The worker goes away: its task is rescheduled on the manager, calls go on.
    let load = Load::start(s.url("/functions/echo"), 2);
    let worker = s.workers.remove(0);
    docker(&["stop", "-t", "0", worker.name()]);
    eventually(
        SETTLE,
        "echo's tasks rescheduled on the manager",
        || async {
            let per = s.tasks_per_node("echo");
            (per.get(s.manager.name()) == Some(&json!(2))).then_some(())
        },
    )
    .await;
    let ok_then = load.ok();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failures) = load.stop().await;
    assert!(ok > ok_then + 20, "calls go on: {ok_then} then {ok}");
    assert!(
        failures.len() <= 2,
        "at most the calls in flight on the lost node fail: {} {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // A deploy that cannot reach a node's engine says which one and changes nothing.
    let mut entry = echo_entry("echo");
    entry["replicas"] = json!(2);
    entry["env"] = json!({"VERSION": "2"});
    let (_d2, file2) = deploy_file(json!([entry]));
    let run = s.cli(&["deploy", file2.to_str().unwrap()]).failed();
    assert!(run.output().contains(&worker_host), "{run}");
    let v: Value = client
        .get(s.url("/functions/echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], "", "the old version keeps serving");
    drop(worker);
}

#[tokio::test]
async fn the_scaler_drives_service_replicas_and_a_call_wakes_a_stopped_function() {
    let Some(mut s) = SwarmPlatform::new("sw-autoscale", 0) else {
        return;
    };
    s.start_faas(&[]).ok();
    let services = s
        .manager
        .docker(&["service", "ls", "--format", "{{.Name}}"])
        .unwrap();
    assert!(services.contains(&s.object("rfa-scaler")), "{services}");
    let mut entry = echo_entry("echo");
    entry["scale"] =
        json!({"min": 0, "max": 3, "targetInflight": 2, "idleStop": "6s", "scaleInDelay": "3s"});
    let (_d, file) = deploy_file(json!([entry]));
    s.cli(&["deploy", file.to_str().unwrap()]).ok();

    // 6 callers of a 300 ms call: the scaler adds tasks until each has about 2.
    let load = Load::start(s.url("/functions/echo/slow?ms=300"), 6);
    eventually(SETTLE, "3 tasks under load", || async {
        let rows = details(&s);
        (rows[0]["replicas"]["ready"] == 3).then_some(())
    })
    .await;
    let report = load.failure_report();
    let (ok, failures) = load.stop().await;
    assert!(failures.is_empty(), "{report}");
    assert!(ok > 20, "{ok}");

    // Idle: stopped (Swarm cannot pause a task), no task left.
    eventually(SETTLE, "echo stopped when idle", || async {
        let rows = details(&s);
        (rows[0]["power"] == "stopped" && rows[0]["replicas"]["ready"] == 0).then_some(())
    })
    .await;
    // The next call is held, wakes it, and is answered.
    let t = Instant::now();
    let r = http()
        .get(s.url("/functions/echo/hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eprintln!("cold wake of a stopped service: {:?}", t.elapsed());
    let rows = details(&s);
    assert_eq!(rows[0]["power"], "running", "{rows:?}");
    assert!(
        rows[0]["replicas"]["ready"].as_u64().unwrap() >= 1,
        "{rows:?}"
    );

    // scale goes through the gateway and the scaler, 0 included.
    s.cli(&["scale", "echo", "2"]).ok();
    assert_eq!(details(&s)[0]["replicas"]["ready"], 2);
    s.cli(&["scale", "echo", "0"]).ok();
    assert_eq!(details(&s)[0]["power"], "stopped");
    let r = http()
        .get(s.url("/functions/echo/again"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
