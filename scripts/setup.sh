#!/usr/bin/env bash
# The set-up command (README): on a fresh Linux machine with Docker running, installs what is
# missing and installable, builds rfaas, starts the platform, deploys the examples and prints how
# to call them. Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing nats-server (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server
  else
    echo "nats-server is missing: run 'sudo apt-get install nats-server' and run this again" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust from https://rustup.rs" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable: start it (sudo systemctl start docker)" >&2; exit 1; }

cargo build --release --workspace --locked
cli=target/release/proxyCli
"$cli" startFaas "$@"

if [ -f examples/deploy.json ]; then
  "$cli" deploy examples/deploy.json
  echo
  echo "Try them:"
  cat examples/CALLS.txt
fi
