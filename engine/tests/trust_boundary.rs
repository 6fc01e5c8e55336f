//! The scaler's trust boundary, against the real engine: the bridge engine acts on this
//! instance's function replicas and refuses every other container, whatever the caller claims.
//! The containers run `sleep` from an image made here of the host's own binary and libraries
//! (no registry), on a network of the test's own instance; everything is removed at the end.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rfa_engine::instance::{
    LABEL_DEPLOYMENT, LABEL_FUNCTION, LABEL_INSTANCE, LABEL_MANAGED, LABEL_ROLE, LABEL_UPSTREAM,
};
use rfa_engine::{
    Bridge, ContainerSpec, Engine, EngineError, FunctionEngine, FunctionTemplate, Instance, Reach,
    Replica, ReplicaState, Role,
};
use rfa_wire::route::{FunctionKind, RunSpec};

/// A `FROM scratch` image whose entry point sleeps forever: the host's `sleep` and what `ldd`
/// says it links, each at its own path.
async fn sleep_image(engine: &Engine) -> String {
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("sleep on this host");
    let ldd = std::process::Command::new("ldd")
        .arg(sleep)
        .output()
        .expect("ldd runs");
    let mut files = vec![sleep.to_string()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            files.push(path.to_string());
        }
    }
    let mut rootfs = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.trim_start_matches('/');
        let mut acc = String::new();
        for part in rel.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            acc = if acc.is_empty() {
                part.to_string()
            } else {
                format!("{acc}/{part}")
            };
            if dirs.insert(acc.clone()) {
                let mut h = rfa_engine::archive::header(tar::EntryType::Directory, 0o755, 0, 0);
                rootfs
                    .append_data(&mut h, format!("{acc}/"), std::io::empty())
                    .unwrap();
            }
        }
        let data = std::fs::read(file).unwrap();
        let mut h =
            rfa_engine::archive::header(tar::EntryType::Regular, 0o755, 0, data.len() as u64);
        rootfs.append_data(&mut h, rel, data.as_slice()).unwrap();
    }
    let rootfs = rootfs.into_inner().unwrap();
    let dockerfile =
        format!("FROM scratch\nADD rootfs.tar /\nENTRYPOINT [\"{sleep}\", \"infinity\"]\n");
    let mut context = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", dockerfile.as_bytes()),
        ("rootfs.tar", rootfs.as_slice()),
    ] {
        let mut h =
            rfa_engine::archive::header(tar::EntryType::Regular, 0o644, 0, data.len() as u64);
        context.append_data(&mut h, name, data).unwrap();
    }
    let tag = "rfa-engine-test-sleep:1".to_string();
    engine
        .build_image(&tag, context.into_inner().unwrap(), |_| {})
        .await
        .expect("the sleep image builds");
    tag
}

/// Runs a plain container with `labels` on `network`.
async fn run(engine: &Engine, name: &str, image: &str, network: &str, labels: &[(&str, &str)]) {
    let spec = ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        network: network.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        memory_bytes: Some(16 << 20),
        pids_limit: Some(16),
        hardened: true,
        ..Default::default()
    };
    engine.run(&spec).await.expect("a plain container runs");
}

/// What `docker inspect` says of a container: (running, paused), or `None` when it is gone.
async fn state(engine: &Engine, name: &str) -> Option<(bool, bool)> {
    let s = engine.inspect(name).await.unwrap()?.state?;
    Some((s.running == Some(true), s.paused == Some(true)))
}

/// A replica as a caller could forge it for a container.
fn claimed(container: &str, function: &str) -> Replica {
    Replica {
        container: container.to_string(),
        id: String::new(),
        function: function.to_string(),
        kind: FunctionKind::Http,
        deployment: "00000000".to_string(),
        index: 0,
        upstream: format!("rfa-fn-{function}-00000000-0:6000"),
        spec: String::new(),
        state: ReplicaState::Running,
    }
}

