//! Issue #3: HTTP functions end to end — deploy, call through the gateway, redeploy, stop, and
//! every bad input, with the real CLI, cargo and Docker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rfaas_tests::*;
use serde_json::{Value, json};

fn problem(v: &Value, status: u16) {
    assert_eq!(v["status"], status, "{v}");
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
}

#[tokio::test]
async fn examples_deploy_call_each_other_and_stop() {
    let p = Platform::start("examples");
    let run = p
        .cli(&[
            "deploy",
            root()
                .join("examples/method2/deploy.json")
                .to_str()
                .unwrap(),
        ])
        .ok();
    assert!(
        run.stdout
            .contains(&format!("method2 {} deployed", p.url("/functions/method2"))),
        "{run}"
    );
    assert!(run.stdout.contains("method1"), "{run}");

    let client = http();
    let r = client
        .get(p.url("/functions/method2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "Accepted at method 2\n");
    // method1 calls method2 through the gateway with Ctx: no URL, no client of its own.
    let r = client
        .post(p.url("/functions/method1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "Accepted at method 2\n");
    // A Ctx call of a function that is not deployed: the gateway's 404 problem becomes a typed
    // error, which method1 passes on with `?` as a 502 naming the missing function (method1
    // itself exists).
    let r = client
        .get(p.url("/functions/nothere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:rfaas:problem:unknown-function", "{v}");
    let r = client
        .get(p.url("/functions/method1?call=nothere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    problem(&v, 502);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("'nothere' is not deployed"),
        "{v}"
    );
    // A loop (method1 calling itself, each call with its own query) ends at the gateway's depth
    // limit with 508, passed back along the chain.
    let r = client
        .get(p.url("/functions/method1?call=method1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 508);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "urn:rfaas:problem:call-loop", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("16"), "{v}");
    // And a client may not claim a depth that is not a number.
    let r = client
        .get(p.url("/functions/method2"))
        .header("rfa-call-depth", "lots")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // greet: Ctx + Path + Query + Json, an ordinary axum handler.
    let r = client
        .post(p.url("/functions/greet/fr?shout=true"))
        .json(&json!({"name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["greeting"], "BONJOUR, ANN!", "{v}");
    let docs = all_docs(&p, "greetings").await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["id"], v["id"]);
    assert_eq!(
        docs[0]["data"]["by"], "greet",
        "Ctx knows its function: {docs:?}"
    );
    let r = client
        .post(p.url("/functions/greet/en"))
        .json(&json!({"name": "Bo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["greeting"], "Hello, Bo!");
    // A bad body gets axum's own rejection, before the handler runs.
    let r = client
        .post(p.url("/functions/greet/en"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("Failed to parse the request body as JSON"),
        "{text}"
    );
    let r = client
        .post(p.url("/functions/greet/en"))
        .json(&json!({"nom": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("missing field `name`"));
    let r = client
        .post(p.url("/functions/greet/xx"))
        .json(&json!({"name": "Ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        all_docs(&p, "greetings").await.len(),
        2,
        "refused calls wrote nothing"
    );

    let details = p.cli(&["details", "--json"]).ok();
    let list: Value = serde_json::from_str(&details.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greet", "method1", "method2"]);
    for f in list.as_array().unwrap() {
        assert_eq!(f["kind"], "http");
        assert_eq!(f["status"], "ready");
        assert_eq!(f["replicas"], json!({"desired": 1, "ready": 1}), "{f}");
        assert_eq!(f["power"], "running", "{f}");
        assert!(f.get("scale").is_none(), "no scale block was deployed: {f}");
        assert!(
            f["image"].as_str().unwrap().starts_with(&format!(
                "rfa-fn-{}-{}:",
                f["name"].as_str().unwrap(),
                p.instance
            )),
            "each instance tags its own function images: {f}"
        );
        assert_eq!(
            f["url"],
            p.url(&format!("/functions/{}", f["name"].as_str().unwrap()))
        );
    }
    let table = p.cli(&["details"]).ok();
    assert!(table.stdout.starts_with("NAME"), "{table}");

    // Function containers are locked down like the platform's, and reach the host.
    let c = inspect(&p.object("rfa-fn-method2"));
    assert_eq!(c["Config"]["Labels"]["io.rfaas.role"], "function");
    assert_eq!(c["Config"]["Labels"]["io.rfaas.function"], "method2");
    assert_eq!(c["Config"]["User"], "10001:10001");
    assert_eq!(c["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(c["HostConfig"]["Memory"], 128 * 1024 * 1024);
    assert_eq!(
        c["HostConfig"]["ExtraHosts"],
        json!(["host.docker.internal:host-gateway"])
    );
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"RFAAS_FUNCTION_NAME=method2"), "{env:?}");
    assert!(
        env.contains(&format!("RFAAS_GATEWAY_URL=http://{}:9999", p.object("rfa-proxy")).as_str()),
        "{env:?}"
    );
    assert!(
        env.iter().any(|e| e.starts_with("RFAAS_NATS_URL=nats://")),
        "{env:?}"
    );
    assert!(
        env.iter().any(|e| e.starts_with("RFAAS_STORE_URL=http://")),
        "{env:?}"
    );

    let logs = p.cli(&["logs", "method2", "--tail", "5"]).ok();
    assert!(
        logs.output().contains("\"level\""),
        "JSON log lines: {logs}"
    );

    // Stop one: its route and container go; the other keeps answering.
    p.cli(&["stop", "method1"]).ok();
    let r = client
        .post(p.url("/functions/method1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    problem(&r.json().await.unwrap(), 404);
    assert!(
        !p.containers().iter().any(|c| c.contains("method1")),
        "{:?}",
        p.containers()
    );
    assert_eq!(
        client
            .get(p.url("/functions/method2"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let unknown = p.cli(&["stop", "nope"]).failed();
    assert!(
        unknown.stderr.contains("nope") && unknown.stderr.contains("details"),
        "{unknown}"
    );
}

#[tokio::test]
async fn requests_reach_the_function_intact_and_errors_are_problems() {
    let mut p = Platform::new("forwarding");
    p.start_faas(&["--upstream-timeout", "2"]).ok();
    let (_dir, file) = deploy_file(json!([echo_entry("echo")]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();

    // Path, query, method and headers arrive; hop-by-hop headers do not.
    let r = client
        .request(
            reqwest::Method::PATCH,
            p.url("/functions/echo/a/b?x=1&y=two"),
        )
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-dropped")
        .header("x-dropped", "1")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["method"], "PATCH");
    assert_eq!(v["path"], "/a/b");
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["bodyLength"], 5);
    assert_eq!(v["headers"]["x-custom"], "kept");
    assert!(v["headers"]["x-dropped"].is_null(), "{v}");
    assert!(v["headers"]["x-forwarded-for"].is_string(), "{v}");
    assert_eq!(
        v["headers"]["x-forwarded-host"],
        format!("127.0.0.1:{}", p.port)
    );
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");

    // A 5 MB body streams through and back intact.
    let body: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|i: usize| (i * 7 % 251) as u8)
        .collect();
    let r = client
        .post(p.url("/functions/echo/body"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.unwrap().as_ref() == body.as_slice(),
        "5 MB round trip differs"
    );

    // A body above the limit is refused (declared length: before anything is sent upstream).
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(
        b"POST /functions/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 17000000\r\n\r\nabc",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = raw.read(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    // Past the timeout: 504. Function down: 502. Both problem+json.
    let r = client
        .get(p.url("/functions/echo/slow?ms=4000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    problem(&r.json().await.unwrap(), 504);
    docker(&["stop", &p.object("rfa-fn-echo")]);
    let r = client.get(p.url("/functions/echo")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let details: Value = serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
    assert_eq!(details[0]["status"], "down");
}

#[tokio::test]
async fn redeploy_under_load_drops_nothing_and_routes_survive_a_proxy_restart() {
    let p = Platform::start("redeploy");
    let mut entry = echo_entry("echo");
    entry["replicas"] = json!(2);
    entry["env"] = json!({"VERSION": "1"});
    let (_d1, v1) = deploy_file(json!([entry.clone()]));
    p.cli(&["deploy", v1.to_str().unwrap()]).ok();
    entry["env"] = json!({"VERSION": "2"});
    let (_d2, v2) = deploy_file(json!([entry]));

    let load = Load::start(p.url("/functions/echo/work"), "2");
    let run = cli_off_thread(&p, &["deploy", v2.to_str().unwrap()]).await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let ok = load.finish("version 2").await;
    assert!(ok > 50);
    let replicas = p
        .containers()
        .into_iter()
        .filter(|c| c.contains("rfa-fn-echo"))
        .count();
    assert_eq!(
        replicas,
        2,
        "the old replicas are gone: {:?}",
        p.containers()
    );
    assert_eq!(
        inspect(&p.object("rfa-fn-echo-1"))["State"]["Running"],
        true
    );

    // The gateway restarts (crash): its routes come back from its volume.
    docker(&["restart", &p.object("rfa-proxy")]);
    let client = http();
    eventually(
        Duration::from_secs(20),
        "the route after a proxy restart",
        || async {
            let r = client.get(p.url("/functions/echo")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
}

/// Four clients calling an echo function in a loop while a deploy or rollback runs, counting the
/// answers of the version `want` (the echo fixture's `VERSION`) and every failed call.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, want: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let workers = (0..4)
            .map(|_| {
                let (stop, ok, seen) = (stop.clone(), ok.clone(), seen.clone());
                let (failures, url) = (failures.clone(), url.clone());
                tokio::spawn(async move {
                    let client = http();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().await.unwrap_or_default();
                                if v["version"] == want {
                                    seen.fetch_add(1, Ordering::Relaxed);
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", r.status())),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            seen,
            failures,
            workers,
        }
    }

    /// Waits until the wanted version has answered 20 calls, stops the clients, and asserts
    /// that no call failed. Returns how many succeeded.
    async fn finish(self, what: &str) -> usize {
        let seen = self.seen.clone();
        eventually(
            Duration::from_secs(10),
            &format!("calls answered by {what}"),
            || async { (seen.load(Ordering::Relaxed) > 20).then_some(()) },
        )
        .await;
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{what}: {} failed of {ok}: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        ok
    }
}

/// Runs `proxyCli <args>` for `p` on a blocking thread, so that load keeps flowing meanwhile.
async fn cli_off_thread(p: &Platform, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let instance = p.instance.clone();
    let config_home = p
        .token_path()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(cli_path())
            .args(&args)
            .env("RFAAS_INSTANCE", instance)
            .env("XDG_CONFIG_HOME", config_home)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Issue #18 part 4: `rollback` runs the previous version again under load with no failed call,
/// a second rollback goes forward again, and `details` shows both versions.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_under_load_drops_nothing_and_goes_back_and_forth() {
    let p = Platform::start("rollback");
    let mut entry = echo_entry("echo");
    entry["replicas"] = json!(2);
    entry["env"] = json!({"VERSION": "1"});
    let (_d1, v1) = deploy_file(json!([entry.clone()]));
    p.cli(&["deploy", v1.to_str().unwrap()]).ok();
    // Nothing to go back to yet; an unknown function.
    let run = p.cli(&["rollback", "echo"]).failed();
    assert!(run.stderr.contains("no previous version"), "{run}");
    let run = p.cli(&["rollback", "nothere"]).failed();
    assert!(run.stderr.contains("no function named nothere"), "{run}");
    // Redeploying the same version keeps no previous one either.
    p.cli(&["deploy", v1.to_str().unwrap()]).ok();
    assert!(
        p.cli(&["rollback", "echo"])
            .failed()
            .stderr
            .contains("no previous version")
    );

    entry["env"] = json!({"VERSION": "2"});
    let (_d2, v2) = deploy_file(json!([entry]));
    p.cli(&["deploy", v2.to_str().unwrap()]).ok();
    let details: Value = serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
    let echo = &details[0];
    assert_eq!(echo["previous"]["image"], echo["image"], "{echo}");
    assert!(
        echo["previous"]["deployedAt"].as_str().unwrap() < echo["deployedAt"].as_str().unwrap()
    );
    let table = p.cli(&["details"]).ok().stdout;
    assert!(
        table.lines().next().unwrap().ends_with("PREVIOUS"),
        "{table}"
    );

    let client = http();
    let version = |want: &'static str| {
        let client = client.clone();
        let url = p.url("/functions/echo/v");
        async move {
            let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            (v["version"] == want).then_some(())
        }
    };
    version("2").await.expect("version 2 serves");
    for (back_to, now) in [("1", "2"), ("2", "1")] {
        let load = Load::start(p.url("/functions/echo/work"), back_to);
        let run = cli_off_thread(&p, &["rollback", "echo"]).await;
        let said = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(said.contains("rolled back to"), "{said}");
        load.finish(&format!("rollback to version {back_to}")).await;
        version(back_to)
            .await
            .expect("the rolled-back version serves");
        let details: Value =
            serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
        assert_eq!(details[0]["replicas"], json!({"desired": 2, "ready": 2}));
        assert!(
            details[0]["previous"].is_object(),
            "{now} is kept to go forward again"
        );
    }
}

/// Kills the child when dropped (a failing test must not leave `proxyCli dev` running).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue #18 part 5: `dev` deploys, then deploys again on save: a one-line change answers within
/// seconds; a save that does not compile is shown and the old version keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn dev_redeploys_on_save_and_keeps_serving_through_a_broken_save() {
    let p = Platform::start("dev");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev_fn");
    p.cli(&["new", "dev_fn", "--dir", dir.to_str().unwrap()])
        .ok();
    let log_path = tmp.path().join("dev.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let config_home = p
        .token_path()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .to_path_buf();
    let _dev = KillOnDrop(
        std::process::Command::new(cli_path())
            .args(["dev", dir.join("deploy.json").to_str().unwrap()])
            .env("RFAAS_INSTANCE", &p.instance)
            .env("XDG_CONFIG_HOME", config_home)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = http();
    let answer = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.ok()?.text().await.ok()
    };
    let url = p.url("/functions/dev_fn/x");
    eventually(Duration::from_secs(180), "the first deploy by dev", || {
        let (c, u) = (client.clone(), url.clone());
        async move {
            answer(c, u)
                .await
                .filter(|t| t == "Hello from dev_fn at /x\n")
        }
    })
    .await;
    let dev_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually(Duration::from_secs(10), "dev watching", || async {
        dev_log().contains("watching").then_some(())
    })
    .await;

    // A one-line change.
    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        source.replacen("Hello from {} at {}", "Bonjour de {} à {}", 1),
    )
    .unwrap();
    let saved = std::time::Instant::now();
    eventually(Duration::from_secs(60), "the change answering", || {
        let (c, u) = (client.clone(), url.clone());
        async move {
            answer(c, u)
                .await
                .filter(|t| t == "Bonjour de dev_fn à /x\n")
        }
    })
    .await;
    eprintln!(
        "dev: save → new answer in {:.1} s",
        saved.elapsed().as_secs_f64()
    );

    // A save that does not compile: the error is shown, the previous version keeps serving.
    std::fs::write(&lib, "use function_base::prelude::*;\npub async fn dev_fn() -> String {\n    let n: u32 = \"x\";\n    n.to_string()\n}\n").unwrap();
    eventually(
        Duration::from_secs(60),
        "dev reporting the compile error",
        || async {
            let log = dev_log();
            (log.contains("mismatched types") && log.contains("keeps serving")).then_some(())
        },
    )
    .await;
    assert_eq!(
        answer(client.clone(), url.clone()).await.as_deref(),
        Some("Bonjour de dev_fn à /x\n")
    );
    // Fixed again: it serves the fix.
    std::fs::write(&lib, "use function_base::prelude::*;\npub async fn dev_fn() -> &'static str {\n    \"fixed\\n\"\n}\n").unwrap();
    eventually(Duration::from_secs(60), "the fix answering", || {
        let (c, u) = (client.clone(), url.clone());
        async move { answer(c, u).await.filter(|t| t == "fixed\n") }
    })
    .await;
}

/// A small crate in a temp dir, for bad-input cases.
fn crate_with(dir: &std::path::Path, cargo_deps: &str, lib: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("[package]\nname = \"badfn\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n{cargo_deps}\n\n[workspace]\n"),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
}

#[tokio::test]
async fn bad_deploys_get_clear_errors_and_leave_the_running_version_alone() {
    let p = Platform::start("baddeploy");
    let (_d, good) = deploy_file(json!([echo_entry("echo")]));
    p.cli(&["deploy", good.to_str().unwrap()]).ok();
    let id = container_id(&p.object("rfa-fn-echo"));
    let fb = format!(
        "function-base = {{ path = {:?} }}",
        root().join("function-base").display().to_string()
    );
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("pkg");

    let deploy_json = |text: &str| {
        let path = tmp.path().join("d.json");
        std::fs::write(&path, text).unwrap();
        p.cli(&["deploy", path.to_str().unwrap()]).failed()
    };
    let entry = |name: &str, pkg_dir: &std::path::Path, file: &std::path::Path| {
        json!({"deploy": [{"name": name, "packageDir": pkg_dir, "filePath": file}]}).to_string()
    };
    let expect = |run: Run, needles: &[&str]| {
        for n in needles {
            assert!(run.stderr.contains(n), "expected {n:?} in:\n{run}");
        }
    };

    expect(
        p.cli(&["deploy", "/nonexistent/deploy.json"]).failed(),
        &["/nonexistent/deploy.json", "cannot read"],
    );
    expect(deploy_json("{ not json"), &["d.json:1:"]);
    expect(
        deploy_json(r#"{"deploy":[{"name":"x","packageDir":".","filePath":"a.rs","asink":true}]}"#),
        &["unknown field `asink`"],
    );
    expect(deploy_json(r#"{"deploy":[]}"#), &["empty"]);
    expect(
        deploy_json(r#"{"deploy":[{"name":"Bad-Name","packageDir":".","filePath":"a.rs"}]}"#),
        &["Bad-Name", "is not a valid function name"],
    );
    expect(
        deploy_json(
            r#"{"deploy":[{"name":"a","packageDir":".","filePath":"a.rs"},{"name":"a","packageDir":".","filePath":"a.rs"}]}"#,
        ),
        &["appears in deploy[0], deploy[1]"],
    );
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    expect(
        deploy_json(&entry(
            "x",
            &tmp.path().join("empty"),
            &tmp.path().join("empty/a.rs"),
        )),
        &["not a Cargo package"],
    );
    crate_with(&pkg, "", "pub async fn x(req: Request) {}");
    expect(
        deploy_json(&entry("x", &pkg, &pkg.join("src/lib.rs"))),
        &["does not depend on function-base"],
    );
    crate_with(
        &pkg,
        &fb,
        "use function_base::prelude::*;\nfn x(req: Request) {}\nasync fn y(req: Request) {}\npub async fn z(a: u8, b: u8) {}\n",
    );
    expect(
        deploy_json(&entry("x", &pkg, &pkg.join("src/missing.rs"))),
        &["does not exist"],
    );
    std::fs::write(
        tmp.path().join("outside.rs"),
        "pub async fn x(req: Request) {}",
    )
    .unwrap();
    expect(
        deploy_json(&entry("x", &pkg, &tmp.path().join("outside.rs"))),
        &["outside packageDir"],
    );
    let lib = pkg.join("src/lib.rs");
    expect(
        deploy_json(&entry("nothere", &pkg, &lib)),
        &[
            "lib.rs:1:1",
            "no top-level function named 'nothere'",
            "pub async fn nothere(<axum extractors",
        ],
    );
    expect(
        deploy_json(&entry("y", &pkg, &lib)),
        &["lib.rs:3:7", "not pub"],
    );
    std::fs::write(
        &lib,
        "use function_base::prelude::*;\npub fn x(req: Request) {}\n",
    )
    .unwrap();
    expect(
        deploy_json(&entry("x", &pkg, &lib)),
        &[
            "lib.rs:2:5",
            "not async",
            "Expected: pub async fn x(<axum extractors, e.g. Json<T>",
        ],
    );
    std::fs::write(&lib, "pub async fn z(a: u8, b: u8) {}\n").unwrap();
    expect(
        deploy_json(&entry("z", &pkg, &lib)),
        &[
            "lib.rs:1:19",
            "argument 1 of 'z' is `u8`, which is a primitive",
        ],
    );
    std::fs::write(
        &lib,
        "use function_base::prelude::*;\npub async fn z(\n    Json(a): Json<u8>,\n    b: String,\n) {}\n",
    )
    .unwrap();
    expect(
        deploy_json(&entry("z", &pkg, &lib)),
        &[
            "lib.rs:4:8",
            "two extractors that read the request body",
            "`Json<u8>` at ",
            "lib.rs:3:14",
        ],
    );

    // What only the compiler can tell, told at the user's line with the compiler's words.
    std::fs::write(
        &lib,
        "use function_base::prelude::*;\npub struct Greet;\npub async fn z(\n    g: Greet,\n    \
         h: HeaderMap,\n) -> String {\n    String::new()\n}\n",
    )
    .unwrap();
    let run = deploy_json(&entry("z", &pkg, &lib));
    expect(
        run,
        &[
            "lib.rs:4:8: argument 1 of 'z', `Greet`, is not an axum extractor",
            "FromRequestParts",
            "does not compile",
        ],
    );
    std::fs::write(
        &lib,
        "use function_base::prelude::*;\npub async fn z(h: HeaderMap) -> String {\n    \
         let kept = std::rc::Rc::new(h.len());\n    \
         function_base::tokio::task::yield_now().await;\n    kept.to_string()\n}\n",
    )
    .unwrap();
    let run = deploy_json(&entry("z", &pkg, &lib));
    expect(
        run,
        &[
            "lib.rs:2:14: 'z' returns a future that is not Send",
            "`Rc<usize>` cannot be sent between threads safely",
            "does not compile",
        ],
    );
    std::fs::write(
        &lib,
        "use function_base::prelude::*;\npub async fn z(Jsn(v): Jsn<u8>) -> String {\n    \
         v.to_string()\n}\n",
    )
    .unwrap();
    let run = deploy_json(&entry("z", &pkg, &lib));
    expect(
        run,
        &["cannot find", "Jsn", "src/lib.rs:2:", "does not compile"],
    );

    // Code that does not compile: cargo's error, with file and line, and nothing changes.
    std::fs::write(&lib, "use function_base::prelude::*;\npub async fn echo(req: Request) -> impl IntoResponse {\n    let n: u32 = \"text\";\n    n.to_string()\n}\n").unwrap();
    let run = deploy_json(&entry("echo", &pkg, &lib));
    expect(
        run,
        &["mismatched types", "src/lib.rs:3", "does not compile"],
    );

    // A function that panics at start: never healthy, clear error, the old version kept.
    let boom_dir = fixture("echo");
    let mut boom = json!({"name": "boom", "packageDir": boom_dir, "filePath": boom_dir.join("src/lib.rs"), "mainProcess": true});
    let (_b1, b1) = deploy_file(json!([boom.clone()]));
    p.cli(&["deploy", b1.to_str().unwrap()]).ok();
    boom["env"] = json!({"BOOM": "1"});
    let (_b2, b2) = deploy_file(json!([boom]));
    let run = p.cli(&["deploy", b2.to_str().unwrap()]).failed();
    expect(
        run,
        &[
            "boom: failing at start on purpose",
            "previous version keeps serving",
        ],
    );
    let client = http();
    let r = client.get(p.url("/functions/boom/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "boom is fine\n");
    assert_eq!(
        p.containers().iter().filter(|c| c.contains("boom")).count(),
        1,
        "the failed replica was removed: {:?}",
        p.containers()
    );

    // Through all of it, echo kept serving from the same container.
    assert_eq!(container_id(&p.object("rfa-fn-echo")), id);
    assert_eq!(
        client
            .get(p.url("/functions/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Issue #18 part 7: deploying a function of another kind (async, mainProcess) after an HTTP one
/// compiles only the user's crate and its wrapper: every kind has one feature set and shares
/// the target, so no dependency (axum, hyper, tonic, …) is compiled again.
#[tokio::test]
async fn a_function_of_another_kind_compiles_no_dependency_again() {
    let p = Platform::start("secondkind");
    let entry = |name: &str, dir: &str, extra: Value| {
        let dir = root().join("examples").join(dir);
        let mut e = json!({"name": name, "packageDir": dir, "filePath": dir.join("src/lib.rs")});
        if let (Some(e), Value::Object(extra)) = (e.as_object_mut(), extra) {
            e.extend(extra);
        }
        e
    };
    let (_a, first) = deploy_file(json!([entry("method2", "method2", json!({}))]));
    p.cli(&["deploy", first.to_str().unwrap()]).ok();
    for next in [
        entry("method_async", "async", json!({"async": true})),
        entry(
            "database_events",
            "database-events",
            json!({"mainProcess": true}),
        ),
    ] {
        let (_f, file) = deploy_file(json!([next.clone()]));
        let started = std::time::Instant::now();
        let run = p.cli(&["deploy", file.to_str().unwrap()]).ok();
        let compiled: Vec<&str> = run
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Compiling "))
            .collect();
        let package = next["packageDir"].as_str().unwrap();
        assert!(
            compiled
                .iter()
                .all(|l| l.contains(package) || l.starts_with("Compiling rfafn-")),
            "only the user's crate and the wrapper are compiled: {compiled:#?}"
        );
        eprintln!(
            "deploy of {} after an HTTP function: {:.1} s",
            next["name"],
            started.elapsed().as_secs_f64()
        );
    }
}

/// The scaffolds' own tests pass as generated, with `cargo test` and no Docker: the harness
/// (function_base::testing) calls the handler and the service in-process.
#[test]
fn scaffolds_pass_their_own_cargo_test_without_docker() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, kind) in [("hello_t", "http"), ("shop_t", "main")] {
        let dir = tmp.path().join(name);
        let out = std::process::Command::new(cli_path())
            .args(["new", name, "--kind", kind, "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("cargo test --manifest-path"), "{said}");
        // Release, in the workspace's target: the dependencies are compiled already.
        let out = std::process::Command::new("cargo")
            .args(["test", "--release", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", root().join("target"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("test tests::says_hello ... ok")
                && stdout.contains("1 passed; 0 failed"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn new_scaffolds_deploy_as_they_are() {
    let p = Platform::start("scaffold");
    let tmp = tempfile::tempdir().unwrap();
    let http_dir = tmp.path().join("hello_fn");
    let main_dir = tmp.path().join("shop");
    p.cli(&["new", "hello_fn", "--dir", http_dir.to_str().unwrap()])
        .ok();
    p.cli(&[
        "new",
        "shop",
        "--kind",
        "main",
        "--dir",
        main_dir.to_str().unwrap(),
    ])
    .ok();
    let again = p
        .cli(&["new", "hello_fn", "--dir", http_dir.to_str().unwrap()])
        .failed();
    assert!(again.stderr.contains("exists"), "{again}");
    let bad = p.cli(&["new", "Hello"]).failed();
    assert!(bad.stderr.contains("not a valid function name"), "{bad}");

    p.cli(&["deploy", http_dir.join("deploy.json").to_str().unwrap()])
        .ok();
    p.cli(&["deploy", main_dir.join("deploy.json").to_str().unwrap()])
        .ok();
    let client = http();
    let r = client
        .get(p.url("/functions/hello_fn/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Hello from hello_fn at /x\n");
    let r = client
        .get(p.url("/functions/shop/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "Hello from shop\n");
    let details: Value = serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
    assert_eq!(details[1]["kind"], "main");
}
