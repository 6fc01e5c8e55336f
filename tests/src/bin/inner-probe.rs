//! `inner-probe`: a tiny TCP server and client for the inner-engine tests, packed into a
//! FROM scratch image (nothing can be pulled on the test machines). Standard library only.
//!
//! - `inner-probe serve <port>`: answers every connection with one line, `$PROBE_ANSWER` (or the
//!   hostname), then 64 KiB of filler (enough full-size segments to show a wrong overlay MTU),
//!   and closes.
//! - `inner-probe query <host> <port> <want>`: resolves every address of `<host>` (e.g.
//!   `tasks.<service>`), asks each one, and prints `<ip> <answer> <filler bytes>` per address once
//!   `<want>` different answers came back with their whole filler, after one `mtu <interface>
//!   <mtu>` line per network interface but `lo`. Retries for 30 s (name records spread between
//!   nodes by gossip), then prints what it got and exits 1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const FILLER: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", port] => serve(port),
        ["query", host, port, want] => query(host, port, want),
        _ => {
            eprintln!("usage: inner-probe serve <port> | query <host> <port> <want>");
            2
        }
    };
    std::process::exit(code);
}

fn serve(port: &str) -> i32 {
    let answer = std::env::var("PROBE_ANSWER").unwrap_or_else(|_| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    });
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("inner-probe: cannot listen on port {port}: {e}");
            return 1;
        }
    };
    println!("inner-probe: {answer} listening on port {port}");
    let mut reply = format!("{answer}\n").into_bytes();
    reply.resize(reply.len() + FILLER, b'x');
    for stream in listener.incoming() {
        match stream {
            Ok(mut s) => {
                let _ = s.write_all(&reply);
            }
            Err(e) => eprintln!("inner-probe: accept: {e}"),
        }
    }
    0
}

/// One answer: the first line and how many filler bytes followed it.
fn ask(addr: SocketAddr) -> Result<(String, usize), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).map_err(|e| e.to_string())?;
    let newline = got
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no answer line")?;
    let answer = String::from_utf8_lossy(&got[..newline]).into_owned();
    Ok((answer, got.len() - newline - 1))
}

fn query(host: &str, port: &str, want: &str) -> i32 {
    let (Ok(port), Ok(want)) = (port.parse::<u16>(), want.parse::<usize>()) else {
        eprintln!("inner-probe: port and want must be numbers");
        return 2;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    loop {
        lines.clear();
        let mut answers = std::collections::BTreeSet::new();
        match (host, port).to_socket_addrs() {
            Ok(addrs) => {
                for addr in addrs {
                    match ask(addr) {
                        Ok((answer, filler)) => {
                            if filler == FILLER {
                                answers.insert(answer.clone());
                            }
                            lines.push(format!("{} {answer} {filler}", addr.ip()));
                        }
                        Err(e) => lines.push(format!("{} error: {e}", addr.ip())),
                    }
                }
            }
            Err(e) => lines.push(format!("resolve {host}: {e}")),
        }
        if answers.len() >= want {
            for (iface, mtu) in mtus() {
                println!("mtu {iface} {mtu}");
            }
            for l in &lines {
                println!("{l}");
            }
            return 0;
        }
        if Instant::now() > deadline {
            eprintln!("inner-probe: fewer than {want} different answers after 30 s:");
            for l in &lines {
                eprintln!("{l}");
            }
            return 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Each network interface but `lo` with its MTU, from /sys/class/net.
fn mtus() -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        for entry in dir.flatten() {
            let iface = entry.file_name().to_string_lossy().into_owned();
            if iface == "lo" {
                continue;
            }
            if let Ok(mtu) = std::fs::read_to_string(entry.path().join("mtu")) {
                found.push((iface, mtu.trim().to_string()));
            }
        }
    }
    found.sort();
    found
}