/// Every operation on `r` is refused with `NotOurs` naming the container and why; the
/// container is untouched: still running, not paused, same name.
async fn assert_refused(bridge: &Bridge, engine: &Engine, r: &Replica, why: &str) {
    let grace = Duration::from_secs(1);
    let results = [
        ("pause", bridge.pause(r).await),
        ("resume", bridge.resume(r).await),
        ("stop", bridge.stop(r, grace).await),
        ("start", bridge.start(r).await),
        ("remove", bridge.remove(r, grace).await),
        ("rename", bridge.rename(r, "stolen").await.map(|_| ())),
        (
            "wait_healthy",
            bridge.wait_healthy(r, Duration::from_secs(1)).await,
        ),
    ];
    for (op, result) in results {
        match result {
            Err(e @ EngineError::NotOurs { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(&format!("refusing to touch container {}", r.container))
                        && text.contains(why),
                    "{op} on {}: {text}",
                    r.container
                );
            }
            other => panic!(
                "{op} on {} must be refused as not ours, got {other:?}",
                r.container
            ),
        }
    }
    assert_eq!(
        state(engine, &r.container).await,
        Some((true, false)),
        "{} still runs, unpaused, under its name",
        r.container
    );
    assert!(engine.inspect("stolen").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_acts_on_its_replicas_and_refuses_every_other_container() {
    let engine = Engine::connect().await.expect("a Docker engine");
    let suffix = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let instance = Instance::new(Some(format!("engt{suffix}"))).unwrap();
    let other = Instance::new(Some(format!("engo{suffix}"))).unwrap();
    let image = sleep_image(&engine).await;
    let network = instance.network();
    engine
        .ensure_network(&network, instance.labels(Role::Proxy))
        .await
        .unwrap();
    let bridge = Bridge::new(engine.clone(), instance.clone(), Reach::ContainerIp).unwrap();

    // Containers the bridge must never touch.
    let plain = format!("rfa-engine-test-plain-{suffix}");
    run(&engine, &plain, &image, &network, &[]).await;
    let foreign = format!("rfa-fn-echo-{}", other.label());
    let foreign_labels = [
        (LABEL_MANAGED, "true"),
        (LABEL_ROLE, "function"),
        (LABEL_INSTANCE, other.label()),
        (LABEL_FUNCTION, "echo"),
        (LABEL_DEPLOYMENT, "00000000"),
        (LABEL_UPSTREAM, "rfa-fn-echo-00000000-0:6000"),
    ];
    run(&engine, &foreign, &image, &network, &foreign_labels).await;
    let platform = format!("rfa-proxy-{}", instance.label());
    let platform_labels: Vec<(String, String)> = instance
        .labels(Role::Proxy)
        .into_iter()
        .chain([(LABEL_FUNCTION.to_string(), "echo".to_string())])
        .collect();
    let platform_labels: Vec<(&str, &str)> = platform_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    run(&engine, &platform, &image, &network, &platform_labels).await;

    let outcome = async {
        assert_refused(
            &bridge,
            &engine,
            &claimed(&plain, "echo"),
            "not labelled io.rfaas.managed=true",
        )
        .await;
        assert_refused(
            &bridge,
            &engine,
            &claimed(&foreign, "echo"),
            &format!("it belongs to instance '{}'", other.label()),
        )
        .await;
        assert_refused(
            &bridge,
            &engine,
            &claimed(&platform, "echo"),
            "its role is 'proxy', not a function",
        )
        .await;

        // A replica of our own, made from a template: every operation does what it says.
        let template = FunctionTemplate {
            instance: instance.clone(),
            name: "echo".into(),
            kind: FunctionKind::Http,
            image: image.clone(),
            run: RunSpec {
                replicas: 1,
                env: vec![],
                memory_bytes: 16 << 20,
                nano_cpus: 100_000_000,
                pids: 16,
                max_inflight: 1,
                scale: None,
            },
            platform_env: vec![],
        };
        let name = format!("rfa-fn-echo-{}", instance.label());
        let ours = bridge
            .create(&template, "0a1b2c3d", 0, &name)
            .await
            .unwrap();
        assert_eq!(
            (ours.container.as_str(), ours.function.as_str(), ours.index),
            (name.as_str(), "echo", 0)
        );
        assert_eq!(ours.upstream, "rfa-fn-echo-0a1b2c3d-0:6000");
        assert_eq!(ours.state, ReplicaState::Running);
        assert_eq!(ours.spec, template.spec_hash());
        // Claiming it is another function's replica is refused too.
        let wrong = Replica {
            function: "other".into(),
            ..ours.clone()
        };
        let e = bridge.pause(&wrong).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("it is a replica of function 'echo', not of 'other'"),
            "{e}"
        );
        // Only our replica is listed.
        let listed = bridge.list(None).await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|r| r.container.as_str())
                .collect::<Vec<_>>(),
            [name.as_str()]
        );
        assert!(bridge.list(Some("other")).await.unwrap().is_empty());

        bridge.pause(&ours).await.unwrap();
        assert_eq!(state(&engine, &name).await, Some((true, true)), "paused");
        let listed = bridge.list(Some("echo")).await.unwrap();
        assert_eq!(listed[0].state, ReplicaState::Paused);
        bridge.resume(&ours).await.unwrap();
        assert_eq!(state(&engine, &name).await, Some((true, false)), "resumed");
        // A paused replica is thawed before it is stopped.
        bridge.pause(&ours).await.unwrap();
        bridge.stop(&ours, Duration::from_secs(1)).await.unwrap();
        assert_eq!(state(&engine, &name).await, Some((false, false)), "stopped");
        assert_eq!(
            bridge.list(Some("echo")).await.unwrap()[0].state,
            ReplicaState::Stopped
        );
        bridge.start(&ours).await.unwrap();
        assert_eq!(state(&engine, &name).await, Some((true, false)), "started");
        // `sleep` answers no /healthz: the wait says so, with the time it gave.
        let e = bridge
            .wait_healthy(&ours, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(
            matches!(e, EngineError::Unhealthy { .. })
                && e.to_string().contains("did not become healthy within"),
            "{e}"
        );
        bridge.pause(&ours).await.unwrap();
        bridge.remove(&ours, Duration::from_secs(1)).await.unwrap();
        assert_eq!(state(&engine, &name).await, None, "removed while paused");
        bridge.remove(&ours, Duration::from_secs(1)).await.unwrap();
        // A template of another instance is not created through this one's engine.
        let foreign_template = FunctionTemplate {
            instance: other.clone(),
            ..template
        };
        let e = bridge
            .create(&foreign_template, "0a1b2c3d", 1, "rfa-engine-test-x")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot be created through"), "{e}");
        assert!(engine.inspect("rfa-engine-test-x").await.unwrap().is_none());
    };
    // Clean up whatever the assertions did.
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    for name in [&plain, &foreign, &platform] {
        engine.remove_container(name).await.unwrap();
    }
    engine
        .remove_networks(HashMap::from([("name".to_string(), vec![network.clone()])]))
        .await
        .unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
