#!/usr/bin/env bash
# bench/swarm.sh — issue #17: rfaas on Docker Swarm beside bridge mode.
#
# Swarm runs in inner engines (target/release/inner-swarm: Docker engines in containers of the
# host engine, never switching the host engine's mode). Parts:
#   1. throughput: the echo fixture (1 replica) on a bridge-mode instance of the host engine
#      (gateway 127.0.0.1:$BENCH_PORT) and on a one-node swarm (gateway <inner ip>:$SWARM_PORT),
#      `wrk -c$CONNS -d$DURATION` on /functions/echo, alternating ROUNDS (3) times: medians and the
#      ratio swarm / bridge (goal >= 0.9). The swarm's calls cross one more hop (the inner
#      engine's container network) than the bridge's: the ratio includes it.
#   2. rolling update under load: a 2-replica echo on the swarm, wrk for 30 s, a redeploy with a
#      new VERSION 5 s in: the deploy's duration, wrk's non-2xx and socket errors (goal 0), p99
#      during the update beside p99 of a run before it.
#   3. scale 1 -> 5: `proxyCli scale echo 5` until all five run (the CLI waits for them).
#   4. image delivery: a second node (`--node-engine`): the time deploy reports for copying a
#      new function image to it.
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/swarm.sh
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/swarm.txt.
set -euo pipefail
export BENCH_INSTANCE="${BENCH_INSTANCE:-bench-swarm}"
export BENCH_PORT="${BENCH_PORT:-18979}"
source "$(dirname "$0")/lib.sh"
need_cli
ensure_tool wrk wrk

ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-32}"
DURATION="${DURATION:-10s}"
SWARM_PORT="${SWARM_PORT:-9999}"
RESULT="$OUT_DIR/swarm.txt"
RAW="$OUT_DIR/swarm-wrk.txt"
: >"$RAW"
WORK=$(mktemp -d /tmp/bench-swarm.XXXX)
ECHO="$ROOT/tests/fixtures/echo"
INNER="$ROOT/target/release/inner-swarm"
[[ -x "$INNER" ]] || die "$INNER is missing: run 'cargo build --release --workspace' first"

