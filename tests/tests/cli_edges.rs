//! Issue #22, items 7–9: the CLI's rough edges, as a user meets them — Rust keywords as names,
//! `details` and `logs` of a function that is down, unknown, or on a platform that is not
//! running, `logs -f` through a redeploy, per-entry deploy failures with the summary, and the
//! store subcommands' errors. Issue #16: `scale` and deploy.json's `scale` block refuse bad
//! input before anything is sent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rfaas_tests::*;
use serde_json::{Value, json};

/// A `proxyCli` child process whose stdout lines are collected; killed when dropped.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(p: &Platform, config_home: &std::path::Path, args: &[&str]) -> Follower {
        let mut child = Command::new(cli_path())
            .args(args)
            .env("RFAAS_INSTANCE", &p.instance)
            .env("XDG_CONFIG_HOME", config_home)
            .env_remove("RFAAS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("proxyCli runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Follower { child, lines }
    }

    fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn without_a_platform_names_and_logs_say_what_is_wrong() {
    let p = Platform::new("edges-off");
    let tmp = tempfile::tempdir().unwrap();
    // Rust keywords pass the name's shape but cannot name a Rust function.
    for keyword in ["fn", "self", "async", "gen"] {
        let dir = tmp.path().join(keyword);
        let run = p
            .cli(&["new", keyword, "--dir", dir.to_str().unwrap()])
            .failed();
        assert!(
            run.stderr
                .contains(&format!("'{keyword}' cannot be a function name"))
                && run.stderr.contains("Rust keyword")
                && run.stderr.contains(&format!("'{keyword}_x'")),
            "{run}"
        );
        assert!(!dir.exists(), "nothing is created for a refused name");
    }
    // `new` works on no instance: it neither offers nor takes --instance.
    let help = p.cli(&["new", "--help"]).ok();
    assert!(!help.stdout.contains("--instance"), "{help}");
    assert!(
        help.stdout.contains("--kind") && help.stdout.contains("mainProcess"),
        "{help}"
    );
    let run = p.cli(&["new", "ok_name", "--instance", "x"]).failed();
    assert!(
        run.stderr.contains("works on no platform instance"),
        "{run}"
    );

    // No platform: logs says so and how to start it, instead of "not deployed".
    let run = p.cli(&["logs", "echo"]).failed();
    assert!(
        run.stderr.contains("the rfaas platform is not running")
            && run
                .stderr
                .contains(&format!("startFaas --instance {}", p.instance))
            && !run.stderr.contains("no function named"),
        "{run}"
    );
    // A bad table name is said to be one, with the rule, before anything is sent.
    let run = p.cli(&["store", "create", "a/b", "{}"]).failed();
    assert!(
        run.stderr.contains("'a/b' is not a valid table name")
            && run.stderr.contains(rfa_wire::names::TABLE_NAME_RULE),
        "{run}"
    );
    let help = p.cli(&["store", "list", "--help"]).ok();
    assert!(help.stdout.contains("1 to 1000"), "{help}");
}

