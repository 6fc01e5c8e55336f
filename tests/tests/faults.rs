//! Issue #7: the fault suite. Each case runs its own platform instance under a steady mix of
//! sync calls (the echo fixture, two replicas), async calls called back on a receiver on the host,
//! and store writes through the gateway to the `payments` table, to which a mainProcess service
//! (examples/database-events) is subscribed. One fault is injected, the platform recovers the way
//! the README documents, and the case checks:
//!
//! - what the client saw is clean: every answer is a 2xx or a problem+json 502/503/504, none
//!   takes longer than the gateway's own limits, connection errors only while the proxy is down;
//! - nothing acknowledged is lost: every async call answered 202 is called back (at least once:
//!   duplicates are counted and printed), every store write answered 2xx is in the store with
//!   exactly one event per committed write on JetStream, and handled by the subscriber;
//! - after recovery every kind of request is served again.
//!
//! One file (~770 lines) because the seven cases share the load generator, the checks and the
//! report; each case itself is a few lines.
//!
//! Each case prints its figures (`faults[<case>]: …`), the numbers in docs/RELIABILITY.md ("Faults").
//! Faults covered elsewhere (not repeated here): `kill -9` of the store's process during 1000
//! writes (store.rs), a subscriber down while written to (store.rs), workers dying and NATS
//! stopped (async_calls.rs), dead platform processes restarted by their policy and startFaas
//! repairs (platform.rs), redeploy under load and a proxy restart keeping routes (functions.rs).
//!
//! Over 600 lines on purpose: every fault shares the one traffic mix and the one set of
//! end-of-case checks above, which are most of the file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rfaas_tests::*;
use serde_json::{Value, json};

/// `startFaas --upstream-timeout`: the gateway answers 504 past this.
const UPSTREAM_TIMEOUT_S: u64 = 10;
/// No answer may take longer than this: the gateway's limits are 10 s for an upstream (above)
/// and 5 s for JetStream's ack of an async call. A request past it is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// The functions' async consumer `ack_wait`: how soon a call whose worker died is redelivered.
const ACK_WAIT_MS: &str = "4000";
/// Load workers per kind of request.
const WORKERS: usize = 2;
/// Pause between a worker's requests.
const PAUSE: Duration = Duration::from_millis(25);
/// How long the load runs before the fault and after recovery.
const STEADY: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Sync,
    Async,
    Store,
}

const KINDS: [Kind; 3] = [Kind::Sync, Kind::Async, Kind::Store];

/// What the clients of one kind saw.
#[derive(Default, Debug)]
struct Seen {
    ok: usize,
    bad_gateway: usize,
    unavailable: usize,
    gateway_timeout: usize,
    /// When each connection error (refused, reset, closed mid-answer) happened.
    conn: Vec<Instant>,
    /// Anything that is not a clean answer: other statuses, a 5xx that is not problem+json, a
    /// 2xx with the wrong content, no answer within CLIENT_TIMEOUT.
    wrong: Vec<String>,
    last_ok: Option<Instant>,
    /// Call ids answered 202 (async) or document ids answered 201 (store).
    acked: Vec<String>,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.ok += other.ok;
        self.bad_gateway += other.bad_gateway;
        self.unavailable += other.unavailable;
        self.gateway_timeout += other.gateway_timeout;
        self.conn.extend(other.conn);
        self.wrong.extend(other.wrong);
        self.last_ok = self.last_ok.max(other.last_ok);
        self.acked.extend(other.acked);
    }

    fn failed(&self) -> usize {
        self.bad_gateway + self.unavailable + self.gateway_timeout + self.conn.len()
    }

    fn figures(&self) -> String {
        format!(
            "2xx={} 502={} 503={} 504={} conn-errors={}",
            self.ok,
            self.bad_gateway,
            self.unavailable,
            self.gateway_timeout,
            self.conn.len()
        )
    }
}

/// One platform instance with the two functions deployed and a callback receiver.
struct Case {
    name: &'static str,
    p: Arc<Platform>,
    receiver: Arc<Receiver>,
    token: String,
}

