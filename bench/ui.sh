#!/usr/bin/env bash
# Issue #20: the dashboard's page weight (all assets, uncompressed; goal <= 150 KB) and the time
# to the first render of the function list with 50 functions registered, in headless Chromium on
# this machine (goal <= 300 ms). Needs chromium and chromium-driver (scripts/setup.sh installs
# them). Prints one line; docs/BENCHMARKS.md keeps the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --locked >/dev/null
cargo nextest run --release -p rfaas-tests --locked --run-ignored only \
  -E 'test(bench_first_render_with_50_functions)' --no-capture 2>&1 | grep -E "ui bench|FAIL|panicked"
