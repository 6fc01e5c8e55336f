#!/usr/bin/env bash
# bench/async.sh — issue #4: async calls. How fast the gateway accepts them (202 = stored on
# JetStream) against raw JetStream publishes, and how fast and how soon a no-op function finishes
# them (202 -> callback received).
#
# Runs on a private instance (RFAAS_INSTANCE=benchasync, gateway on 127.0.0.1:18899, token under
# XDG_CONFIG_HOME=/tmp/benchasync-config) and removes it at the end (`proxyCli stopFaas --prune`).
# Functions (fresh `proxyCli new <name> --kind async` crates, answering at once):
#   noop  deployed with "maxInflight": 64, one replica: runs the completion tests;
#   sink  deployed, then its container is stopped (`docker stop`): the route stays, nobody
#         consumes rfa.async.sink, so the accept test measures the gateway + JetStream only, like
#         the peer (whose stream has no consumer either).
# ROUNDS times (3), the order of the accept targets rotating each round:
#   accept rfaas  wrk -t1 -c32 -d10s, POST {"n":1} to http://127.0.0.1:18899/async-functions/sink
#                 (bench/async_calls.lua; static request, the gateway makes the call ids)
#   accept gw-ip  the same against the gateway's container IP :9999 (no docker-proxy); diagnostic
#   accept peer   bench/jspeer (Rust, async-nats 0.51 as the gateway): one client, 32 publishes in
#                 flight, each waiting for its PubAck, 10 s, to stream BENCH_PEER (work queue,
#                 file storage, Nats-Msg-Id on every message) on a host `nats-server -js` (the
#                 same binary rfa-nats packs) on 127.0.0.1:14222, store /tmp/benchasync-js
#   latency       bench/async_bench.py: 500 calls/s for 10 s to /async-functions/noop with
#                 X-Callback-Url http://host.docker.internal:18898/cb and unique X-Call-Id; the
#                 receiver (aiohttp on 0.0.0.0:18898, same process) records each arrival;
#                 202 -> callback p50/p99, losses, duplicates
#   throughput    wrk -t1 -c32 -d10s with unique call ids and the callback URL, as fast as it
#                 goes; the receiver counts callbacks until they stop (bounded: 5 s quiet, 120 s
#                 max). Completion rate = callbacks / (last callback - wrk start).
# `uptime` load is recorded before every run; CPU seconds per process are sampled around the
# throughput runs (from /proc) to see what dominates.
# Goals: accept >= 0.5 x peer; completion >= 2,000 calls/s (1 replica); p50 <= 10 ms at 500/s;
#        0 lost, 0 duplicates.
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/async.sh          # ROUNDS=3 DURATION=10 CONNS=32 RATE=500 by default (~6 min)
# Needs docker, python3 (pip installs aiohttp if missing), wrk and nats-server (apt-get installs
# them if missing), cargo (builds bench/jspeer into /tmp/benchasync-target).
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/async.txt (raw outputs in async-raw.txt).
set -euo pipefail
export BENCH_INSTANCE="${BENCH_INSTANCE:-benchasync}"
export BENCH_PORT="${BENCH_PORT:-18899}"
export BENCH_CONFIG="${BENCH_CONFIG:-/tmp/benchasync-config}"
source "$(dirname "$0")/lib.sh"
need_cli
ensure_tool wrk wrk
ensure_tool nats-server nats-server
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
python3 -c 'import aiohttp' 2>/dev/null || { log "installing aiohttp"; pip3 install -q aiohttp >/dev/null; }
command -v cargo >/dev/null || die "cargo is needed to build bench/jspeer"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
RATE="${RATE:-500}"
CB_PORT="${BENCH_CB_PORT:-18898}"
JS_PORT="${BENCH_JS_PORT:-14222}"
JS_DIR=/tmp/benchasync-js
NOOP_DIR=/tmp/benchasync-noop
SINK_DIR=/tmp/benchasync-sink
PEER_SRC=/tmp/benchasync-jspeer
PEER_TARGET="${BENCH_PEER_TARGET:-/tmp/benchasync-target}"
PEER="$PEER_TARGET/release/jspeer"
LUA="$BENCH_DIR/async_calls.lua"
PY="$BENCH_DIR/async_bench.py"
RESULT="$OUT_DIR/async.txt"
RAW="$OUT_DIR/async-raw.txt"
: >"$RAW"