/// `scale` checks its count and name before it looks for a platform: with none running, a bad
/// one gets its own message (not "the platform is not running"), and a good one gets that.
/// A deploy file's bad `scale` block is reported per entry, before any platform is needed.
#[tokio::test]
async fn scale_refuses_bad_counts_names_and_blocks_before_any_request() {
    let p = Platform::new("edges-scale");
    for count in ["-1", "1.5", "x", "65", ""] {
        let run = p.cli(&["scale", "echo", count]).failed();
        assert!(
            run.stderr.contains(&format!(
                "'{count}' is not a replica count: give a whole number from 0 to 64"
            )) && !run.stderr.contains("not running"),
            "{count:?}: {run}"
        );
        assert!(run.stdout.is_empty(), "{run}");
    }
    for (name, says) in [
        ("Echo", "'Echo' is not a function name ("),
        ("../x", "'../x' is not a function name ("),
        (
            "fn",
            "'fn' is a Rust keyword, which no function can be named",
        ),
    ] {
        let run = p.cli(&["scale", name, "2"]).failed();
        assert!(
            run.stderr.contains(says)
                && run
                    .stderr
                    .contains(&format!("see `proxyCli details --instance {}`", p.instance))
                && !run.stderr.contains("not running"),
            "{name}: {run}"
        );
    }
    // A count and a name that could be right: only now is the platform looked for.
    let run = p.cli(&["scale", "echo", "2"]).failed();
    assert!(
        run.stderr.contains("not running")
            && run
                .stderr
                .contains(&format!("startFaas --instance {}", p.instance)),
        "{run}"
    );
    // `scale` is listed with the other commands, and says what N is.
    let help = p.cli(&["scale", "--help"]).ok();
    assert!(help.stdout.contains("0 to 64"), "{help}");

    // Bad scale blocks: each entry fails alone, naming the file, the entry and the rule.
    let mut entries = Vec::new();
    for (name, scale) in [
        ("inverted", json!({"min": 3, "max": 2})),
        (
            "sleepy",
            json!({"min": 0, "idlePause": "10m", "idleStop": "5m"}),
        ),
        ("awake", json!({"min": 1, "idlePause": "60s"})),
        ("vague", json!({"min": 0, "idlePause": "a while"})),
        ("lazy", json!({"targetInflight": 0})),
        ("huge", json!({"max": 65})),
    ] {
        let mut e = echo_entry(name);
        e["scale"] = scale;
        entries.push(e);
    }
    let mut outside = echo_entry("outside");
    outside["replicas"] = json!(5);
    outside["scale"] = json!({"max": 4});
    entries.push(outside);
    let (_dir, file) = deploy_file(Value::Array(entries));
    let run = p.cli(&["deploy", file.to_str().unwrap()]).failed();
    for (i, name, says) in [
        (
            0,
            "inverted",
            "scale.min 3 is above scale.max 2: raise scale.max or lower scale.min",
        ),
        (
            1,
            "sleepy",
            "scale.idlePause (10m) is longer than scale.idleStop (5m)",
        ),
        (2, "awake", "need scale.min 0"),
        (3, "vague", "scale.idlePause: 'a while' is not a duration"),
        (4, "lazy", "scale.targetInflight must be at least 1"),
        (5, "huge", "scale.max 65 is above 64"),
        (
            6,
            "outside",
            "replicas 5 is outside the scale block's bounds: give replicas 1 to 4",
        ),
    ] {
        let at = format!("deploy.json: deploy[{i}] (function '{name}'): ");
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(&at) && l.contains(says)),
            "{name}: {run}"
        );
    }
    // An unknown field in the block spoils the file, as anywhere in it.
    let mut typo = echo_entry("typo");
    typo["scale"] = json!({"minimum": 0});
    let (_dir, file) = deploy_file(json!([typo]));
    let run = p.cli(&["deploy", file.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("unknown field `minimum`"), "{run}");
}

