#!/usr/bin/env bash
# bench/handlers.sh — issue #18's three figures, on a private instance (RFAAS_INSTANCE=bench):
#
#  1. Extractor dispatch: three functions in one crate, each answering the same short text
#     through the gateway, `wrk -t1 -c$CONNS -d$DURATION` ROUNDS times (3) against each, the
#     order turned every round (so a drift of the machine's load hits each alike):
#       request  `pub async fn req_hello(req: Request) -> impl IntoResponse` (the old shape)
#       uri      `pub async fn uri_hello(uri: Uri) -> impl IntoResponse`: the same work, written
#                with an extractor (the dispatch cost the goal is about)
#       extract  `pub async fn ext_hello(ctx: Ctx, uri: Uri, headers: HeaderMap,
#                 Query(q): Query<HashMap<String, String>>) -> impl IntoResponse`: four
#                extractors, each doing its work (a Ctx, a copy of the headers, a parsed query)
#     Ratios uri/request (goal: overhead <= 3%, i.e. >= 0.97) and extract/request.
#  2. A second kind: after the HTTP crate, deploying an async function and a mainProcess one
#     (examples/async, examples/database-events) in a fresh instance: seconds per deploy and the
#     crates cargo compiled (goal <= 10 s, only the user's crate and its wrapper).
#  3. `proxyCli dev`: a scaffolded function under `dev`, ROUNDS one-line edits (the greeting
#     changes), each timed from the save to the first call answering with the new text (goal
#     <= 5 s; median and max reported).
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/handlers.sh            # ROUNDS=3 DURATION=10s CONNS=32 by default
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/handlers.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_cli
ensure_tool wrk wrk

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-32}"
WORK=/tmp/bench-handlers
RESULT="$OUT_DIR/handlers.txt"
RAW="$OUT_DIR/handlers-wrk.txt"
: >"$RAW"
DEV_PID=""
cleanup() {
    [[ -n "$DEV_PID" ]] && kill "$DEV_PID" 2>/dev/null || true
    stop_platform --prune
}
trap cleanup EXIT

{ echo "== axum handlers, second kind, dev loop (issue #18)"; machine; } | tee "$RESULT"
rm -rf "$WORK" && mkdir -p "$WORK"
start_platform

# 2 first, in the fresh instance: the HTTP crate, then the other kinds.
mkdir -p "$WORK/hello/src"
cat >"$WORK/hello/Cargo.toml" <<TOML
[package]
name = "bench-handlers"
version = "0.1.0"
edition = "2024"

[dependencies]
function-base = { path = "$ROOT/function-base" }

[workspace]
TOML
cat >"$WORK/hello/src/lib.rs" <<'RS'
use std::collections::HashMap;

use function_base::prelude::*;

pub async fn req_hello(req: Request) -> impl IntoResponse {
    format!("hello at {}\n", req.uri().path())
}

pub async fn uri_hello(uri: Uri) -> impl IntoResponse {
    format!("hello at {}\n", uri.path())
}

pub async fn ext_hello(
    ctx: Ctx,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let _ = (ctx.function(), headers.len(), q.len());
    format!("hello at {}\n", uri.path())
}
RS
cat >"$WORK/hello/deploy.json" <<JSON
{"deploy": [
  {"name": "req_hello", "packageDir": ".", "filePath": "./src/lib.rs"},
  {"name": "uri_hello", "packageDir": ".", "filePath": "./src/lib.rs"},
  {"name": "ext_hello", "packageDir": ".", "filePath": "./src/lib.rs"}
]}
JSON
"$CLI" deploy "$WORK/hello/deploy.json" >"$OUT_DIR/handlers-deploy.log" 2>&1 || { cat "$OUT_DIR/handlers-deploy.log" >&2; die "deploy failed"; }
echo "-- a second kind after an HTTP function" | tee -a "$RESULT"
for kind in async database-events; do
    case $kind in
        async) entry='{"name": "method_async", "packageDir": "'$ROOT'/examples/async", "filePath": "'$ROOT'/examples/async/src/lib.rs", "async": true}' ;;
        *) entry='{"name": "database_events", "packageDir": "'$ROOT'/examples/database-events", "filePath": "'$ROOT'/examples/database-events/src/lib.rs", "mainProcess": true}' ;;
    esac
    echo "{\"deploy\": [$entry]}" >"$WORK/$kind.json"
    start=$(now_ms)
    "$CLI" deploy "$WORK/$kind.json" >"$OUT_DIR/handlers-$kind.log" 2>&1 || { cat "$OUT_DIR/handlers-$kind.log" >&2; die "deploy of $kind failed"; }
    took=$(( $(now_ms) - start ))
    compiled=$(grep -o 'Compiling [^ ]*' "$OUT_DIR/handlers-$kind.log" | awk '{print $2}' | tr '\n' ' ')
    printf '  %-16s %6.1f s  compiled: %s\n' "$kind" "$(awk "BEGIN{print $took/1000}")" "${compiled:-nothing}" | tee -a "$RESULT"