NATS_PID=""
cleanup() {
    [[ -n "$NATS_PID" ]] && kill "$NATS_PID" 2>/dev/null && wait "$NATS_PID" 2>/dev/null || true
    rm -rf "$JS_DIR"
    stop_platform --prune
}
trap cleanup EXIT

# ---- the peer client (tiny Rust program), built with the repository's Cargo.lock
log "building bench/jspeer"
rm -rf "$PEER_SRC"; mkdir -p "$PEER_SRC"
cp -r "$BENCH_DIR/jspeer/." "$PEER_SRC/"; cp "$ROOT/Cargo.lock" "$PEER_SRC/"
( cd "$PEER_SRC" && { CARGO_TARGET_DIR="$PEER_TARGET" cargo build -q --release --offline 2>/dev/null \
    || CARGO_TARGET_DIR="$PEER_TARGET" cargo build -q --release; } ) || die "cannot build bench/jspeer"

{ echo "== async calls benchmark (issue #4)"; machine; } | tee "$RESULT"

# ---- host nats-server for the peer (127.0.0.1 only)
rm -rf "$JS_DIR"; mkdir -p "$JS_DIR"
"$NATS_SERVER" -js -a 127.0.0.1 -p "$JS_PORT" -sd "$JS_DIR" >"$OUT_DIR/async-nats-server.log" 2>&1 &
NATS_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$JS_PORT") 2>/dev/null && break; sleep 0.1; done

# ---- platform and functions
start_platform
mk_fn() { # mk_fn <name> <dir> [maxInflight]
    rm -rf "$2"
    "$CLI" new "$1" --kind async --dir "$2" >/dev/null
    if [[ -n "${3:-}" ]]; then
        python3 - "$2/deploy.json" "$3" <<'EOF'
import json, sys
p, n = sys.argv[1], int(sys.argv[2])
d = json.load(open(p)); d["deploy"][0]["maxInflight"] = n
json.dump(d, open(p, "w"), indent=2)
EOF
    fi
    "$CLI" deploy "$2/deploy.json" >"$OUT_DIR/async-deploy-$1.log" 2>&1 || { cat "$OUT_DIR/async-deploy-$1.log" >&2; die "deploy $1 failed"; }
}
mk_fn noop "$NOOP_DIR" 64
mk_fn sink "$SINK_DIR"
fn_container() { docker ps -q --filter label=io.rfaas.instance="$RFAAS_INSTANCE" --filter label=io.rfaas.function="$1" | head -n1; }
SINK=$(fn_container sink); NOOP=$(fn_container noop)
[[ -n "$SINK" && -n "$NOOP" ]] || die "function containers not found"
docker stop -t 2 "$SINK" >/dev/null
echo "noop deploy.json: $(tr -d ' \n' <"$NOOP_DIR/deploy.json")" | tee -a "$RESULT"

PROXY="rfa-proxy-$RFAAS_INSTANCE"; NATSC="rfa-nats-$RFAAS_INSTANCE"
GWIP=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$PROXY")
[[ "$GWIP" =~ ^172\.|^10\.|^192\.168\. ]] || die "unexpected gateway IP '$GWIP'"
ACC_URL="$GW/async-functions/sink"
ACC_IP_URL="http://$GWIP:9999/async-functions/sink"
NOOP_URL="$GW/async-functions/noop"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"n":1}' "$ACC_URL")
[[ "$code" == 202 ]] || die "POST $ACC_URL answered $code, not 202"

# ---- CPU accounting (utime+stime ticks from /proc) of the pieces, around a run
pids_of() { docker top "$1" -eo pid 2>/dev/null | tail -n +2 | tr '\n' ' '; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
declare -A CPU_PIDS
CPU_PIDS[proxy]=$(pids_of "$PROXY"); CPU_PIDS[nats]=$(pids_of "$NATSC"); CPU_PIDS[noop]=$(pids_of "$NOOP")
CPU_PIDS[docker-proxy]=$(pgrep -f "docker-proxy.*-host-port $PORT( |$)" | tr '\n' ' ' || true)
CPU_PIDS[dockerd]=$(pgrep -x dockerd | tr '\n' ' ' || true)
CPU_PIDS[shim-noop]=$(ps -eo pid,args | awk -v id="$(docker inspect --format '{{.Id}}' "$NOOP")" '/containerd-shim/ && index($0, id) {print $1}' | tr '\n' ' ')
cpu_snapshot() { local k; for k in proxy nats noop docker-proxy dockerd shim-noop; do
    # shellcheck disable=SC2086
    printf '%s=%s ' "$k" "$(ticks ${CPU_PIDS[$k]})"; done; printf 'total=%s\n' "$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)"; }
cpu_diff() { # cpu_diff "<before>" "<after>" <seconds>: CPU cores used by each piece
    awk -v a="$1" -v b="$2" -v hz="$HZ" -v s="$3" 'BEGIN{ n=split(a,x," "); split(b,y," ");
        for(i=1;i<=n;i++){ split(x[i],p,"="); split(y[i],q,"="); if (p[1]=="total") printf "machine=%.2f", (q[2]-p[2])/hz/s; else printf "%s=%.2f ", p[1], (q[2]-p[2])/hz/s } }'; }

# ---- runs
declare -A V
add() { V[$1]+="$2 "; }
calc() { awk "BEGIN{printf \"%.2f\", $1}"; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000} printf "%.3f", v}'; }
kv() { grep -o "$1=[^ ]*" <<<"$2" | head -n1 | cut -d= -f2 | tr -d '"'; }

