#!/usr/bin/env bash
# The test command (README, .ci/run): builds the release binaries the end-to-end tests drive
# (proxyCli, rfa-proxy, rfa-store), then runs every test of the workspace: unit tests and the
# end-to-end suite against the real Docker engine and nats-server.
# Extra arguments go to the test runner, e.g. `scripts/test.sh -E 'test(deploy)'`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --workspace --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --locked --no-fail-fast "$@"
else
  echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)" >&2
  cargo test --release --workspace --locked --no-fail-fast "$@"
fi
