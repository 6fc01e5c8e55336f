//! `otlp-sink [--port N]`: an OTLP/gRPC trace receiver that counts spans and drops them, for
//! `bench/tracing.sh`. Prints the running total once a second (`spans <n>`) until killed.

use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = 4317;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().unwrap_or_default();
                port = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--port needs a port number, not {value:?}"))?;
            }
            other => anyhow::bail!("unknown argument {other:?}; usage: otlp-sink [--port N]"),
        }
    }
    let sink = rfaas_tests::otlp::Collector::start_on(port, false)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on port {port}: {e}"))?;
    println!("listening on 0.0.0.0:{}", sink.port);
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let count = sink.count();
        if count != last {
            println!("spans {count}");
            last = count;
        }
    }
}
