//! The inner-engine harness (`tests/src/inner_engine.rs`): Docker engines of their own, each in
//! a container, so that Swarm tests never switch the host engine into swarm mode.
//!
//! Where no inner engine can start these tests fail, unless `RFAAS_ALLOW_NO_INNER_ENGINE=1`
//! makes them print `SKIPPED: <reason>` instead.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use rfaas_tests::inner_engine::{self, InnerEngine};
use rfaas_tests::{docker, docker_lines};

/// The host engine's swarm state and node ID: inner-engine tests must leave it as it was.
fn host_swarm() -> String {
    docker(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}}",
    ])
    .trim()
    .to_string()
}

/// Polls `check` every 250 ms until it returns `Some`, or panics after `timeout` with the last
/// state `check` reported.
fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

#[test]
fn an_inner_engine_is_an_engine_of_its_own() {
    let host_before = host_swarm();
    let host_id = docker(&["info", "--format", "{{.ID}}"]).trim().to_string();
    let Some(engine) = inner_engine::or_skip(
        "an_inner_engine_is_an_engine_of_its_own",
        InnerEngine::start("solo"),
    ) else {
        return;
    };
    assert!(
        engine.docker_host().starts_with("tcp://") && engine.docker_host().ends_with(":2375"),
        "{}",
        engine.docker_host()
    );

    let info: serde_json::Value =
        serde_json::from_str(&engine.docker(&["info", "--format", "{{json .}}"]).unwrap()).unwrap();
    assert_ne!(info["ID"], host_id, "the inner engine has an ID of its own");
    assert_eq!(info["ID"], engine.engine_id());
    assert_eq!(
        info["Name"],
        engine.name(),
        "its hostname is its container name"
    );
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(info["Driver"], "overlay2");

    // What is made inside stays inside: a network of the inner engine is not the host's.
    let inside = format!("rfa-only-inside-{}", rand::random::<u32>());
    engine.docker(&["network", "create", &inside]).unwrap();
    assert!(
        engine
            .docker(&["network", "ls", "--format", "{{.Name}}"])
            .unwrap()
            .lines()
            .any(|n| n == inside)
    );
    assert!(
        docker_lines(&["network", "ls", "--filter", &format!("name={inside}"), "-q"]).is_empty(),
        "the host engine does not see the inner engine's network"
    );

    // Dropping the engine removes its container.
    let container = engine.name().to_string();
    drop(engine);
    assert!(
        docker_lines(&["ps", "-aq", "--filter", &format!("name=^{container}$")]).is_empty(),
        "{container} is removed on drop"
    );
    assert_eq!(host_swarm(), host_before, "the host engine's swarm state");
}