impl Case {
    async fn start(name: &'static str) -> Case {
        let p = tokio::task::spawn_blocking(move || {
            let mut p = Platform::new(name);
            p.start_faas(&["--upstream-timeout", &UPSTREAM_TIMEOUT_S.to_string()])
                .ok();
            let mut echo = echo_entry("echo");
            echo["replicas"] = json!(2);
            echo["env"] = json!({"RFAAS_ASYNC_ACK_WAIT_MS": ACK_WAIT_MS});
            let dir = root().join("examples/database-events");
            let events = json!({
                "name": "database_events",
                "packageDir": dir,
                "filePath": dir.join("src/lib.rs"),
                "mainProcess": true,
                "env": {"RFAAS_ASYNC_ACK_WAIT_MS": ACK_WAIT_MS},
            });
            let (_dir, file) = deploy_file(json!([echo, events]));
            p.cli(&["deploy", file.to_str().unwrap()]).ok();
            p
        })
        .await
        .unwrap();
        let token = p.token();
        Case {
            name,
            p: Arc::new(p),
            receiver: Arc::new(Receiver::start(0).await),
            token,
        }
    }

    /// `proxyCli startFaas` with the flags the case started with (other flags would change the
    /// proxy's spec and recreate it), as a user repairs the platform.
    async fn start_faas(&self) -> Run {
        let p = self.p.clone();
        tokio::task::spawn_blocking(move || {
            let port = p.port.to_string();
            p.cli(&[
                "startFaas",
                "--port",
                &port,
                "--upstream-timeout",
                &UPSTREAM_TIMEOUT_S.to_string(),
            ])
        })
        .await
        .unwrap()
        .ok()
    }

