//! Issue #7: the gateway against hostile clients, end to end through the published port.
//!
//! Tricky requests are written as raw HTTP/1.1 over a `TcpStream`: reqwest (like any good
//! client) would normalize the paths these tests need to send as they are.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rfaas_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts a problem+json answer with `status`, and returns its detail.
    fn problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["status"], status, "{self:?}");
        body["detail"].as_str().unwrap_or_default().to_string()
    }
}

fn addr(p: &Platform) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p.port))
}

/// Reads one response (head, then a `content-length` body) from `reader`.
async fn read_answer(reader: &mut BufReader<TcpStream>) -> Option<Answer> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends `request` as it is on a new connection and reads the answer.
async fn raw(p: &Platform, request: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr(p)).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut reader = BufReader::new(tcp);
    tokio::time::timeout(Duration::from_secs(20), read_answer(&mut reader))
        .await
        .unwrap_or_else(|_| panic!("no answer within 20 s to {request:?}"))
        .unwrap_or_else(|| panic!("the connection closed without an answer to {request:?}"))
}

/// `GET <target>` with `Host: <host>` and `Connection: close`.
fn get(target: &str, host: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// Waits until the server closes `tcp` (a read returns 0 or fails); the time it took.
async fn closed_after(tcp: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), tcp.read(&mut buf))
            .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A client that keeps no idle connection: each would hold one of the gateway's slots.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn metric(p: &Platform, name: &str) -> Option<f64> {
    let text = unpooled()
        .get(p.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
}

