//! Scaling on one host (issue #16), end to end with the real engine, NATS, CLI and scaler:
//! idle functions pause and stop and their next call wakes them; async calls to a paused
//! function are all answered once; load grows a function toward `max` and its end shrinks it back;
//! `proxyCli scale` moves the count under load; none of it fails a call. Faults: the scaler
//! killed while a function is paused, the gateway restarted while paused, a redeploy of a paused
//! function, and the bad inputs of `scale`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rfaas_tests::*;

/// `(container name, state)` of every container of function `name` in `p` (`running`,
/// `paused`, `exited`, …).
fn replicas(p: &Platform, name: &str) -> Vec<(String, String)> {
    docker_lines(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.rfaas.instance={}", p.instance),
        "--filter",
        &format!("label=io.rfaas.function={name}"),
        "--format",
        "{{.Names}} {{.State}}",
    ])
    .into_iter()
    .filter_map(|l| {
        l.split_once(' ')
            .map(|(n, s)| (n.to_string(), s.to_string()))
    })
    .collect()
}

fn states(p: &Platform, name: &str) -> Vec<String> {
    let mut s: Vec<String> = replicas(p, name).into_iter().map(|(_, s)| s).collect();
    s.sort();
    s
}

fn details_of(p: &Platform, name: &str) -> serde_json::Value {
    let run = p.cli(&["details", "--json"]).ok();
    let list: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("details --json: {e}\n{run}"));
    list.as_array()
        .and_then(|l| l.iter().find(|f| f["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in details: {run}"))
}

fn scaled_entry(name: &str, scale: serde_json::Value) -> serde_json::Value {
    let mut entry = echo_entry(name);
    entry["scale"] = scale;
    entry
}

async fn deploy(p: &Platform, entries: serde_json::Value) {
    let (_dir, file) = deploy_file(entries);
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
}

/// Waits until every replica of `name` is in `state`.
async fn until_all(p: &Platform, name: &str, state: &str, timeout: Duration) {
    eventually(timeout, &format!("{name} {state}"), || async {
        let s = states(p, name);
        (!s.is_empty() && s.iter().all(|x| x == state)).then_some(())
    })
    .await;
}

async fn get(url: &str) -> (u16, serde_json::Value) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn an_idle_function_pauses_and_every_call_over_pauses_succeeds() {
    let p = Platform::start("pause");
    deploy(
        &p,
        serde_json::json!([scaled_entry(
            "echo",
            serde_json::json!({ "min": 0, "max": 2, "idlePause": "2s" })
        )]),
    )
    .await;
    let url = p.url("/functions/echo/hello");
    let (status, body) = get(&url).await;
    assert_eq!((status, body["path"].as_str()), (200, Some("/hello")));

    // 5 rounds of 10 calls, each round after the function paused: all 50 answer 200 correctly.
    for round in 0..5 {
        until_all(&p, "echo", "paused", Duration::from_secs(20)).await;
        if round == 0 {
            let d = details_of(&p, "echo");
            assert_eq!(d["power"], "paused", "{d}");
        }
        let started = Instant::now();
        let calls = (0..10).map(|i| {
            let url = format!("{url}?round={round}&i={i}");
            async move { get(&url).await }
        });
        for (status, body) in futures_util::future::join_all(calls).await {
            assert_eq!(status, 200, "round {round}: {body}");
            assert_eq!(body["path"], "/hello");
        }
        eprintln!(
            "round {round}: 10 calls over a paused function in {:?}",
            started.elapsed()
        );
        assert_eq!(states(&p, "echo"), vec!["running".to_string()]);
    }
    let metrics = http()
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("rfa_wake_seconds_count{function_name=\"echo\",kind=\"resume\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "rfa_scale_events_total{direction=\"pause\",function_name=\"echo\",reason=\"idle\"}"
        ),
        "the scaler's metrics through the gateway: {metrics}"
    );
}

