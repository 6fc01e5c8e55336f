//! DNS repair (docs/RELIABILITY.md, "DNS repair"), end to end with a real mode switch: a
//! bridge-mode platform runs on an engine of its own (`tests/src/inner_engine.rs`, never the host
//! engine), that engine enters and leaves swarm mode, its embedded DNS stops naming the
//! platform's containers, and `proxyCli startFaas` finds that and makes the network again with
//! nothing stored lost. Where no inner engine can run this fails, unless
//! `RFAAS_ALLOW_NO_INNER_ENGINE=1` makes it print `SKIPPED: <reason>`.

use std::time::Duration;

use rfaas_tests::inner_engine::{self, InnerEngine};
use rfaas_tests::{Platform, deploy_file, echo_entry, eventually, http};
use serde_json::{Value, json};

/// A bridge-mode instance on an inner engine. Field order: the instance's files go first, then
/// the engine (and everything the platform made on it).
struct InnerPlatform {
    p: Platform,
    engine: InnerEngine,
}

impl InnerPlatform {
    /// `proxyCli startFaas --bind <engine address>` on the inner engine (the gateway published
    /// where the host reaches it).
    fn start_faas(&mut self) -> rfaas_tests::Run {
        let (host, ip) = (self.engine.docker_host(), self.engine.ip().to_string());
        self.p
            .start_faas_env(&["--bind", &ip], &[("DOCKER_HOST", host.as_str())])
    }

    fn cli(&self, args: &[&str]) -> rfaas_tests::Run {
        let host = self.engine.docker_host();
        self.p.cli_env(args, &[("DOCKER_HOST", host.as_str())])
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.engine.ip(), self.p.port)
    }

    async fn health(&self) -> Value {
        let r = http()
            .get(self.url("/system/health"))
            .bearer_auth(self.p.token())
            .send()
            .await
            .expect("the gateway answers /system/health");
        assert_eq!(r.status(), 200);
        r.json().await.expect("JSON")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_mode_switch_breaks_the_networks_dns_and_start_faas_repairs_it() {
    let test = "a_swarm_mode_switch_breaks_the_networks_dns_and_start_faas_repairs_it";
    let Some(mut engine) = inner_engine::or_skip(test, InnerEngine::start("dns")) else {
        return;
    };
    engine
        .route_bridges()
        .expect("the host reaches the inner engine's containers");
    let mut ip = InnerPlatform {
        p: Platform::new("dns-fix"),
        engine,
    };
    ip.start_faas().ok();
    let (_dir, file) = deploy_file(json!([echo_entry("echo")]));
    ip.cli(&["deploy", file.to_str().unwrap()]).ok();

    // Healthy: every name resolves, the health route is behind the token.
    let health = ip.health().await;
    assert_eq!(health["dns"], "ok", "{health}");
    let roles: Vec<&str> = health["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["role"].as_str().unwrap())
        .collect();
    for role in ["store", "nats", "function"] {
        assert!(roles.contains(&role), "{role} is checked: {health}");
    }
    let anonymous = http().get(ip.url("/system/health")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let token = ip.p.token();
    let created: Value = http()
        .post(ip.url("/store/tables/notes/docs"))
        .bearer_auth(&token)
        .json(&json!({"text": "kept across the repair"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("a document id").to_string();
    let echo = http()
        .post(ip.url("/functions/echo"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(echo.status(), 200);

    // The engine enters swarm mode and leaves it while the platform runs.
    ip.engine.swarm_init().expect("swarm init");
    ip.engine
        .docker(&["swarm", "leave", "--force"])
        .expect("swarm leave");

    // The network's DNS no longer names the platform's containers: the gateway says so.
    let broken = eventually(
        Duration::from_secs(30),
        "the gateway to report broken DNS",
        || async {
            let h = ip.health().await;
            (h["dns"] == "broken").then_some(h)
        },
    )
    .await;
    let lost: Vec<&str> = broken["names"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["resolves"] == false)
        .map(|n| n["role"].as_str().unwrap())
        .collect();
    assert!(
        lost.contains(&"store"),
        "the store's name is lost: {broken}"
    );
    // (Calls on connections the gateway opened before still work for a while: new ones, and
    // every reconnect of NATS clients, would fail.)

    // startFaas finds it and makes the network again.
    let run = ip.start_faas().ok();
    let said = run.output();
    assert!(
        said.contains("made network") && said.contains("its DNS did not resolve"),
        "startFaas says what it repaired: {said}"
    );
    let health = ip.health().await;
    assert_eq!(health["dns"], "ok", "{health}");
    // (No scaler here: the CLI reaches this engine over TCP, so its socket cannot be mounted.)
    assert!(
        health["names"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["role"] != "scaler")
            .all(|n| n["resolves"] == true),
        "every name resolves again, the function's too: {health}"
    );

    // Nothing stored is lost, and everything answers through the same published port.
    let doc: Value = http()
        .get(ip.url(&format!("/store/tables/notes/docs/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["data"]["text"], "kept across the repair");
    let echo = eventually(
        Duration::from_secs(20),
        "the function to answer again",
        || async {
            let r = http()
                .post(ip.url("/functions/echo"))
                .body("again")
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(r)
        },
    )
    .await;
    let echoed: Value = echo.json().await.unwrap();
    assert_eq!(echoed["bodyLength"], 5, "{echoed}");

    // Once repaired, startFaas has nothing left to do.
    let run = ip.start_faas().ok();
    assert!(
        run.stdout.contains("already up and unchanged"),
        "{}",
        run.output()
    );
}
