//! Issue #7: every container rfaas starts runs with least privilege, and a deploy builds only
//! from the function's own package and writes only under `deployments/`. Checked the way a user
//! would: `docker inspect` of every container the instance has, a function reporting what its
//! process may do, and the files of the running image (`docker export`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rfaas_tests::*;
use serde_json::{Value, json};

/// A function that reports what its own process is allowed to do.
const PROBE: &str = r#"use function_base::prelude::*;

pub async fn probe(_req: Request) -> impl IntoResponse {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let outcome = |r: std::io::Result<()>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let root_write = outcome(std::fs::write("/probe-was-here", b"x"));
    let app_write = outcome(std::fs::write("/app/probe-was-here", b"x"));
    let tmp_write = outcome(std::fs::write("/tmp/probe-was-here", b"x"));
    // A copy of this very binary in /tmp must not run: /tmp is noexec.
    let tmp_exec = outcome((|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::copy("/app/main", "/tmp/main-copy")?;
        std::fs::set_permissions("/tmp/main-copy", std::fs::Permissions::from_mode(0o755))?;
        std::process::Command::new("/tmp/main-copy").arg("--version").output().map(|_| ())
    })());
    Json(json!({
        "uid": field("Uid:"),
        "gid": field("Gid:"),
        "capEff": field("CapEff:"),
        "capPrm": field("CapPrm:"),
        "capBnd": field("CapBnd:"),
        "noNewPrivs": field("NoNewPrivs:"),
        "rootWrite": root_write,
        "appWrite": app_write,
        "tmpWrite": tmp_write,
        "tmpExec": tmp_exec,
        "dockerSocket": std::path::Path::new("/var/run/docker.sock").exists()
            || std::path::Path::new("/run/docker.sock").exists(),
    }))
}
"#;

/// Files in `dir` (relative paths), recursively.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

/// Asserts the least-privilege settings of one container, from `docker inspect`.
fn assert_locked_down(c: &Value, instance: &str) {
    let name = c["Name"].as_str().unwrap().trim_start_matches('/');
    let role = c["Config"]["Labels"]["io.rfaas.role"].as_str().unwrap();
    let host = &c["HostConfig"];
    let user = c["Config"]["User"].as_str().unwrap_or_default();
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "{name}: Config.User '{user}' is a non-root numeric uid"
    );
    assert_eq!(host["ReadonlyRootfs"], true, "{name}: read-only root");
    assert_eq!(host["CapDrop"], json!(["ALL"]), "{name}: no capabilities");
    assert!(
        host["CapAdd"].is_null() || host["CapAdd"] == json!([]),
        "{name}: adds none back: {}",
        host["CapAdd"]
    );
    assert_eq!(
        host["SecurityOpt"],
        json!(["no-new-privileges:true"]),
        "{name}: no-new-privileges"
    );
    assert_eq!(host["Privileged"], false, "{name}: not privileged");
    for (key, limit) in [("Memory", 6 << 20), ("NanoCpus", 1), ("PidsLimit", 1)] {
        assert!(
            host[key].as_i64().is_some_and(|v| v >= limit),
            "{name}: a {key} limit: {}",
            host[key]
        );
    }
    assert_eq!(host["MemorySwap"], host["Memory"], "{name}: no swap on top");
    let tmpfs = host["Tmpfs"].as_object().expect("a tmpfs");
    assert_eq!(
        tmpfs.keys().collect::<Vec<_>>(),
        ["/tmp"],
        "{name}: only /tmp"
    );
    let opts = tmpfs["/tmp"].as_str().unwrap();
    for o in ["noexec", "nosuid", "nodev", "size="] {
        assert!(opts.contains(o), "{name}: /tmp is {opts}, lacks {o}");
    }
    let network = format!("rfa-net-{instance}");
    assert_eq!(
        host["NetworkMode"], network,
        "{name}: the instance's own network, not the host's"
    );
    let networks: Vec<&String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(networks, [&network], "{name}: on no other network");
    assert!(
        host["PidMode"].as_str().unwrap_or_default().is_empty(),
        "{name}: own pid namespace"
    );
    assert_ne!(host["IpcMode"], "host", "{name}: own IPC namespace");
    assert_ne!(host["UTSMode"], "host", "{name}: own UTS namespace");
    assert!(
        host["Devices"].is_null() || host["Devices"] == json!([]),
        "{name}: no devices"
    );
    assert!(
        host["Binds"].is_null() || host["Binds"] == json!([]),
        "{name}: no bind mounts: {}",
        host["Binds"]
    );
    // The engine's socket: the scaler's alone, the one bind mount rfaas makes.
    let mut socket = None;
    for m in c["Mounts"].as_array().unwrap() {
        if role == "scaler" && m["Type"] == "bind" {
            assert_eq!(m["Destination"], "/var/run/docker.sock", "{name}: {m}");
            assert!(socket.replace(m.clone()).is_none(), "{name}: one socket");
            continue;
        }
        assert_ne!(m["Type"], "bind", "{name}: bind mount {m}");
        assert!(!m.to_string().contains("docker.sock"), "{name}: {m}");
        if m["Type"] == "volume" {
            assert_eq!(m["Destination"], "/data", "{name}: {m}");
        }
    }
    let groups = &host["GroupAdd"];
    if role == "scaler" {
        let socket = socket.unwrap_or_else(|| panic!("{name}: the scaler has the socket"));
        let source = socket["Source"].as_str().unwrap();
        let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(source).unwrap());
        assert_eq!(
            groups,
            &json!([gid.to_string()]),
            "{name}: the socket's group, and no other"
        );
    } else {
        assert!(
            groups.is_null() || groups == &json!([]),
            "{name}: no extra groups: {groups}"
        );
    }
    let published = &host["PortBindings"];
    if role == "proxy" {
        let ports = published.as_object().unwrap();
        assert_eq!(ports.len(), 1, "{name}: one published port: {published}");
        for bindings in ports.values() {
            for b in bindings.as_array().unwrap() {
                assert_eq!(b["HostIp"], "127.0.0.1", "{name}: loopback only: {b}");
            }
        }
    } else {
        assert!(
            published.is_null() || published.as_object().is_some_and(|m| m.is_empty()),
            "{name} ({role}) publishes nothing: {published}"
        );
    }
}

