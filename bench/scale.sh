#!/usr/bin/env bash
# bench/scale.sh — issue #16: how fast an idle function comes back, how fast load grows one, and
# what functions cost in memory when active, paused and stopped.
#
# On a private instance (RFAAS_INSTANCE=bench-scale, gateway on 127.0.0.1:18989), with the echo
# fixture (tests/fixtures/echo) deployed under several names:
#   1. Wake latency, WAKES (30) wakes each (bench/wake_bench.py):
#        raw-resume  engine API unpause -> first 200 from the container IP   (function `raw`, fixed)
#        resume      a call through the gateway to a function the scaler paused (`napper`, idlePause 1s)
#        raw-cold    engine API start -> first 200 from the container IP      (`raw`)
#        cold        a call through the gateway to a function the scaler stopped (`sleeper`, idleStop 1s)
#      Goals: resume p50 <= 30 ms and <= 1.5x raw-resume; cold p50 <= 450 ms.
#   2. Scale-out: `auto` (scale min 0, max 4, targetInflight 2, cpus 0.25 per replica) and `pinned`
#      (4 replicas, cpus 0.25), each under `wrk -c8 -d20s` on /spin?ms=20 (CPU-bound per replica),
#      alternating ROUNDS (2) times: throughput of auto / pinned (goal >= 0.8) and the time from the
#      start of the load step until auto's route names 4 replicas.
#   3. Memory: 10 functions (mem0..mem9, one package, scale min 0, idlePause 20s) on the host
#      (sum of their containers' cgroup memory: usage and its RSS part) when all have just
#      answered a call, once the scaler has paused them all, and after `scale <f> 0` stopped them.
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/scale.sh
#   PARTS=wake WAKES=50 bench/scale.sh     # only some parts (wake, scale, memory)
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/scale.txt.
set -euo pipefail
export BENCH_INSTANCE="${BENCH_INSTANCE:-bench-scale}"
export BENCH_PORT="${BENCH_PORT:-18989}"
source "$(dirname "$0")/lib.sh"
need_cli
ensure_tool wrk wrk

WAKES="${WAKES:-30}"
PARTS="${PARTS:-wake scale memory}"   # which parts to run
has() { [[ " $PARTS " == *" $1 "* ]]; }
ROUNDS="${ROUNDS:-2}"
RESULT="$OUT_DIR/scale.txt"
WORK=$(mktemp -d /tmp/bench-scale.XXXX)
ECHO="$ROOT/tests/fixtures/echo"
# The functions' packages outlive the run, so that the next run finds them built.
FNS_DIR="${BENCH_FNS_DIR:-/tmp/rfaas-bench-fns}"
cleanup() { stop_platform --prune >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

# A copy of the echo fixture whose function is named <name> (a deploy entry's name is its Rust
# function's name).
make_fn() { # make_fn <name> -> prints its package dir
    local dir="$FNS_DIR/$1"
    if [[ ! -d "$dir" ]]; then
        mkdir -p "$dir/src"
        printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2024"\npublish = false\n\n[dependencies]\nfunction-base = { path = "%s/function-base" }\n' "$1" "$ROOT" >"$dir/Cargo.toml"
        sed "s/pub async fn echo(/pub async fn $1(/" "$ECHO/src/lib.rs" >"$dir/src/lib.rs"
    fi
    echo "$dir"
}
entry() { # entry <name> <extra json fields>
    local dir; dir=$(make_fn "$1")
    printf '{"name":"%s","packageDir":"%s","filePath":"%s/src/lib.rs"%s}' "$1" "$dir" "$dir" "${2:+,$2}"
}

{ machine; echo; } | tee "$RESULT"
log "starting the platform ($RFAAS_INSTANCE on $PORT)"
start_platform
TOKEN=$(cat "$XDG_CONFIG_HOME/rfaas/token-$RFAAS_INSTANCE")

MEM_FNS=(mem0 mem1 mem2 mem3 mem4 mem5 mem6 mem7 mem8 mem9)
# One package holding the ten memory functions (each an echo): one crate compile for all ten.
memdir="$FNS_DIR/memfns"
if [[ ! -d "$memdir" ]]; then
    mkdir -p "$memdir/src"
    printf '[package]\nname = "memfns"\nversion = "0.1.0"\nedition = "2024"\npublish = false\n\n[dependencies]\nfunction-base = { path = "%s/function-base" }\n' "$ROOT" >"$memdir/Cargo.toml"
    cp "$ECHO/src/lib.rs" "$memdir/src/lib.rs"
    for f in "${MEM_FNS[@]}"; do
        printf '\npub async fn %s(req: Request) -> Response {\n    echo(req).await\n}\n' "$f" >>"$memdir/src/lib.rs"
    done
fi
mem_entries=""
for f in "${MEM_FNS[@]}"; do
    mem_entries+=$(printf ',\n  {"name":"%s","packageDir":"%s","filePath":"%s/src/lib.rs","scale":{"min":0,"max":1,"idlePause":"20s"}}' "$f" "$memdir" "$memdir")
done

log "deploying raw, napper, sleeper, auto, pinned, ${MEM_FNS[*]}"
cat >"$WORK/deploy.json" <<EOF
{ "deploy": [
  $(entry raw),
  $(entry napper '"scale":{"min":0,"max":1,"idlePause":"1s"}'),
  $(entry sleeper '"scale":{"min":0,"max":1,"idlePause":"1s","idleStop":"1s"}'),
  $(entry auto '"cpus":"0.25","scale":{"min":0,"max":4,"targetInflight":2,"scaleInDelay":"5s"}'),
  $(entry pinned '"cpus":"0.25","replicas":4')$mem_entries
] }
EOF
"$CLI" deploy "$WORK/deploy.json" >"$OUT_DIR/scale-deploy.log" 2>&1 || { cat "$OUT_DIR/scale-deploy.log" >&2; die "deploy failed"; }

if has wake; then
echo "== wake latency ($WAKES wakes each; milliseconds)" | tee -a "$RESULT"
for kind in raw-resume resume raw-cold cold; do
    case $kind in raw-*) fn=raw ;; resume) fn=napper ;; cold) fn=sleeper ;; esac
    python3 "$BENCH_DIR/wake_bench.py" "$kind" "$WAKES" "$GW" "$fn" "$RFAAS_INSTANCE" >"$OUT_DIR/wake-$kind.txt"
    tail -1 "$OUT_DIR/wake-$kind.txt" | tee -a "$RESULT"