run_accept() { # run_accept <label> <url>
    local label="$1" url="$2" load out rps p50 p99
    load=$(load_avg)
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "$url")
    printf '### accept %s %s load=[%s]\n%s\n' "$label" "$url" "$load" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms); p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    if grep -qE "Non-2xx|Socket errors" <<<"$out"; then
        echo "  $label errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ' ')" | tee -a "$RESULT"
        rps=$(awk -v r="$rps" -v t="$(awk '/requests in/{print $1}' <<<"$out")" -v n="$(awk '/Non-2xx/{print $5}' <<<"$out")" -v d="$DURATION" 'BEGIN{printf "%.2f", (t-n)/d}')
    fi
    add "acc-$label" "$rps"; add "acc50-$label" "$p50"; add "acc99-$label" "$p99"
    printf '  accept %-6s 202/s %9s  p50 %7s ms  p99 %7s ms  load=[%s]\n' "$label" "$rps" "$p50" "$p99" "$load" | tee -a "$RESULT"
}
run_peer() {
    local load out rate
    load=$(load_avg)
    out=$("$PEER" "nats://127.0.0.1:$JS_PORT" BENCH_PEER bench.peer "$CONNS" "$DURATION" 7)
    printf '### accept peer load=[%s]\n%s\n' "$load" "$out" >>"$RAW"
    rate=$(kv rate "$out")
    add acc-peer "$rate"
    printf '  accept %-6s acks/s %8s  (%s)  load=[%s]\n' peer "$rate" "$out" "$load" | tee -a "$RESULT"
}
run_latency() {
    local load out
    load=$(load_avg)
    out=$(python3 "$PY" latency --url "$NOOP_URL" --cb-port "$CB_PORT" --rate "$RATE" --seconds "$DURATION" --quiet 5 --max-wait 60)
    printf '### latency load=[%s]\n%s\n' "$load" "$out" >>"$RAW"
    add lat50 "$(kv cb_p50_ms "$out")"; add lat99 "$(kv cb_p99_ms "$out")"; add latacc50 "$(kv accept_p50_ms "$out")"
    add e2e50 "$(kv e2e_p50_ms "$out")"; add e2e99 "$(kv e2e_p99_ms "$out")"
    add latlost "$(kv lost "$out")"; add latdup "$(kv duplicates "$out")"
    printf '  latency %s/s: send->callback p50 %s ms p99 %s; 202->callback p50 %s ms p90 %s p99 %s max %s; send->202 p50 %s p99 %s; accepted %s callbacks %s lost %s dup %s refused %s late-sends %s  load=[%s]\n' \
        "$RATE" "$(kv e2e_p50_ms "$out")" "$(kv e2e_p99_ms "$out")" "$(kv cb_p50_ms "$out")" "$(kv cb_p90_ms "$out")" "$(kv cb_p99_ms "$out")" "$(kv cb_max_ms "$out")" \
        "$(kv accept_p50_ms "$out")" "$(kv accept_p99_ms "$out")" "$(kv accepted "$out")" "$(kv callbacks "$out")" \
        "$(kv lost "$out")" "$(kv duplicates "$out")" "$(kv refused "$out")" "$(kv late_sends "$out")" "$load" | tee -a "$RESULT"
}
run_throughput() {
    local load out b a t0 t1
    load=$(load_avg)
    b=$(cpu_snapshot); t0=$(now_ms)
    out=$(python3 "$PY" wrk --url "$NOOP_URL" --cb-port "$CB_PORT" --seconds "$DURATION" --conns "$CONNS" --lua "$LUA" --quiet 5 --max-wait 120)
    a=$(cpu_snapshot); t1=$(now_ms)
    printf '### throughput load=[%s]\n%s\ncpu before: %s\ncpu after:  %s\n' "$load" "$out" "$b" "$a" >>"$RAW"
    add thr "$(kv completion_rate "$out")"; add thracc "$(kv accept_rate "$out")"; add drain "$(kv drain_rate "$out")"
    add thrlost "$(kv lost_at_least "$out")"; add thrdup "$(kv duplicates "$out")"
    printf '  throughput: completed %s calls/s (drain after the sender stopped %s/s over %s s); accepted %s/s (%s calls, non-2xx %s %s); callbacks %s lost %s dup %s extra %s  load=[%s]\n' \
        "$(kv completion_rate "$out")" "$(kv drain_rate "$out")" "$(kv drain_seconds "$out")" "$(kv accept_rate "$out")" \
        "$(kv accepted "$out")" "$(kv non2xx "$out")" "$(kv socket_errors "$out")" "$(kv callbacks "$out")" \
        "$(kv lost_at_least "$out")" "$(kv duplicates "$out")" "$(kv extra_uncounted "$out")" "$load" | tee -a "$RESULT"
    echo "    CPU cores used over the run ($(( (t1 - t0) / 1000 )) s, incl. the quiet wait; wrk and python not listed): $(cpu_diff "$b" "$a" "$(( (t1 - t0) / 1000 ))")" | tee -a "$RESULT"
}

