//! `inner-swarm <nodes>`: a Docker Swarm of `<nodes>` inner engines (tests/src/inner_engine.rs)
//! for benchmarks and for trying rfaas on Swarm by hand, without touching the host engine's
//! swarm mode. Prints one `DOCKER_HOST=tcp://…` line per node (the manager first), then holds
//! the engines until its standard input closes, and removes them.
//!
//! ```sh
//! sleep infinity | target/release/inner-swarm 2 > /tmp/swarm.txt &   # kill the sleep to end
//! ```

use std::io::{Read, Write};

use rfaas_tests::inner_engine::InnerEngine;

fn main() -> anyhow::Result<()> {
    let nodes: usize = match std::env::args().nth(1) {
        None => 1,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| anyhow::anyhow!("inner-swarm <nodes>: give 1 to 5 nodes, not {n}"))?,
    };
    let manager = InnerEngine::start("swarm-manager")?;
    manager.swarm_init()?;
    let mut workers = Vec::new();
    for k in 1..nodes {
        let worker = InnerEngine::start(&format!("swarm-worker{k}"))?;
        worker.swarm_join(&manager)?;
        workers.push(worker);
    }
    let mut out = std::io::stdout();
    writeln!(out, "DOCKER_HOST={}", manager.docker_host())?;
    for w in &workers {
        writeln!(out, "DOCKER_HOST={}", w.docker_host())?;
    }
    out.flush()?;
    // Held until stdin closes; the engines go when they drop.
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}