done
p50() { sed -n 's/.* p50=\([0-9.]*\).*/\1/p' "$OUT_DIR/wake-$1.txt"; }
awk -v r="$(p50 resume)" -v w="$(p50 raw-resume)" -v c="$(p50 cold)" 'BEGIN {
    printf "resume p50 / raw unpause p50 = %.2f (goal <= 1.5; resume p50 goal <= 30 ms)\n", r / w
    printf "cold p50 = %.1f ms (goal <= 450 ms)\n", c }' | tee -a "$RESULT"

fi

if has scale; then
echo | tee -a "$RESULT"
echo "== scale-out: auto (1..4) vs pinned (4), wrk -c8 -d20s /spin?ms=20, $ROUNDS rounds" | tee -a "$RESULT"
routed() { curl -s -H "Authorization: Bearer $TOKEN" "$GW/system/functions/auto" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["upstreams"]))'; }
auto_rps=(); pinned_rps=(); reactions=()
for round in $(seq "$ROUNDS"); do
    # back to 1 replica before each step
    for _ in $(seq 120); do [[ "$(routed)" == 1 ]] && break; sleep 1; done
    t0=$(now_ms)
    wrk -t2 -c8 -d20s "$GW/functions/auto/spin?ms=20" >"$OUT_DIR/scale-auto-$round.txt" &
    wrk_pid=$!
    reaction=nan
    while kill -0 $wrk_pid 2>/dev/null; do
        if [[ "$reaction" == nan && "$(routed)" == 4 ]]; then reaction=$(( $(now_ms) - t0 )); fi
        sleep 0.1
    done
    reactions+=("$reaction")
    auto_rps+=("$(awk '/Requests\/sec/{print $2}' "$OUT_DIR/scale-auto-$round.txt")")
    wrk -t2 -c8 -d20s "$GW/functions/pinned/spin?ms=20" >"$OUT_DIR/scale-pinned-$round.txt"
    pinned_rps+=("$(awk '/Requests\/sec/{print $2}' "$OUT_DIR/scale-pinned-$round.txt")")
    echo "round $round: auto ${auto_rps[-1]} req/s (4 replicas after ${reaction} ms), pinned ${pinned_rps[-1]} req/s" | tee -a "$RESULT"
done
awk -v a="$(median "${auto_rps[@]}")" -v p="$(median "${pinned_rps[@]}")" -v r="$(median "${reactions[@]}")" 'BEGIN {
    printf "median: auto %.0f req/s, pinned %.0f req/s, ratio %.2f (goal >= 0.8); load step -> 4 replicas routed: %s ms\n", a, p, a / p, r }' | tee -a "$RESULT"

fi

if has memory; then
echo | tee -a "$RESULT"
echo "== memory of 10 functions (sum of their containers' cgroup memory: usage, of which RSS)" | tee -a "$RESULT"
mem() { # usage and RSS (MiB) of the mem* functions' containers
    local usage=0 rss=0 id full u r
    for f in "${MEM_FNS[@]}"; do
        for id in $(docker ps -aq --filter "label=io.rfaas.instance=$RFAAS_INSTANCE" --filter "label=io.rfaas.function=$f"); do
            full=$(docker inspect -f '{{.Id}}' "$id")
            u=$(cat "/sys/fs/cgroup/memory/docker/$full/memory.usage_in_bytes" 2>/dev/null || echo 0)
            r=$(awk '$1 == "total_rss" {print $2}' "/sys/fs/cgroup/memory/docker/$full/memory.stat" 2>/dev/null || echo 0)
            usage=$(( usage + u )); rss=$(( rss + ${r:-0} ))
        done
    done
    awk -v u="$usage" -v r="$rss" 'BEGIN { printf "%.1f MiB (RSS %.1f MiB)", u / 1048576, r / 1048576 }'
}
powers() { # the mem* functions' power states, counted
    for f in "${MEM_FNS[@]}"; do
        curl -s -H "Authorization: Bearer $TOKEN" "$GW/system/functions/$f" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("power","running"))'
    done | sort | uniq -c | tr -s ' ' | tr '\n' ' '
}
for f in "${MEM_FNS[@]}"; do curl -s -o /dev/null "$GW/functions/$f/"; done
echo "active:  $(mem)  [$(powers)]" | tee -a "$RESULT"
for _ in $(seq 90); do [[ "$(powers)" == " 10 paused " ]] && break; sleep 1; done
echo "paused:  $(mem)  [$(powers)] (the scaler paused them after idlePause; a paused container keeps its memory)" | tee -a "$RESULT"
for f in "${MEM_FNS[@]}"; do "$CLI" scale "$f" 0 >/dev/null; done
echo "stopped: $(mem)  [$(powers)] (proxyCli scale <f> 0)" | tee -a "$RESULT"
fi