HOLD=""
cleanup() {
    stop_platform --prune >/dev/null 2>&1 || true
    # Closing its stdin ends inner-swarm, which removes its engines (a signal would leak them).
    exec 9>&- 2>/dev/null || true
    [[ -n "$HOLD" ]] && wait "$HOLD" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

deploy_file() { # deploy_file <path> <version> <replicas>
    printf '{"deploy":[{"name":"echo","packageDir":"%s","filePath":"%s/src/lib.rs","replicas":%s,"env":{"VERSION":"%s"}}]}' \
        "$ECHO" "$ECHO" "$3" "$2" >"$1"
}

{ machine; echo; } | tee "$RESULT"

log "starting a two-node inner swarm"
mkfifo "$WORK/hold"
"$INNER" 2 <"$WORK/hold" >"$WORK/swarm.txt" 2>"$WORK/swarm.err" &
exec 9>"$WORK/hold"   # the swarm lives while fd 9 is open
HOLD=$!
for _ in $(seq 120); do [[ $(wc -l <"$WORK/swarm.txt") -ge 2 ]] && break; sleep 0.5; done
[[ $(wc -l <"$WORK/swarm.txt") -ge 2 ]] || { cat "$WORK/swarm.err" >&2; die "the inner swarm did not start"; }
MANAGER=$(sed -n 1p "$WORK/swarm.txt" | cut -d= -f2)
WORKER=$(sed -n 2p "$WORK/swarm.txt" | cut -d= -f2)
MGR_IP=$(sed -E 's#tcp://([^:]+):.*#\1#' <<<"$MANAGER")
SW_CONFIG="$WORK/sw-config"; mkdir -p "$SW_CONFIG"
sw() { DOCKER_HOST="$MANAGER" XDG_CONFIG_HOME="$SW_CONFIG" RFAAS_INSTANCE=bsw "$CLI" "$@"; }
SW_GW="http://$MGR_IP:$SWARM_PORT"

log "bridge-mode instance on the host engine, and the swarm one"
start_platform
deploy_file "$WORK/v1.json" 1 1
"$CLI" deploy "$WORK/v1.json" >"$OUT_DIR/swarm-deploy-bridge.log" 2>&1
sw startFaas --swarm --port "$SWARM_PORT" >"$OUT_DIR/swarm-startfaas.log" 2>&1 || { cat "$OUT_DIR/swarm-startfaas.log" >&2; die "startFaas --swarm failed"; }
sw deploy "$WORK/v1.json" >"$OUT_DIR/swarm-deploy.log" 2>&1 || { cat "$OUT_DIR/swarm-deploy.log" >&2; die "deploy on swarm failed"; }

echo "== 1. throughput, echo with 1 replica, wrk -c$CONNS -d$DURATION, $ROUNDS alternating rounds" | tee -a "$RESULT"
for _ in $(seq "$ROUNDS"); do
    run_wrk bridge "$GW/functions/echo"
    run_wrk swarm "$SW_GW/functions/echo"
done
b=$(median ${RPS[bridge]}); s=$(median ${RPS[swarm]})
printf 'median req/s: bridge %s, swarm %s; swarm/bridge = %.2f (goal >= 0.9)\n' "$b" "$s" \
    "$(awk -v s="$s" -v b="$b" 'BEGIN{print s/b}')" | tee -a "$RESULT"
printf 'median p50/p99 ms: bridge %s/%s, swarm %s/%s\n' "$(median ${P50[bridge]})" "$(median ${P99[bridge]})" \
    "$(median ${P50[swarm]})" "$(median ${P99[swarm]})" | tee -a "$RESULT"

echo "== 2. rolling update of 2 replicas under load (wrk -c$CONNS, 30 s; redeploy 5 s in)" | tee -a "$RESULT"
deploy_file "$WORK/v1r2.json" 1 2
sw deploy "$WORK/v1r2.json" >>"$OUT_DIR/swarm-deploy.log" 2>&1
DURATION=10s run_wrk before "$SW_GW/functions/echo"
deploy_file "$WORK/v2.json" 2 2
wrk -t1 -c"$CONNS" -d30s --latency "$SW_GW/functions/echo" >"$WORK/during.txt" &
WRK=$!
sleep 5
t0=$(now_ms)
sw deploy "$WORK/v2.json" >>"$OUT_DIR/swarm-deploy.log" 2>&1
t1=$(now_ms)
wait "$WRK"
cat "$WORK/during.txt" >>"$RAW"
errors=$(grep -E 'Non-2xx|Socket errors' "$WORK/during.txt" | tr -s ' ' || true)
p99=$(awk '$1=="99%"{print $2}' "$WORK/during.txt" | to_ms)
total=$(awk '/requests in/{print $1}' "$WORK/during.txt")
echo "deploy (rolling update) took $(( t1 - t0 )) ms; requests during: $total; failed: ${errors:-none}" | tee -a "$RESULT"
echo "p99 during the update: $p99 ms (before: $(median ${P99[before]}) ms)" | tee -a "$RESULT"

echo "== 3. scale 1 -> 5 (the CLI returns when all five run)" | tee -a "$RESULT"
deploy_file "$WORK/v2r1.json" 2 1
sw deploy "$WORK/v2r1.json" >>"$OUT_DIR/swarm-deploy.log" 2>&1
t0=$(now_ms); sw scale echo 5 >/dev/null; t1=$(now_ms)
echo "scale 1 -> 5: $(( t1 - t0 )) ms" | tee -a "$RESULT"

echo "== 4. delivering a new function image to a second node" | tee -a "$RESULT"
sw startFaas --node-engine "$WORKER" >>"$OUT_DIR/swarm-startfaas.log" 2>&1
deploy_file "$WORK/v3.json" 3 2
# The worker has none of echo's images yet: this deploy copies the current one to it.
sw deploy "$WORK/v3.json" >"$WORK/deliver.log" 2>&1 || { cat "$WORK/deliver.log" >&2; die "deploy with a second node failed"; }
grep -E "^copied " "$WORK/deliver.log" | tee -a "$RESULT" || echo "no image copied (the node had it)" | tee -a "$RESULT"
size=$(DOCKER_HOST="$MANAGER" docker image inspect --format '{{.Size}}' "$(DOCKER_HOST="$MANAGER" docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' rfa-fn-echo-bsw)" | awk '{printf "%.1f", $1/1e6}')
echo "image size: $size MB" | tee -a "$RESULT"
echo "load at the end: $(load_avg)" | tee -a "$RESULT"