    /// `docker <args>` off the runtime's threads.
    async fn docker(&self, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker(&args)
        })
        .await
        .unwrap()
    }

    /// Waits until the gateway answers `/healthz` and returns when it did.
    async fn gateway_up(&self, timeout: Duration) -> Instant {
        let client = http();
        eventually(timeout, "the gateway answering again", || async {
            let r = client
                .get(self.p.url("/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then(Instant::now)
        })
        .await
    }

    /// Starts the steady mix and waits until every kind has been answered 2xx.
    async fn load(&self) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for kind in KINDS {
            for n in 0..WORKERS {
                let ctx = Worker {
                    kind,
                    id: format!("{}-{kind:?}-{n}", self.name).to_lowercase(),
                    p: self.p.clone(),
                    token: self.token.clone(),
                    callback: self.receiver.url("/cb"),
                    stop: stop.clone(),
                    last_ok: Arc::new(Mutex::new(None)),
                };
                let last_ok = ctx.last_ok.clone();
                workers.push((kind, last_ok, tokio::spawn(ctx.run())));
            }
        }
        let load = Load { stop, workers };
        eventually(
            Duration::from_secs(30),
            "every kind of request answered 2xx before the fault",
            || async { load.all_answered_since(None).then_some(()) },
        )
        .await;
        tokio::time::sleep(STEADY).await;
        load
    }

    /// Waits until every kind is answered 2xx after `recovered`, keeps the load running for
    /// STEADY more, stops it and checks what the client saw, then that nothing acknowledged was
    /// lost. `proxy_down` is when connection errors are allowed (the proxy itself down), with a
    /// second of slack after it for pooled connections.
    async fn finish(
        &self,
        load: Load,
        recovered: Instant,
        proxy_down: Option<(Instant, Instant)>,
    ) -> Report {
        eventually(
            Duration::from_secs(30),
            "every kind of request answered 2xx after recovery",
            || async { load.all_answered_since(Some(recovered)).then_some(()) },
        )
        .await;
        tokio::time::sleep(STEADY).await;
        let seen = load.stop().await;
        let report = Report {
            seen,
            down: proxy_down.map(|(from, to)| to.duration_since(from)),
        };
        for kind in KINDS {
            let s = &report.seen[&kind];
            assert!(
                s.wrong.is_empty(),
                "{}: {kind:?} clients saw answers that are not clean ({}): {:?}",
                self.name,
                s.wrong.len(),
                &s.wrong[..s.wrong.len().min(5)]
            );
            match proxy_down {
                None => assert!(
                    s.conn.is_empty(),
                    "{}: {} connection errors for {kind:?} while the proxy was up",
                    self.name,
                    s.conn.len()
                ),
                Some((from, to)) => {
                    let late = to + Duration::from_secs(1);
                    let outside = s.conn.iter().filter(|t| **t < from || **t > late).count();
                    assert_eq!(
                        outside, 0,
                        "{}: {kind:?} connection errors while the proxy was up",
                        self.name
                    );
                }
            }
            assert!(
                s.last_ok.is_some_and(|t| t > recovered),
                "{}: {kind:?} calls are served again after recovery",
                self.name
            );
        }
        let callbacks = self.check_async(&report.seen[&Kind::Async]).await;
        let store = self.check_store(&report.seen[&Kind::Store]).await;
        eprintln!(
            "faults[{}]: sync {} | async {} | store {} | {callbacks} | {store}{}",
            self.name,
            report.seen[&Kind::Sync].figures(),
            report.seen[&Kind::Async].figures(),
            report.seen[&Kind::Store].figures(),
            report
                .down
                .map(|d| format!(" | proxy down {:.1} s", d.as_secs_f64()))
                .unwrap_or_default(),
        );
        report
    }

    /// Every call answered 202 is called back, with status 200. Returns the figures.
    async fn check_async(&self, seen: &Seen) -> String {
        let acked: HashSet<&str> = seen.acked.iter().map(String::as_str).collect();
        assert_eq!(acked.len(), seen.acked.len(), "call ids are unique");
        let missing = |received: &[Received]| -> Vec<String> {
            let done: HashSet<&str> = received
                .iter()
                .map(|r| r.headers["x-call-id"].as_str())
                .collect();
            acked
                .iter()
                .filter(|id| !done.contains(**id))
                .map(|id| id.to_string())
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = missing(&self.receiver.received());
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} of {} async calls answered 202 were never called back (lost), e.g. {:?}",
                self.name,
                left.len(),
                acked.len(),
                &left[..left.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Give a redelivery in progress the time to show up as a duplicate.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let received = self.receiver.received();
        let mut per_id = HashMap::<&str, usize>::new();
        for r in &received {
            assert_eq!(r.path, "/cb");
            assert_eq!(
                r.headers["x-function-status"], "200",
                "{}: a call ran to a failure: {r:?}",
                self.name
            );
            *per_id.entry(r.headers["x-call-id"].as_str()).or_default() += 1;
        }
        let duplicates: usize = per_id.values().map(|n| n - 1).sum();
        let unacked = per_id.keys().filter(|id| !acked.contains(**id)).count();
        format!(
            "callbacks: {} acknowledged, all called back, {duplicates} duplicates, {unacked} run without a 202",
            acked.len()
        )
    }

    /// Every write answered 201 is in the store; every present document has one `new-doc` event
    /// and one `updated-doc` event per later version (exactly one event per committed write),
    /// and none names an absent document; the subscriber handled every one. Returns the figures.
    async fn check_store(&self, seen: &Seen) -> String {
        let acked: HashSet<&str> = seen.acked.iter().map(String::as_str).collect();
        // The subscriber invoices each payment (version 2) then marks it emailed (version 3).
        let docs = eventually(
            Duration::from_secs(120),
            "the subscriber handling every acknowledged payment",
            || async {
                let docs = all_docs(&self.p, "payments").await;
                let present: HashMap<&str, &Value> = docs
                    .iter()
                    .map(|d| (d["id"].as_str().unwrap(), d))
                    .collect();
                for id in &acked {
                    let Some(doc) = present.get(id) else {
                        panic!(
                            "{}: the write of {id} was answered 201 and is lost",
                            self.name
                        );
                    };
                    if doc["data"]["emailed"] != true {
                        return None;
                    }
                }
                let all_handled = docs.iter().all(|d| d["data"]["emailed"] == true);
                all_handled.then_some(docs)
            },
        )
        .await;
        let versions: HashMap<String, u64> = docs
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_string(),
                    d["version"].as_u64().unwrap(),
                )
            })
            .collect();
        let writes: u64 = versions.values().sum();
        let nats_url = self.p.nats_url();
        let events = eventually(
            Duration::from_secs(60),
            "one event for every committed write",
            || async {
                let events = all_events(&nats_url, "payments").await;
                (events.len() as u64 >= writes).then_some(events)
            },
        )
        .await;
        let mut per_id = HashMap::<&str, (u64, u64)>::new();
        for (event, id) in &events {
            let entry = per_id.entry(id.as_str()).or_default();
            match event.as_str() {
                "new-doc" => entry.0 += 1,
                "updated-doc" => entry.1 += 1,
                other => panic!("{}: unexpected event {other} for {id}", self.name),
            }
        }
        for (id, (new, updated)) in &per_id {
            let Some(version) = versions.get(*id) else {
                panic!(
                    "{}: an event for a document that is not in the store: {id}",
                    self.name
                );
            };
            assert_eq!(
                (*new, *updated),
                (1, version - 1),
                "{}: document {id} at version {version} has {new} new-doc and {updated} updated-doc events",
                self.name
            );
        }
        assert_eq!(
            per_id.len(),
            versions.len(),
            "{}: every document has its events",
            self.name
        );
        let rerun = versions.values().filter(|v| **v > 3).count();
        format!(
            "store: {} acknowledged, {} present, {} events, {rerun} handled more than once",
            acked.len(),
            versions.len(),
            events.len()
        )
    }
}