#[tokio::test]
async fn every_container_is_locked_down_and_a_function_really_is() {
    let mut p = Platform::new("leastpriv");
    let run = p.start_faas(&[]).ok();
    assert!(!run.stderr.contains("warning: --bind"), "{run}");

    // A scaffolded function whose package also holds what must never reach an image.
    let work = tempfile::tempdir().unwrap();
    let pkg = work.path().join("probe");
    p.cli(&["new", "probe", "--dir", pkg.to_str().unwrap()])
        .ok();
    std::fs::write(pkg.join("src/lib.rs"), PROBE).unwrap();
    let env_secret = format!("ENV-SECRET-{}", rand::random::<u64>());
    let target_secret = format!("TARGET-SECRET-{}", rand::random::<u64>());
    let git_secret = format!("GIT-SECRET-{}", rand::random::<u64>());
    std::fs::write(pkg.join(".env"), format!("API_KEY={env_secret}\n")).unwrap();
    std::fs::write(pkg.join(".env.local"), format!("API_KEY={env_secret}\n")).unwrap();
    std::fs::create_dir_all(pkg.join("target/junk")).unwrap();
    std::fs::write(pkg.join("target/junk/blob.txt"), &target_secret).unwrap();
    std::fs::create_dir_all(pkg.join(".git")).unwrap();
    std::fs::write(pkg.join(".git/config"), &git_secret).unwrap();
    // The deploy file sits beside the package and reaches it through `..`, with limits of its own.
    let conf = work.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let deploy = conf.join("deploy.json");
    std::fs::write(
        &deploy,
        json!({"deploy": [{"name": "probe", "packageDir": "../probe",
            "filePath": "../probe/src/lib.rs", "memory": "64m", "cpus": "0.5", "pids": 64}]})
        .to_string(),
    )
    .unwrap();
    let package_before = files(&pkg);
    p.cli(&["deploy", deploy.to_str().unwrap()]).ok();
    assert_eq!(
        files(&pkg),
        package_before,
        "the deploy wrote nothing into the user's package"
    );
    let generated = root().join("deployments").join(&p.instance).join("probe");
    assert!(generated.join("Cargo.toml").is_file(), "{generated:?}");

    // Every container of the instance (a future one too), from docker inspect.
    let names = p.containers();
    for role in ["proxy", "store", "nats", "scaler", "function"] {
        assert!(
            names.iter().any(|n| {
                inspect(n)["Config"]["Labels"]["io.rfaas.role"].as_str() == Some(role)
            }),
            "a {role} container among {names:?}"
        );
    }
    for name in &names {
        assert_locked_down(&inspect(name), &p.instance);
    }
    // The scaler can reach the engine, but as a non-root user, and it is the only one that can.
    let scaler = inspect(&p.object("rfa-scaler"));
    assert_eq!(
        scaler["Config"]["User"], "10001:10001",
        "the scaler is not root"
    );
    let with_socket: Vec<&String> = names
        .iter()
        .filter(|n| inspect(n).to_string().contains("docker.sock"))
        .collect();
    assert_eq!(
        with_socket,
        [&p.object("rfa-scaler")],
        "only the scaler has the socket"
    );
    // The gateway knows where the scaler is.
    let proxy_env = inspect(&p.object("rfa-proxy"))["Config"]["Env"].to_string();
    assert!(
        proxy_env.contains("RFAAS_SCALER_URL=http://rfa-scaler:7070"),
        "{proxy_env}"
    );
    // The function's own limits, from its deploy entry.
    let f = inspect(&p.object("rfa-fn-probe"));
    assert_eq!(f["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(f["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(f["HostConfig"]["PidsLimit"], 64);

    // Inside: what the function's process may really do.
    let r = http().get(p.url("/functions/probe")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["uid"], "10001 10001 10001 10001", "{v}");
    assert_eq!(v["gid"], "10001 10001 10001 10001", "{v}");
    for cap in ["capEff", "capPrm", "capBnd"] {
        assert_eq!(v[cap], "0000000000000000", "{cap}: {v}");
    }
    assert_eq!(v["noNewPrivs"], "1", "{v}");
    for path in ["rootWrite", "appWrite"] {
        assert!(
            v[path].as_str().unwrap().contains("Read-only file system"),
            "{path}: {v}"
        );
    }
    assert_eq!(v["tmpWrite"], "ok", "{v}");
    assert!(
        v["tmpExec"].as_str().unwrap().contains("Permission denied"),
        "{v}"
    );
    assert_eq!(v["dockerSocket"], false, "{v}");

    // The image holds the program and its runtime, nothing from the package's junk.
    let export = work.path().join("export.tar");
    docker(&[
        "export",
        "-o",
        export.to_str().unwrap(),
        &p.object("rfa-fn-probe"),
    ]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&export)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start_matches("./") == "app/main"),
        "the listing is real"
    );
    for junk in [".env", "target/", ".git", "junk", "Cargo.toml", "src/"] {
        assert!(
            !listing.lines().any(|l| l.contains(junk)),
            "{junk} in the image:\n{listing}"
        );
    }
    let bytes = std::fs::read(&export).unwrap();
    for secret in [&env_secret, &target_secret, &git_secret] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is somewhere in the image"
        );
    }

    // A symlink in the package leading outside it: refused before anything is built.
    let image_before = f["Config"]["Image"].clone();
    std::os::unix::fs::symlink("/etc/hostname", pkg.join("src/leak.txt")).unwrap();
    let run = p.cli(&["deploy", deploy.to_str().unwrap()]).failed();
    assert!(
        run.stderr
            .contains("leak.txt is a symlink to /etc/hostname, outside the package"),
        "{run}"
    );
    assert!(run.stderr.contains("Replace the link"), "{run}");
    std::fs::remove_file(pkg.join("src/leak.txt")).unwrap();
    assert_eq!(
        inspect(&p.object("rfa-fn-probe"))["Config"]["Image"],
        image_before,
        "the running version is untouched"
    );

    // Names and package paths that try to leave: clear errors, nothing written.
    std::fs::write(work.path().join("outside.rs"), PROBE).unwrap();
    let deployments = root().join("deployments");
    let before = files(&deployments.join(&p.instance));
    for (entry, says) in [
        (
            json!({"name": "../x", "packageDir": "../probe", "filePath": "../probe/src/lib.rs"}),
            "deploy[0]: '../x' is not a valid function name",
        ),
        (
            json!({"name": "x", "packageDir": "../probe/../../../nowhere", "filePath": "../probe/src/lib.rs"}),
            "is not a Cargo package",
        ),
        (
            json!({"name": "x", "packageDir": "../probe", "filePath": "../probe/../outside.rs"}),
            "lies outside packageDir",
        ),
        (
            json!({"name": "x", "packageDir": "../probe", "filePath": "../probe", "cpus": 0}),
            "deploy[0] (function 'x'): cpus 0 is out of range",
        ),
        (
            json!({"name": "x", "packageDir": "../probe", "filePath": "../probe", "pids": 1}),
            "pids 1 is out of range: give it 16 to",
        ),
    ] {
        let bad = conf.join("bad.json");
        std::fs::write(&bad, json!({ "deploy": [entry] }).to_string()).unwrap();
        let run = p.cli(&["deploy", bad.to_str().unwrap()]).failed();
        assert!(run.stderr.contains(says), "{entry}: {run}");
    }
    assert_eq!(files(&deployments.join(&p.instance)), before);
    assert!(!deployments.join("x").exists());
    assert!(!root().join("x").exists());

    // Publishing beyond loopback works but says what it means.
    let other = Platform::new("leastprivbind");
    let run = other
        .cli(&[
            "startFaas",
            "--bind",
            "0.0.0.0",
            "--nats-url",
            "http://not-nats",
        ])
        .failed();
    assert!(
        run.stderr
            .contains("warning: --bind 0.0.0.0 publishes the gateway")
            && run
                .stderr
                .contains("only the admin token protects /system and /store"),
        "{run}"
    );
}