#[tokio::test]
async fn an_idle_function_stops_and_its_next_call_starts_it() {
    let p = Platform::start("idlestop");
    deploy(
        &p,
        serde_json::json!([scaled_entry(
            "echo",
            serde_json::json!({ "min": 0, "max": 1, "idlePause": "1s", "idleStop": "3s" })
        )]),
    )
    .await;
    let url = p.url("/functions/echo/");
    assert_eq!(get(&url).await.0, 200);
    until_all(&p, "echo", "paused", Duration::from_secs(20)).await;
    until_all(&p, "echo", "exited", Duration::from_secs(20)).await;
    assert_eq!(details_of(&p, "echo")["power"], "stopped");
    let started = Instant::now();
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}");
    eprintln!("cold start through the gateway: {:?}", started.elapsed());
    assert_eq!(states(&p, "echo"), vec!["running".to_string()]);
}

#[tokio::test]
async fn async_calls_to_a_paused_function_are_all_answered_once() {
    let p = Platform::start("pauseasync");
    let mut entry = scaled_entry(
        "echo",
        serde_json::json!({ "min": 0, "max": 1, "idlePause": "1s" }),
    );
    entry["async"] = true.into();
    deploy(&p, serde_json::json!([entry])).await;
    let receiver = Receiver::start(0).await;
    until_all(&p, "echo", "paused", Duration::from_secs(20)).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = http()
            .post(p.url(&format!("/functions/echo/call{i}")))
            .header("X-Callback-Url", receiver.url("/cb"))
            .body(format!("{{\"i\":{i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        ids.push(r.headers()["x-call-id"].to_str().unwrap().to_string());
    }
    let got = receiver.wait_for(20, Duration::from_secs(60)).await;
    let mut seen: Vec<String> = got
        .iter()
        .map(|r| r.headers.get("x-call-id").cloned().unwrap_or_default())
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every call answered once");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 20, "no duplicate afterwards");
}

/// Sends calls from `clients` loops to `url` until `stop`; counts answers that are not 200.
fn load(
    url: String,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Vec<tokio::task::JoinHandle<Vec<String>>>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let tasks = (0..clients)
        .map(|_| {
            let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let client = http();
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let status = r.status();
                            errors
                                .push(format!("{status}: {}", r.text().await.unwrap_or_default()));
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(e.to_string());
                        }
                    }
                }
                errors
            })
        })
        .collect();
    (ok, failed, tasks)
}

async fn finish(
    stop: &AtomicBool,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
) -> Vec<String> {
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.unwrap());
    }
    errors
}

fn running_count(p: &Platform, name: &str) -> usize {
    states(p, name).iter().filter(|s| *s == "running").count()
}

#[tokio::test]
async fn load_grows_a_function_toward_max_and_its_end_shrinks_it_back() {
    let p = Platform::start("autoscale");
    deploy(
        &p,
        serde_json::json!([scaled_entry(
            "echo",
            serde_json::json!({ "min": 1, "max": 3, "targetInflight": 2, "scaleInDelay": "3s" })
        )]),
    )
    .await;
    assert_eq!(running_count(&p, "echo"), 1);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(p.url("/functions/echo/slow?ms=200"), 8, stop.clone());
    let grew = Instant::now();
    eventually(Duration::from_secs(30), "3 replicas under load", || async {
        (running_count(&p, "echo") == 3).then_some(())
    })
    .await;
    eprintln!("grew to 3 in {:?}", grew.elapsed());
    let d = details_of(&p, "echo");
    assert_eq!(d["replicas"]["desired"], 3, "{d}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let errors = finish(&stop, tasks).await;
    assert!(errors.is_empty(), "failed calls under load: {errors:?}");
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 50);

    eventually(Duration::from_secs(40), "back to 1 replica", || async {
        (replicas(&p, "echo").len() == 1).then_some(())
    })
    .await;
    let metrics = http()
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "rfa_scale_events_total{direction=\"up\",function_name=\"echo\",reason=\"load\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("direction=\"down\",function_name=\"echo\",reason=\"cooldown\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn scale_up_and_down_under_load_fails_no_call() {
    let p = Platform::start("scalecmd");
    deploy(&p, serde_json::json!([echo_entry("echo")])).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, _failed, tasks) = load(p.url("/functions/echo/slow?ms=20"), 4, stop.clone());
    let up = p.cli(&["scale", "echo", "3"]).ok();
    assert!(up.stdout.contains("3"), "{up}");
    assert_eq!(running_count(&p, "echo"), 3);
    let d = details_of(&p, "echo");
    assert_eq!(
        (&d["replicas"]["desired"], &d["replicas"]["ready"]),
        (&serde_json::json!(3), &serde_json::json!(3)),
        "{d}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.cli(&["scale", "echo", "1"]).ok();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let errors = finish(&stop, tasks).await;
    assert!(errors.is_empty(), "failed calls while scaling: {errors:?}");
    assert!(ok.load(Ordering::Relaxed) > 20);
    eventually(Duration::from_secs(40), "1 replica left", || async {
        (replicas(&p, "echo").len() == 1).then_some(())
    })
    .await;

    // 0 stops it; the next call starts it
    p.cli(&["scale", "echo", "0"]).ok();
    until_all(&p, "echo", "exited", Duration::from_secs(40)).await;
    assert_eq!(get(&p.url("/functions/echo/")).await.0, 200);

    // bad counts and names: clear errors, nothing changed
    for (args, says) in [
        (vec!["scale", "echo", "-1"], "whole number"),
        (vec!["scale", "echo", "1.5"], "whole number"),
        (vec!["scale", "echo", "65"], "64"),
        (vec!["scale", "nope", "1"], "no function named"),
    ] {
        let run = p.cli(&args).failed();
        assert!(run.stderr.contains(says), "{args:?}: {run}");
    }
}

