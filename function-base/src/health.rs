//! The function binary as its own health check: `<binary> healthcheck` asks the function serving
//! in the same container (`127.0.0.1:$RFAAS_PORT/healthz`) and exits 0 when it answers 200, 1
//! otherwise. An orchestrator's HEALTHCHECK runs it (Docker Swarm routes calls to a replica, and
//! lets a rolling update go on, only while it passes), so the image needs no other program.
//!
//! Plain `std` and HTTP/1.0 on purpose: it runs every few seconds in every replica, so it starts
//! no runtime and links nothing more.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// The argument that makes a function binary check instead of serve.
pub const HEALTHCHECK_ARG: &str = "healthcheck";

/// How long the check waits to connect, and then for the answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the process was started as its own health check (`<binary> healthcheck`).
pub fn requested() -> bool {
    std::env::args().nth(1).as_deref() == Some(HEALTHCHECK_ARG)
}

/// Asks `127.0.0.1:<port>/healthz`; `Ok` when it answered `200`, else why not.
pub fn check(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    // The status line is all that matters: `HTTP/1.x 200 …`.
    let mut head = [0u8; 32];
    let mut len = 0;
    while len < head.len() {
        match stream.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) => return Err(format!("no answer from {addr}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head[..len]);
    let status = line.split_whitespace().nth(1).unwrap_or_default();
    if line.starts_with("HTTP/1.") && status == "200" {
        Ok(())
    } else {
        Err(format!(
            "{addr}/healthz answered {:?}",
            line.lines().next().unwrap_or_default()
        ))
    }
}

/// Runs the check against `$RFAAS_PORT` (default 6000) and turns it into the exit code, saying
/// why on stderr when it fails (Docker keeps the output with the health state).
pub fn run() -> ExitCode {
    let port = std::env::var(rfa_wire::env::PORT)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(rfa_wire::FUNCTION_PORT);
    match check(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_once(answer: &'static [u8]) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        port
    }

    #[test]
    fn passes_only_on_200() {
        assert!(
            check(serve_once(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            ))
            .is_ok()
        );
        let e = check(serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")).unwrap_err();
        assert!(e.contains("503"), "{e}");
        let e = check(serve_once(b"garbage")).unwrap_err();
        assert!(e.contains("garbage"), "{e}");
        let e = check(serve_once(b"")).unwrap_err();
        assert!(e.contains("answered"), "{e}");
    }

    #[test]
    fn fails_when_nothing_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = check(port).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