/// A route the gateway will forward to `upstream` (no container behind it).
async fn register(p: &Platform, name: &str, kind: &str, upstream: &str) {
    let r = unpooled()
        .put(p.url(&format!("/system/functions/{name}")))
        .bearer_auth(p.token())
        .json(&json!({
            "name": name,
            "kind": kind,
            "upstreams": [upstream],
            "image": "none",
            "deployedAt": "now",
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "register {name}: {}", r.status());
}

#[tokio::test]
async fn limits_cut_off_hostile_clients_and_the_gateway_stays_healthy() {
    let mut p = Platform::new("gwlimits");
    p.start_faas(&[
        "--max-connections",
        "8",
        "--header-timeout",
        "2",
        "--max-headers",
        "30",
        "--max-header-bytes",
        "4096",
        "--max-async-body",
        "1024",
    ])
    .ok();
    let client = unpooled();

    // The token is a file on the proxy's volume, not an environment variable anyone with
    // `docker inspect` can read.
    let proxy = inspect(&p.object("rfa-proxy"));
    let token = p.token();
    assert!(
        !proxy.to_string().contains(&token),
        "the token shows in docker inspect"
    );
    assert!(
        proxy["Config"]["Env"]
            .to_string()
            .contains("RFAAS_TOKEN_FILE=/data/token"),
        "{}",
        proxy["Config"]["Env"]
    );

    // Header limits: 30 fields and 4 KiB of head pass, more get 431 (from hyper: no body).
    let fields = |n: usize| -> String { (0..n).map(|i| format!("x-f{i}: v\r\n")).collect() };
    let within = raw(
        &p,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            fields(25)
        ),
    )
    .await;
    assert_eq!(within.status, 200, "{within:?}");
    let many = raw(
        &p,
        &format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n", fields(40)),
    )
    .await;
    assert_eq!(many.status, 431, "{many:?}");
    let large = raw(
        &p,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(5000)
        ),
    )
    .await;
    assert_eq!(large.status, 431, "{large:?}");
    let long_uri = raw(&p, &get(&format!("/functions/x?{}", "q".repeat(5000)), "x")).await;
    assert_eq!(long_uri.status, 431, "{long_uri:?}");

    // Body limits keep their 413 problem: sync (declared length past 16 MiB) and async (1 KiB).
    register(&p, "sink", "http", "127.0.0.1:9").await;
    register(&p, "queued", "async", "127.0.0.1:9").await;
    let big_sync = raw(
        &p,
        "POST /functions/sink HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    big_sync.problem(413);
    let r = client
        .post(p.url("/async-functions/queued"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Slowloris: a head dribbled one field every 300 ms is cut off after the 2 s header
    // timeout, without an answer.
    let mut slow = TcpStream::connect(addr(&p)).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut cut = None;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let line = format!("x-drip-{}: v\r\n", i % 25);
        let wrote = slow.write_all(line.as_bytes()).await.is_ok();
        let mut byte = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(5), slow.read(&mut byte)).await;
        if !wrote || matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            cut = Some(started.elapsed());
            break;
        }
        if let Ok(Ok(n)) = read {
            panic!(
                "the dribbling client got an answer: {:?}",
                String::from_utf8_lossy(&byte[..n])
            );
        }
    }
    let cut = cut.expect("the slowloris connection was never closed (12 s)");
    assert!(
        cut >= Duration::from_millis(1500) && cut < Duration::from_secs(6),
        "cut off after {cut:?}, the header timeout is 2 s"
    );

    // An idle keep-alive connection is closed after the same timeout.
    let tcp = TcpStream::connect(addr(&p)).await.unwrap();
    let mut reader = BufReader::new(tcp);
    reader
        .get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_answer(&mut reader).await.expect("an answer");
    assert_eq!(first.status, 200);
    assert_ne!(first.header("connection"), Some("close"));
    let mut tcp = reader.into_inner();
    let idle = closed_after(&mut tcp, Duration::from_secs(8))
        .await
        .expect("the idle keep-alive connection stays open past 8 s");
    assert!(
        idle >= Duration::from_millis(1500),
        "closed after {idle:?}, before the 2 s timeout"
    );

    // The connection cap: 8 calls held open by an upstream that never answers fill it.
    let hang = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        while let Ok((s, _)) = hang.accept().await {
            let _ = held_tx.send(s);
        }
    });
    register(
        &p,
        "hang",
        "http",
        &format!("host.docker.internal:{hang_port}"),
    )
    .await;
    // A connection the gateway has not yet seen closed (the scrape's) can take a slot for a
    // moment, so top up until 8 calls are held.
    let mut clients = Vec::new();
    let mut upstream = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.len() < 8 {
        assert!(
            Instant::now() < deadline,
            "only {} calls reached the hanging upstream",
            upstream.len()
        );
        for _ in upstream.len()..8 {
            let mut tcp = TcpStream::connect(addr(&p)).await.unwrap();
            tcp.write_all(b"GET /functions/hang/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            clients.push(tcp);
        }
        while let Ok(Some(s)) = tokio::time::timeout(Duration::from_secs(3), held_rx.recv()).await {
            upstream.push(s);
            if upstream.len() == 8 {
                break;
            }
        }
    }
    // The 9th connection is refused at once, with a problem and Retry-After.
    let asked = Instant::now();
    let refused = raw(&p, &get("/healthz", "x")).await;
    let detail = refused.problem(503);
    assert!(detail.contains("8 connections"), "{detail}");
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    assert_eq!(refused.header("connection"), Some("close"), "{refused:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "refused only after {:?}",
        asked.elapsed()
    );
    let r = client.get(p.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 503, "a normal client sees the 503 too");
    assert!(r.headers().contains_key("retry-after"));

    // Once the held calls end, the gateway serves again and counted what it refused.
    drop(upstream);
    drop(clients);
    holder.abort();
    eventually(
        Duration::from_secs(20),
        "the gateway to serve again",
        || {
            let client = client.clone();
            let url = p.url("/healthz");
            async move {
                let r = client.get(url).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    let rejected = metric(&p, "rfa_gateway_connections_rejected_total")
        .await
        .expect("rfa_gateway_connections_rejected_total");
    assert!(rejected >= 2.0, "rejected {rejected}");
    assert_eq!(metric(&p, "rfa_gateway_connections_max").await, Some(8.0));
    let open = metric(&p, "rfa_gateway_connections")
        .await
        .expect("rfa_gateway_connections");
    assert!((1.0..8.0).contains(&open), "open connections: {open}");
}

#[tokio::test]
async fn paths_and_hosts_reach_only_the_function_they_name_and_token_rotation_keeps_it_running() {
    let p = Platform::start("gwpaths");
    let dir = fixture("names");
    let entry = |name: &str| {
        json!({
            "name": name,
            "packageDir": dir,
            "filePath": dir.join("src").join("lib.rs"),
        })
    };
    let (_d, file) = deploy_file(json!([entry("alpha"), entry("beta")]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();
    let client = http();

    let who = |a: &Answer| -> (String, String) {
        assert_eq!(a.status, 200, "{a:?}");
        let body = a.json();
        (
            body["function"].as_str().unwrap_or_default().to_string(),
            body["path"].as_str().unwrap_or_default().to_string(),
        )
    };
    let said = |f: &str, path: &str| (f.to_string(), path.to_string());

    // Plain calls reach the function they name, with the path inside it.
    let a = raw(&p, &get("/functions/alpha/x/y?q=1", "x")).await;
    assert_eq!(who(&a), said("alpha", "/x/y"));
    let b = raw(&p, &get("/functions/beta", "x")).await;
    assert_eq!(who(&b), said("beta", "/"));
    // An encoded slash after the name stays inside the function, still encoded.
    let a = raw(&p, &get("/functions/alpha/x%2Fy", "x")).await;
    assert_eq!(who(&a), said("alpha", "/x%2Fy"));

    // Names that are not names, dot-segments (raw or encoded) and backslashes: 400, and no
    // function is called.
    for target in [
        "/functions/alpha/../beta/x",
        "/functions/alpha/..",
        "/functions/alpha/./x",
        "/functions/alpha/%2e%2e/beta",
        "/functions/alpha/%2E%2E/beta",
        "/functions/alpha/x%2F..%2F..%2Fbeta",
        "/functions/alpha%2F..%2Fbeta/x",
        "/functions/alpha%2fbeta",
        "/functions/..%2Fbeta",
        "/functions/%2e%2e/beta",
        "/functions/../beta",
        "/functions/alpha\\..\\beta",
        "/functions/alpha/%5C..%5Cbeta",
        "/functions/Alpha",
        "/functions/%61lpha",
        "/async-functions/alpha/../beta",
        "/async-functions/alpha%2Fbeta",
    ] {
        let answer = raw(&p, &get(target, "x")).await;
        let detail = answer.problem(400);
        assert!(!detail.is_empty(), "{target}: {answer:?}");
    }
    raw(&p, &get("/functions/gamma", "x")).await.problem(404);

    // The Host header and an absolute-form target never choose the upstream: the path does.
    let beta_host = format!("{}:6000", p.object("rfa-fn-beta"));
    let a = raw(&p, &get("/functions/alpha/h", &beta_host)).await;
    assert_eq!(who(&a), said("alpha", "/h"));
    assert_eq!(a.json()["forwardedHost"], beta_host.as_str());
    assert_ne!(a.json()["host"], beta_host.as_str());
    let a = raw(
        &p,
        &get(
            &format!("http://{beta_host}/functions/alpha/abs"),
            &beta_host,
        ),
    )
    .await;
    assert_eq!(who(&a), said("alpha", "/abs"));
    raw(&p, &get("/", &beta_host)).await.problem(404);
    let store_host = format!("{}:5001", p.object("rfa-store"));
    for target in [
        format!("http://{store_host}/tables"),
        format!("http://{beta_host}/"),
    ] {
        let answer = raw(&p, &get(&target, &store_host)).await;
        let detail = answer.problem(404);
        assert!(detail.contains("rfaas gateway"), "{target}: {detail}");
    }
    // Absolute-form to the store's path on the gateway still needs the token.
    raw(
        &p,
        &get(&format!("http://{store_host}/store/tables"), &store_host),
    )
    .await
    .problem(401);
    let connect = raw(
        &p,
        &format!("CONNECT {store_host} HTTP/1.1\r\nHost: {store_host}\r\n\r\n"),
    )
    .await;
    assert!(
        connect.status >= 400,
        "CONNECT must not open a tunnel: {connect:?}"
    );
    // The store's own paths with dot-segments are refused like the functions' (token given).
    let r = raw(
        &p,
        &format!(
            "GET /store/../metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            p.token()
        ),
    )
    .await;
    r.problem(400);

    // Token rotation: the running proxy takes the new token without a restart; functions keep
    // running; the old token is refused from then on; the CLI keeps working.
    let old = p.token();
    let proxy_started = inspect(&p.object("rfa-proxy"))["State"]["StartedAt"].clone();
    let alpha_id = container_id(&p.object("rfa-fn-alpha"));
    let refused = p.cli_env(&["startFaas", "--rotate-token"], &[("RFAAS_TOKEN", &old)]);
    let refused = refused.failed();
    assert!(
        refused.output().contains("RFAAS_TOKEN"),
        "says why: {refused}"
    );
    let run = p
        .cli(&["startFaas", "--port", &p.port.to_string(), "--rotate-token"])
        .ok();
    assert!(run.stdout.contains("admin token rotated"), "{run}");
    assert!(run.output().contains("no restart"), "{run}");
    let new = p.token();
    assert_ne!(new, old);
    assert_eq!(new.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.token_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode");
    let proxy = inspect(&p.object("rfa-proxy"));
    assert_eq!(
        proxy["State"]["StartedAt"], proxy_started,
        "proxy restarted"
    );
    assert!(!proxy.to_string().contains(&new));
    assert_eq!(container_id(&p.object("rfa-fn-alpha")), alpha_id);
    for path in ["/system/functions", "/store/tables"] {
        let r = client
            .get(p.url(path))
            .bearer_auth(&old)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "old token on {path}");
        let r = client
            .get(p.url(path))
            .bearer_auth(&new)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "new token on {path}");
    }
    let a = raw(&p, &get("/functions/alpha/after", "x")).await;
    assert_eq!(who(&a), said("alpha", "/after"));
    let details = p.cli(&["details", "--json"]).ok();
    let list: Value = serde_json::from_str(&details.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"alpha") && names.contains(&"beta"),
        "{names:?}"
    );
    // A restarted proxy reads the new token from its volume too.
    docker(&["restart", &p.object("rfa-proxy")]);
    eventually(
        Duration::from_secs(30),
        "the restarted proxy to take the new token",
        || {
            let client = client.clone();
            let url = p.url("/system/functions");
            let new = new.clone();
            async move {
                let r = client.get(url).bearer_auth(new).send().await.ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
    let r = client
        .get(p.url("/system/functions"))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // And a startFaas with nothing to change leaves it be.
    let again = p.cli(&["startFaas", "--port", &p.port.to_string()]).ok();
    assert!(again.stdout.contains("unchanged"), "{again}");
}