#[tokio::test]
async fn down_unknown_and_redeployed_functions_in_details_and_logs() {
    let p = Platform::start("edges");
    let url = |name: &str| p.url(&format!("/functions/{name}"));

    // One good entry, one keyword, one whose package breaks a check: the good one deploys,
    // each bad one gets its `failed` line, and the summary counts both.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("notapkg")).unwrap();
    let mut echo = echo_entry("echo");
    echo["memory"] = json!("100663296"); // 96 MiB as a plain number of bytes
    let (_d, file) = deploy_file(json!([
        echo,
        echo_entry("fn"),
        {"name": "nopkg", "packageDir": tmp.path().join("notapkg"), "filePath": tmp.path().join("notapkg/lib.rs")},
    ]));
    let run = p.cli(&["deploy", file.to_str().unwrap()]).failed();
    assert!(
        run.stdout
            .contains(&format!("echo {} deployed", url("echo"))),
        "{run}"
    );
    assert!(
        run.stdout.contains(&format!("fn {} failed", url("fn"))),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("nopkg {} failed", url("nopkg"))),
        "{run}"
    );
    assert!(
        run.stderr.contains("'fn' cannot be a function name"),
        "{run}"
    );
    assert!(run.stderr.contains("not a Cargo package"), "{run}");
    assert!(
        run.stderr.contains("2 of 3 functions failed to deploy"),
        "{run}"
    );
    let memory = inspect(&p.object("rfa-fn-echo"))["HostConfig"]["Memory"].as_i64();
    assert_eq!(memory, Some(100_663_296));

    // A function's own /metrics answers through the gateway, as documented (public).
    let client = http();
    let r = client
        .get(p.url("/functions/echo/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("http_requests_in_flight"), "{page}");

    // Unknown vs deployed.
    let run = p.cli(&["logs", "nosuch"]).failed();
    assert!(
        run.stderr
            .contains("no function named 'nosuch' is deployed (deployed: echo)"),
        "{run}"
    );
    let run = p.cli(&["logs", "echo"]).ok();
    assert!(run.stdout.contains("listening"), "{run}");

    // `logs -f` keeps following when a redeploy replaces the replica.
    let mut follower = Follower::start(&p, &p_config(&p), &["logs", "-f", "echo"]);
    eventually(
        Duration::from_secs(20),
        "the first replica's start line",
        || async { (follower.count("listening") >= 1).then_some(()) },
    )
    .await;
    let mut changed = echo_entry("echo");
    changed["env"] = json!({"VERSION": "2"});
    let (_d2, file2) = deploy_file(json!([changed]));
    let run = p.cli(&["deploy", file2.to_str().unwrap()]).ok();
    assert!(
        run.stdout.contains("echo") && run.stdout.contains("deployed"),
        "{run}"
    );
    let r: Value = client
        .get(url("echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["version"], "2", "the new replica serves");
    eventually(
        Duration::from_secs(30),
        "the new replica's start line in `logs -f`",
        || async { (follower.count("listening") >= 2).then_some(()) },
    )
    .await;
    assert!(follower.running(), "logs -f exited at the redeploy");
    drop(follower);

    // Up: an uptime. Stopped (docker stop): down, and no uptime at all.
    let details: Value = serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
    assert_eq!(details[0]["name"], "echo");
    assert!(details[0]["uptimeSeconds"].is_u64(), "{details}");
    docker(&["stop", "-t", "5", &p.object("rfa-fn-echo")]);
    let details: Value = serde_json::from_str(&p.cli(&["details", "--json"]).ok().stdout).unwrap();
    assert_eq!(details[0]["status"], "down", "{details}");
    assert_eq!(details[0]["uptime"], "-", "{details}");
    assert!(details[0]["uptimeSeconds"].is_null(), "{details}");
    let table = p.cli(&["details"]).ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains(" down ") && row.contains(" - "), "{table}");

    // Down: said so, and the stopped replica's last logs are shown.
    let run = p.cli(&["logs", "echo"]).ok();
    assert!(
        run.stderr
            .contains("'echo' is deployed but down (no replica running)")
            && run.stderr.contains("startFaas"),
        "{run}"
    );
    assert!(run.stdout.contains("listening"), "{run}");

    // The store subcommands: delete prints what it deleted; a 413 names the limit.
    let created: Value = serde_json::from_str(
        &p.cli(&["store", "create", "notes", r#"{"text": "keep me"}"#])
            .ok()
            .stdout,
    )
    .unwrap();
    let id = created["id"].as_str().unwrap();
    let run = p.cli(&["store", "delete", "notes", id]).ok();
    assert!(
        run.stdout.contains("keep me") && run.stdout.contains(id),
        "{run}"
    );
    assert!(
        run.stderr
            .contains(&format!("deleted document {id} from table notes")),
        "{run}"
    );
    let big = tmp.path().join("big.json");
    std::fs::write(&big, json!({"blob": "x".repeat(1_100_000)}).to_string()).unwrap();
    let run = p
        .cli(&["store", "create", "notes", &format!("@{}", big.display())])
        .failed();
    assert!(run.stderr.contains("1048576 bytes"), "{run}");
}

/// The config home `Platform` gives its CLI runs (the token lives there).
fn p_config(p: &Platform) -> std::path::PathBuf {
    p.token_path()
        .parent()
        .and_then(|d| d.parent())
        .map(std::path::Path::to_path_buf)
        .expect("the token path is <config>/rfaas/token-<instance>")
}

/// Issue #18, part 6: `proxyCli logs` of a 3-replica function shows every replica, each line
/// marked with the one it came from, and `-f` follows all three.
#[tokio::test]
async fn logs_of_a_three_replica_function_show_and_follow_all_three() {
    let p = Platform::start("logs3");
    let mut echo = echo_entry("echo");
    echo["replicas"] = json!(3);
    let (_d, file) = deploy_file(json!([echo]));
    p.cli(&["deploy", file.to_str().unwrap()]).ok();

    // Each replica's start line, under its own name.
    let replicas_in = |text: &str, needle: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| l.split_once(" | ").map(|(r, _)| r.to_string()))
            .collect()
    };
    let run = p.cli(&["logs", "echo"]).ok();
    let started = replicas_in(&run.stdout, "listening");
    assert_eq!(started.len(), 3, "{run}");
    assert!(
        started.iter().all(|r| r.starts_with("rfa-fn-echo")),
        "{started:?}"
    );

    // `-f`: lines written after it started arrive from all three (calls are spread round robin).
    let mut follower = Follower::start(&p, &p_config(&p), &["logs", "-f", "echo"]);
    eventually(Duration::from_secs(20), "the start lines in -f", || async {
        (follower.count("listening") >= 3).then_some(())
    })
    .await;
    let client = http();
    for i in 0..9 {
        let r = client
            .post(p.url("/functions/echo/log"))
            .body(format!("followed-marker-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    eventually(
        Duration::from_secs(20),
        "markers from all three replicas",
        || async {
            let lines = follower.lines.lock().unwrap().join("\n");
            (replicas_in(&lines, "followed-marker").len() == 3).then_some(())
        },
    )
    .await;
    let lines = follower.lines.lock().unwrap().join("\n");
    assert_eq!(replicas_in(&lines, "followed-marker"), started, "{lines}");
    assert_eq!(
        follower.count("followed-marker"),
        9,
        "each line once: {lines}"
    );
    assert!(follower.running());
}