#[tokio::test]
async fn scale_outside_the_bounds_is_refused() {
    let p = Platform::start("scalebounds");
    deploy(
        &p,
        serde_json::json!([scaled_entry(
            "echo",
            serde_json::json!({ "min": 1, "max": 2 })
        )]),
    )
    .await;
    for n in ["3", "0"] {
        let run = p.cli(&["scale", "echo", n]).failed();
        assert!(
            run.stderr.contains("1") && run.stderr.contains("2"),
            "{n}: {run}"
        );
    }
    assert_eq!(running_count(&p, "echo"), 1);
}

#[tokio::test]
async fn paused_functions_survive_the_scaler_and_the_gateway_going_away() {
    let p = Platform::start("pausefaults");
    deploy(
        &p,
        serde_json::json!([scaled_entry(
            "echo",
            serde_json::json!({ "min": 0, "max": 1, "idlePause": "1s" })
        )]),
    )
    .await;
    let url = p.url("/functions/echo/");
    assert_eq!(get(&url).await.0, 200);
    until_all(&p, "echo", "paused", Duration::from_secs(20)).await;

    // The scaler is killed: a call waits, and answers once the scaler is back.
    let scaler = p.object("rfa-scaler");
    docker(&["kill", &scaler]);
    let call = tokio::spawn({
        let url = url.clone();
        async move { get(&url).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!call.is_finished(), "held while the scaler is away");
    docker(&["start", &scaler]);
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");

    // The gateway restarts while the function is paused: it still holds and wakes.
    until_all(&p, "echo", "paused", Duration::from_secs(20)).await;
    docker(&["restart", &p.object("rfa-proxy")]);
    let (status, body) = eventually(Duration::from_secs(30), "the gateway back", || async {
        match http().get(&url).send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                Some((s, r.json::<serde_json::Value>().await.unwrap_or_default()))
            }
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(status, 200, "{body}");

    // Redeployed while paused: the new version serves, no call fails.
    until_all(&p, "echo", "paused", Duration::from_secs(20)).await;
    let held = tokio::spawn({
        let url = url.clone();
        async move { get(&url).await }
    });
    let mut entry = scaled_entry(
        "echo",
        serde_json::json!({ "min": 0, "max": 1, "idlePause": "1s" }),
    );
    entry["env"] = serde_json::json!({ "VERSION": "v2" });
    deploy(&p, serde_json::json!([entry])).await;
    assert_eq!(held.await.unwrap().0, 200);
    let (status, body) = get(&url).await;
    assert_eq!((status, body["version"].as_str()), (200, Some("v2")));
}