#[test]
fn two_inner_engines_form_a_swarm_with_an_overlay() {
    let test = "two_inner_engines_form_a_swarm_with_an_overlay";
    let host_before = host_swarm();
    let t0 = Instant::now();
    let started = std::thread::scope(|s| {
        let manager = s.spawn(|| InnerEngine::start("manager"));
        let worker = s.spawn(|| InnerEngine::start("worker"));
        let (manager, worker) = (manager.join().unwrap(), worker.join().unwrap());
        manager.and_then(|m| worker.map(|w| (m, w)))
    });
    let Some((manager, worker)) = inner_engine::or_skip(test, started) else {
        return;
    };
    let ready = t0.elapsed();

    // The probe image is built on the host and copied to each node: nothing can be pulled.
    let t = Instant::now();
    let probe = inner_engine::image_from_binary(
        Path::new(env!("CARGO_BIN_EXE_inner-probe")),
        "rfa-test-probe",
    )
    .unwrap();
    let probe_built = t.elapsed();

    let t = Instant::now();
    manager.swarm_init().unwrap();
    worker.swarm_join(&manager).unwrap();
    let joined = t.elapsed();
    let nodes = manager.nodes().unwrap();
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.hostname.as_str(), n.status.as_str()))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([(manager.name(), "Ready"), (worker.name(), "Ready")]),
        "{nodes:?}"
    );
    assert_eq!(worker.info("{{.Swarm.LocalNodeState}}").unwrap(), "active");
    assert_eq!(worker.info("{{.Swarm.ControlAvailable}}").unwrap(), "false");

    let t = Instant::now();
    std::thread::scope(|s| {
        let m = s.spawn(|| manager.load_image(&probe));
        let w = s.spawn(|| worker.load_image(&probe));
        m.join().unwrap().unwrap();
        w.join().unwrap().unwrap();
    });
    let loaded = t.elapsed();

    manager
        .docker(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--opt",
            "com.docker.network.driver.mtu=1350",
            "probe-net",
        ])
        .unwrap();
    // The driver options show once the manager's allocator has handled the network.
    wait_for(Duration::from_secs(10), "probe-net's MTU option", || {
        let mtu = manager
            .docker(&[
                "network",
                "inspect",
                "--format",
                "{{index .Options \"com.docker.network.driver.mtu\"}}",
                "probe-net",
            ])
            .map_err(|e| format!("{e:#}"))?;
        (mtu.trim() == "1350").then_some(()).ok_or(mtu)
    });

    // dnsrr: this kernel has no IPVS, so no virtual IP; `tasks.probe` names each task.
    let t = Instant::now();
    manager
        .docker(&[
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            "probe",
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--network",
            "probe-net",
            "--env",
            "PROBE_ANSWER={{.Node.Hostname}}",
            "--init",
            &probe,
            "serve",
            "8080",
        ])
        .unwrap();
    let placed = wait_for(
        Duration::from_secs(60),
        "both probe tasks running, one per node",
        || {
            let tasks = manager
                .docker(&[
                    "service",
                    "ps",
                    "probe",
                    "--filter",
                    "desired-state=running",
                    "--format",
                    "{{.Node}}\t{{.CurrentState}}\t{{.Error}}",
                ])
                .map_err(|e| format!("{e:#}"))?;
            let running: BTreeSet<String> = tasks
                .lines()
                .filter(|l| {
                    l.split('\t')
                        .nth(1)
                        .is_some_and(|s| s.starts_with("Running"))
                })
                .filter_map(|l| l.split('\t').next().map(str::to_string))
                .collect();
            if running.len() == 2 {
                Ok(running)
            } else {
                Err(tasks)
            }
        },
    );
    assert_eq!(
        placed,
        BTreeSet::from([manager.name().to_string(), worker.name().to_string()]),
        "one task on each node"
    );
    let running = t.elapsed();
    // Running a task made each engine a docker_gwbridge; it comes from the engine's own pool in
    // 100.96.0.0/11, not from the host's default ranges (172.17.0.0/16 is the host's docker0).
    for engine in [&manager, &worker] {
        let subnet = engine
            .docker(&[
                "network",
                "inspect",
                "docker_gwbridge",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            ])
            .unwrap();
        let octets: Vec<u32> = subnet
            .trim()
            .split(['.', '/'])
            .filter_map(|o| o.parse().ok())
            .collect();
        assert!(
            octets.len() == 5 && octets[0] == 100 && (96..128).contains(&octets[1]),
            "docker_gwbridge of {}: {subnet}",
            engine.name()
        );
    }

    // A container on the worker reaches the manager's task over the overlay, by DNS.
    let t = Instant::now();
    let answers = worker
        .docker_within(
            &[
                "run",
                "--rm",
                "--init",
                "--network",
                "probe-net",
                &probe,
                "query",
                "tasks.probe",
                "8080",
                "2",
            ],
            Duration::from_secs(60),
        )
        .unwrap();
    let reached = t.elapsed();
    let nodes_answering: BTreeSet<&str> = answers
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // `<ip> <answer> <filler bytes>`: every byte of 64 KiB crossed the overlay.
            (f.len() == 3 && f[2] == "65536").then_some(f[1])
        })
        .collect();
    // The overlay's MTU option is the size of the VXLAN packets on the nodes' links: the
    // container's interface on probe-net gets 50 bytes less (the VXLAN encapsulation).
    let mtus: Vec<&str> = answers
        .lines()
        .filter_map(|l| l.strip_prefix("mtu "))
        .collect();
    assert!(
        mtus.iter().any(|m| m.ends_with(" 1300")),
        "an interface with MTU 1350 - 50 in the worker's container: {answers}"
    );
    assert_eq!(
        nodes_answering,
        BTreeSet::from([manager.name(), worker.name()]),
        "tasks.probe from the worker: {answers}"
    );

    eprintln!(
        "figures: engines ready {:.1} s (both, in parallel), probe image {:.1} s, swarm init + \
         join {:.1} s, image loads {:.1} s, tasks running {:.1} s, cross-node query {:.1} s; \
         memory: manager {}, worker {}",
        ready.as_secs_f64(),
        probe_built.as_secs_f64(),
        joined.as_secs_f64(),
        loaded.as_secs_f64(),
        running.as_secs_f64(),
        reached.as_secs_f64(),
        manager.memory_usage().unwrap_or_default(),
        worker.memory_usage().unwrap_or_default(),
    );
    drop((manager, worker));
    assert_eq!(host_swarm(), host_before, "the host engine's swarm state");
}
