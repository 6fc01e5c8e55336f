#!/usr/bin/env bash
# bench/soak.sh — issue #7: a soak of the whole platform under a fixed traffic mix.
#
# Starts its own platform instance (RFAAS_INSTANCE=soak, gateway 127.0.0.1:18995), deploys
# examples/deploy.json, then runs bench/soak.py for SOAK_SECONDS (600) at fixed rates (open loop):
#   100 sync calls/s (method2), 20 async calls/s with callbacks (method_async, WORK_MS=20),
#   5 payments/s (database_events/pay: a store write by the function plus two event handlers that
#   write again), 20 store writes/s through /store (each read back once).
# Every minute it records the RSS of every container of the instance (VmRSS of its processes,
# read from /proc), and at the end soak.py checks that nothing acknowledged was lost.
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/soak.sh                    # SOAK_SECONDS=600; rates: SYNC_RATE ASYNC_RATE PAY_RATE STORE_RATE
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/soak.txt (soak.json beside it).
set -euo pipefail
export BENCH_INSTANCE="${BENCH_INSTANCE:-soak}" BENCH_PORT="${BENCH_PORT:-18995}"
source "$(dirname "$0")/lib.sh"
need_cli
python3 -c 'import aiohttp' 2>/dev/null || { log "installing aiohttp"; pip3 install -q aiohttp >/dev/null; }

SECONDS_TOTAL="${SOAK_SECONDS:-600}"
RESULT="$OUT_DIR/soak.txt"
RSS="$OUT_DIR/soak-rss.txt"
cleanup() {
    [[ -n "${SAMPLER:-}" ]] && kill "$SAMPLER" 2>/dev/null || true
    stop_platform --prune
}
trap cleanup EXIT

{ echo "== soak (issue #7), $SECONDS_TOTAL s"; machine; } | tee "$RESULT"
start_platform
# The examples, with the async one working 20 ms per call instead of 3 s (8 in flight: 400 calls/s
# of capacity, so the queue stays short and every callback can arrive within the run).
DEPLOY="$OUT_DIR/soak-deploy.json"
python3 - "$ROOT/examples/deploy.json" "$DEPLOY" <<'PY'
import json, os, sys
src = json.load(open(sys.argv[1]))
base = os.path.dirname(os.path.abspath(sys.argv[1]))
for e in src["deploy"]:
    e["packageDir"] = os.path.normpath(os.path.join(base, e["packageDir"]))
    e["filePath"] = os.path.normpath(os.path.join(base, e["filePath"]))
    if e["name"] == "method_async":
        e.setdefault("env", {})["WORK_MS"] = "20"
json.dump(src, open(sys.argv[2], "w"), indent=2)
PY
"$CLI" deploy "$DEPLOY" >"$OUT_DIR/soak-deploy.log" 2>&1 \
    || { cat "$OUT_DIR/soak-deploy.log" >&2; die "deploy failed"; }
TOKEN=$(cat "$XDG_CONFIG_HOME/rfaas/token-$RFAAS_INSTANCE")

containers=$(docker ps --filter "label=io.rfaas.instance=$RFAAS_INSTANCE" --format '{{.Names}}' | sort)
sample() { # one line: seconds since start, then RSS MiB of each container
    local line="$1"
    for c in $containers; do line+=" $(container_rss_mb "$c")"; done
    echo "$line"
}
{ echo "# RSS MiB every 60 s: t_s" $containers; sample 0; } >"$RSS"
( t=0; while sleep 60; do t=$((t + 60)); sample "$t" >>"$RSS"; done ) &
SAMPLER=$!

python3 "$BENCH_DIR/soak.py" --gateway "$GW" --token "$TOKEN" --seconds "$SECONDS_TOTAL" \
    --sync-rate "${SYNC_RATE:-100}" --async-rate "${ASYNC_RATE:-20}" \
    --pay-rate "${PAY_RATE:-5}" --store-rate "${STORE_RATE:-20}" >"$OUT_DIR/soak.json"
kill "$SAMPLER" 2>/dev/null || true
sample end >>"$RSS"

{
    echo "== traffic and losses"
    python3 -m json.tool "$OUT_DIR/soak.json"
    echo "== RSS (MiB) of each container: first sample (idle, after deploy), each minute, end"
    cat "$RSS"
} | tee -a "$RESULT"
python3 - "$OUT_DIR/soak.json" <<'EOF' | tee -a "$RESULT"
import json, sys
r = json.load(open(sys.argv[1]))
lost = r["async_missing_callbacks"] + r["docs_missing"] + r["docs_wrong"] + r["payments_not_emailed"]
print(f"unexpected errors: {r['unexpected_errors']}   acknowledged and lost: {lost}   "
      f"({'met' if r['unexpected_errors'] == 0 and lost == 0 else 'MISSED'}: goal zero of both)")
EOF
