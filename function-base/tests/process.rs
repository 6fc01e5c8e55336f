//! `run_http` as a real process: the test binary runs itself as the function (env
//! `RFA_TEST_CHILD`), and the parent checks the port, the JSON logs, SIGTERM and the exit code.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use function_base::prelude::*;

async fn hello(req: Request) -> impl IntoResponse {
    format!("hello {}", req.uri())
}

/// Not a test on its own: the body of the child process.
#[test]
fn child_main() {
    if std::env::var_os("RFA_TEST_CHILD").is_none() {
        return;
    }
    let code = function_base::run_http(hello);
    std::process::exit(if code == std::process::ExitCode::SUCCESS {
        0
    } else {
        1
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn spawn_child(port: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
        .env("RFA_TEST_CHILD", "1")
        .env(rfa_wire::env::PORT, port)
        .env(rfa_wire::env::FUNCTION_NAME, "hello")
        .env_remove(rfa_wire::env::NATS_URL)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn serves_logs_json_and_exits_0_on_sigterm() {
    let port = free_port();
    let mut child = spawn_child(&port.to_string());
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match client.get(format!("{url}/x?y=1")).send().await {
            Ok(r) => break r.text().await.expect("text"),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the child never answered: {e}"),
        }
    };
    assert_eq!(answer, "hello /x?y=1");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));

    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    // (The test harness prints its own words before the first line.)
    let logs: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| l.find("{\"timestamp\"").map(|i| &l[i..]))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let messages: Vec<&str> = logs
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"listening"), "{out}");
    assert!(messages.contains(&"got SIGTERM"), "{out}");
}

/// `<binary> healthcheck` (what a Swarm HEALTHCHECK runs) passes while the function serves on
/// `$RFAAS_PORT` and fails, saying why, once it is gone.
#[tokio::test]
async fn the_healthcheck_passes_while_the_function_serves() {
    let port = free_port();
    assert!(
        function_base::health::check(port).is_err(),
        "nothing serves yet"
    );
    let mut child = spawn_child(&port.to_string());
    let deadline = Instant::now() + Duration::from_secs(20);
    while function_base::health::check(port).is_err() {
        assert!(Instant::now() < deadline, "the child never became healthy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("kill");
    wait_exit(&mut child, Duration::from_secs(20));
    let why = function_base::health::check(port).unwrap_err();
    assert!(why.contains("cannot connect"), "{why}");
}

#[test]
fn a_bad_environment_exits_non_zero() {
    let mut child = spawn_child("not-a-port");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
}