struct Report {
    seen: HashMap<Kind, Seen>,
    down: Option<Duration>,
}

impl Report {
    fn of(&self, kind: Kind) -> &Seen {
        &self.seen[&kind]
    }
}

/// The running load: its workers and the flag that stops them.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<(Kind, LastOk, tokio::task::JoinHandle<Seen>)>,
}

impl Load {
    /// Whether every kind of request has been answered 2xx (after `since`, if given).
    fn all_answered_since(&self, since: Option<Instant>) -> bool {
        KINDS.iter().all(|k| {
            self.workers
                .iter()
                .filter(|(kind, _, _)| kind == k)
                .any(|(_, last_ok, _)| match (*last_ok.lock().unwrap(), since) {
                    (Some(t), Some(since)) => t > since,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
        })
    }

    async fn stop(self) -> HashMap<Kind, Seen> {
        self.stop.store(true, Ordering::SeqCst);
        let mut seen: HashMap<Kind, Seen> = KINDS.iter().map(|k| (*k, Seen::default())).collect();
        for (kind, _, handle) in self.workers {
            seen.get_mut(&kind).unwrap().merge(handle.await.unwrap());
        }
        seen
    }
}

/// One load worker: sends one kind of request in a loop until stopped.
struct Worker {
    kind: Kind,
    id: String,
    p: Arc<Platform>,
    token: String,
    callback: String,
    stop: Arc<AtomicBool>,
    /// When this worker last got a 2xx, shared with the test while it runs.
    last_ok: LastOk,
}

/// When a worker last got a 2xx.
type LastOk = Arc<Mutex<Option<Instant>>>;

impl Worker {
    async fn run(self) -> Seen {
        let client = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .unwrap();
        let mut seen = Seen::default();
        let mut i = 0usize;
        while !self.stop.load(Ordering::SeqCst) {
            i += 1;
            let key = format!("{}-{i}", self.id);
            let req = match self.kind {
                Kind::Sync => client.get(self.p.url(&format!("/functions/echo/work?key={key}"))),
                Kind::Async => client
                    .post(self.p.url("/async-functions/echo/slow?ms=100"))
                    .header("x-callback-url", &self.callback)
                    .header("x-call-id", &key),
                Kind::Store => client
                    .post(self.p.url("/store/tables/payments/docs"))
                    .bearer_auth(&self.token)
                    .json(&json!({"payer": key, "amount": 1})),
            };
            let sent = Instant::now();
            let answer = self.answer(req, &key).await;
            let failed = !matches!(answer, Answer::Ok(_));
            match answer {
                Answer::Ok(acked) => {
                    seen.ok += 1;
                    seen.last_ok = Some(Instant::now());
                    seen.acked.extend(acked);
                    *self.last_ok.lock().unwrap() = seen.last_ok;
                }
                Answer::Status(502) => seen.bad_gateway += 1,
                Answer::Status(503) => seen.unavailable += 1,
                Answer::Status(504) => seen.gateway_timeout += 1,
                Answer::Status(other) => seen.wrong.push(format!("status {other}")),
                Answer::Wrong(what) => seen.wrong.push(what),
                Answer::Conn => seen.conn.push(Instant::now()),
                Answer::Hung => seen.wrong.push(format!(
                    "no answer within {CLIENT_TIMEOUT:?} (sent {:?} ago)",
                    sent.elapsed()
                )),
            }
            // A client backs off a little while the platform is failing.
            let pause = if failed { PAUSE * 4 } else { PAUSE };
            tokio::time::sleep(pause).await;
        }
        seen
    }

    async fn answer(&self, req: reqwest::RequestBuilder, key: &str) -> Answer {
        let r = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Answer::Hung,
            Err(_) => return Answer::Conn,
        };
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let call_id = r
            .headers()
            .get("x-call-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = match r.bytes().await {
            Ok(b) => b,
            Err(e) if e.is_timeout() => return Answer::Hung,
            Err(_) => return Answer::Conn,
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) {
            return match status {
                502..=504 if content_type == "application/problem+json" => Answer::Status(status),
                502..=504 => Answer::Wrong(format!(
                    "{status} as {content_type}, not problem+json: {body}"
                )),
                _ => Answer::Wrong(format!("{status} {content_type}: {body}")),
            };
        }
        match self.kind {
            Kind::Sync => {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                if status == 200 && v["path"] == "/work" && v["query"] == format!("key={key}") {
                    Answer::Ok(None)
                } else {
                    Answer::Wrong(format!("sync answer {status}: {body}"))
                }
            }
            Kind::Async => {
                if status == 202 && call_id.as_deref() == Some(key) {
                    Answer::Ok(Some(key.to_string()))
                } else {
                    Answer::Wrong(format!("async answer {status} id {call_id:?}: {body}"))
                }
            }
            Kind::Store => {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                match v["id"].as_str() {
                    Some(id) if status == 201 && v["data"]["payer"] == key => {
                        Answer::Ok(Some(id.to_string()))
                    }
                    _ => Answer::Wrong(format!("store answer {status}: {body}")),
                }
            }
        }
    }
}

enum Answer {
    Ok(Option<String>),
    Status(u16),
    Wrong(String),
    Conn,
    Hung,
}

/// The container's running state and how often Docker restarted it.
fn state(name: &str) -> (bool, i64) {
    let c = inspect(name);
    (
        c["State"]["Running"] == true,
        c["RestartCount"].as_i64().unwrap_or(0),
    )
}

/// `docker kill -s KILL` of a platform container: Docker's `unless-stopped` policy treats a
/// kill as a stop on purpose and leaves it down (README, "Choices"); `startFaas` repairs it.
async fn killed_and_repaired(c: &Case, base: &str) -> (Instant, Instant) {
    let name = c.p.object(base);
    let fault = Instant::now();
    c.docker(&["kill", "-s", "KILL", &name]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        state(&name),
        (false, 0),
        "{name}: Docker leaves a container killed on purpose down"
    );
    let run = c.start_faas().await;
    assert!(
        run.output().contains(&format!("started {name}")),
        "startFaas repairs {name}:\n{run}"
    );
    assert!(state(&name).0, "{name} runs again");
    (fault, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_proxy_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-kill-proxy").await;
    let load = c.load().await;
    let (fault, _) = killed_and_repaired(&c, "rfa-proxy").await;
    let up = c.gateway_up(Duration::from_secs(30)).await;
    let r = c.finish(load, up, Some((fault, up))).await;
    for kind in KINDS {
        assert!(
            !r.of(kind).conn.is_empty(),
            "{kind:?} clients saw the proxy down"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_store_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-kill-store").await;
    let load = c.load().await;
    let (_, recovered) = killed_and_repaired(&c, "rfa-store").await;
    let r = c.finish(load, recovered, None).await;
    assert_eq!(
        r.of(Kind::Sync).failed(),
        0,
        "sync calls do not need the store"
    );
    assert_eq!(
        r.of(Kind::Async).failed(),
        0,
        "async calls do not need the store"
    );
    assert!(
        r.of(Kind::Store).bad_gateway + r.of(Kind::Store).unavailable > 0,
        "store writes were refused while it was down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_nats_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-kill-nats").await;
    let load = c.load().await;
    let (_, recovered) = killed_and_repaired(&c, "rfa-nats").await;
    let r = c.finish(load, recovered, None).await;
    assert_eq!(r.of(Kind::Sync).failed(), 0, "sync calls do not need NATS");
    assert_eq!(
        r.of(Kind::Store).failed(),
        0,
        "store writes do not wait for NATS (the outbox keeps their events)"
    );
    assert!(
        r.of(Kind::Async).unavailable > 0,
        "async calls were refused (503) while NATS was down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_function_replicas_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-kill-fn").await;
    let load = c.load().await;
    let echo = c.p.object("rfa-fn-echo-1");
    let service = c.p.object("rfa-fn-database_events");
    c.docker(&["kill", "-s", "KILL", &echo]).await;
    c.docker(&["kill", "-s", "KILL", &service]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in [&echo, &service] {
        assert_eq!(state(name), (false, 0), "{name} is left down by Docker");
    }
    let run = c.start_faas().await;
    for name in [&echo, &service] {
        assert!(
            run.output().contains(&format!("started {name}")),
            "startFaas repairs {name}:\n{run}"
        );
        assert!(state(name).0, "{name} runs again");
    }
    let recovered = Instant::now();
    let r = c.finish(load, recovered, None).await;
    assert_eq!(
        r.of(Kind::Store).failed(),
        0,
        "store writes need no function"
    );
    assert_eq!(
        r.of(Kind::Async).failed(),
        0,
        "async calls are queued whatever the workers do"
    );
    // The gateway skips a replica it could not reach for 2 s, so only the calls in flight and
    // one probe every 2 s fail (2 in a local run); round robin alone failed every second call to
    // echo until it was back (65 in session 5).
    assert!(
        r.of(Kind::Sync).bad_gateway <= 25,
        "sync calls kept going to the dead replica: {} answered 502",
        r.of(Kind::Sync).bad_gateway
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_paused_and_resumed_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-pause-nats").await;
    let load = c.load().await;
    let nats = c.p.object("rfa-nats");
    c.docker(&["pause", &nats]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    c.docker(&["unpause", &nats]).await;
    let recovered = Instant::now();
    let r = c.finish(load, recovered, None).await;
    assert_eq!(r.of(Kind::Sync).failed(), 0, "sync calls do not need NATS");
    assert_eq!(
        r.of(Kind::Store).failed(),
        0,
        "store writes do not wait for NATS"
    );
    assert!(
        r.of(Kind::Async).unavailable > 0,
        "async calls unacknowledged by a paused JetStream are answered 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_restart_of_the_proxy_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-restart-proxy").await;
    let load = c.load().await;
    let fault = Instant::now();
    c.docker(&["restart", &c.p.object("rfa-proxy")]).await;
    let up = c.gateway_up(Duration::from_secs(30)).await;
    c.finish(load, up, Some((fault, up))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn docker_restart_of_the_store_under_load_loses_nothing_acknowledged() {
    let c = Case::start("f-restart-store").await;
    let load = c.load().await;
    c.docker(&["restart", &c.p.object("rfa-store")]).await;
    let recovered = Instant::now();
    let r = c.finish(load, recovered, None).await;
    assert_eq!(
        r.of(Kind::Sync).failed(),
        0,
        "sync calls do not need the store"
    );
}