echo "accept: wrk -t1 -c$CONNS -d${DURATION}s (gateway) vs jspeer $CONNS in flight (peer); completion: $RATE/s for ${DURATION}s, then wrk -c$CONNS as fast as possible; $ROUNDS rounds" | tee -a "$RESULT"
order=(rfaas peer gw-ip)
for r in $(seq 1 "$ROUNDS"); do
    echo " round $r" | tee -a "$RESULT"
    for l in "${order[@]}"; do
        case $l in
            rfaas) run_accept rfaas "$ACC_URL" ;;
            gw-ip) run_accept gw-ip "$ACC_IP_URL" ;;
            peer)  run_peer ;;
        esac
    done
    order=("${order[@]:1}" "${order[0]}")
    run_latency
    run_throughput
done

# ---- summary
# shellcheck disable=SC2086
m() { median ${V[$1]}; }
sum() { awk '{s=0; for(i=1;i<=NF;i++) s+=$i; print s}' <<<"${V[$1]}"; }
ok() { awk "BEGIN{print ($1)?\"met\":\"MISSED\"}"; }
ratio=$(calc "$(m acc-rfaas)/$(m acc-peer)")
ratio_ip=$(calc "$(m acc-gw-ip)/$(m acc-peer)")
{
    echo "medians over $ROUNDS rounds:"
    echo "  accept rfaas (published port): $(m acc-rfaas) 202/s (p50 $(m acc50-rfaas) ms, p99 $(m acc99-rfaas) ms)"
    echo "  accept gw-ip (no docker-proxy): $(m acc-gw-ip) 202/s (p50 $(m acc50-gw-ip) ms, p99 $(m acc99-gw-ip) ms)"
    echo "  raw JetStream peer: $(m acc-peer) acks/s"
    echo "  accept rfaas/peer: ${ratio}x  (goal >= 0.5: $(ok "$ratio>=0.5"))   gw-ip/peer: ${ratio_ip}x"
    echo "  completion (1 replica, maxInflight 64): $(m thr) calls/s, drain $(m drain)/s  (goal >= 2000: $(ok "$(m thr)>=2000"))"
    echo "  202->callback at $RATE/s: p50 $(m lat50) ms, p99 $(m lat99) ms  (goal p50 <= 10: $(ok "$(m lat50)<=10"))"
    echo "  send->callback at $RATE/s (includes the 202 round trip; the upper bound): p50 $(m e2e50) ms, p99 $(m e2e99) ms  (p50 <= 10: $(ok "$(m e2e50)<=10"))"
    echo "  lost: latency runs $(sum latlost), throughput runs $(sum thrlost); duplicates: $(sum latdup) / $(sum thrdup)  (goal 0: $(ok "$(sum latlost)+$(sum thrlost)+$(sum latdup)+$(sum thrdup)==0"))"
    echo "load after: $(load_avg)"
} | tee -a "$RESULT"