done

# 1. Extractor dispatch.
echo "-- extractor dispatch (wrk -t1 -c$CONNS -d$DURATION, $ROUNDS alternating rounds)" | tee -a "$RESULT"
declare -A URL=([request]="$GW/functions/req_hello/x" [uri]="$GW/functions/uri_hello/x" [extract]="$GW/functions/ext_hello/x?a=1")
for label in request uri extract; do
    curl -fsS "${URL[$label]}" >/dev/null || die "${URL[$label]} does not answer"
done
orders=("request uri extract" "extract uri request" "uri extract request")
for r in $(seq "$ROUNDS"); do
    for label in ${orders[$(( (r - 1) % 3 ))]}; do
        run_wrk "$label" "${URL[$label]}"
    done
done
req=$(median ${RPS[request]}); uri=$(median ${RPS[uri]}); ext=$(median ${RPS[extract]})
printf '  median req/s: request %s, uri %s, extract %s\n' "$req" "$uri" "$ext" | tee -a "$RESULT"
printf '  uri/request = %.3f (goal >= 0.97); extract/request = %.3f\n' \
    "$(awk "BEGIN{print $uri/$req}")" "$(awk "BEGIN{print $ext/$req}")" | tee -a "$RESULT"
printf '  median p50 ms: request %s, uri %s, extract %s; p99 ms: request %s, uri %s, extract %s\n' \
    "$(median ${P50[request]})" "$(median ${P50[uri]})" "$(median ${P50[extract]})" \
    "$(median ${P99[request]})" "$(median ${P99[uri]})" "$(median ${P99[extract]})" | tee -a "$RESULT"

# 3. The dev loop.
echo "-- proxyCli dev: save -> new answer ($ROUNDS one-line edits)" | tee -a "$RESULT"
"$CLI" new dev_hello --dir "$WORK/dev_hello" >/dev/null
"$CLI" dev "$WORK/dev_hello/deploy.json" >"$OUT_DIR/handlers-dev.log" 2>&1 &
DEV_PID=$!
for _ in $(seq 600); do
    grep -q "watching" "$OUT_DIR/handlers-dev.log" && break
    sleep 0.5
done
grep -q "watching" "$OUT_DIR/handlers-dev.log" || { cat "$OUT_DIR/handlers-dev.log" >&2; die "dev did not deploy"; }
LIB="$WORK/dev_hello/src/lib.rs"
times=()
for i in $(seq "$ROUNDS"); do
    sed -i "s/\"Hello[^ ]* from /\"Hello$i from /" "$LIB"
    start=$(now_ms)
    until curl -fsS "$GW/functions/dev_hello/x" 2>/dev/null | grep -q "Hello$i from"; do
        (( $(now_ms) - start > 120000 )) && die "edit $i did not answer within 120 s"
        sleep 0.05
    done
    took=$(( $(now_ms) - start ))
    times+=("$(awk "BEGIN{print $took/1000}")")
    printf '  edit %d: %.2f s\n' "$i" "${times[-1]}" | tee -a "$RESULT"
    sleep 1
done
printf '  save -> new answer: median %s s, max %s s (goal <= 5 s)\n' "$(median "${times[@]}")" \
    "$(printf '%s\n' "${times[@]}" | sort -g | tail -n1)" | tee -a "$RESULT"
