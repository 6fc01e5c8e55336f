#!/usr/bin/env bash
# bench/deploy.sh — issue #3: how long `proxyCli deploy` takes until the new version answers.
#
# Every figure is wall time from the start of `proxyCli deploy` until the gateway
# (http://127.0.0.1:18999/functions/<name>) answers 200 with the NEW version's body (polled every
# ~5 ms from the moment the command starts); the command's own exit time is shown too.
# Private instance: RFAAS_INSTANCE=bench, port 18999, token under /tmp/bench-config.
#   (1) first function, dependencies cold: a fresh CARGO_TARGET_DIR=/tmp/bench-target, so every
#       dependency (tokio, axum, hyper, async-nats, ...) is compiled. Minutes. Once. COLD=0 skips it.
#   (2) a second, different function (a fresh `proxyCli new` crate), dependencies warm. RUNS times.
#   (3) redeploy after a one-line change of the function's source (the answer's text). RUNS times.
#   (4) unchanged redeploy. RUNS times.
#   (5) cold start: `proxyCli stop <fn>`, then `proxyCli deploy` with the image already built, to the
#       first 200. RUNS times. Every line the deploy prints is time-stamped. Peer, alternating:
#       `docker run` of the same image with the same options to the first 200 at its IP (the
#       engine alone), so the ratio shows what rfaas adds. The no-op cargo build (which deploy
#       skips when the binary is up to date) is timed on its own.
# Goals: (2) <= 10 s, (3) <= 8 s, (4) <= 2 s, (5) <= 450 ms.
# Steps (2)-(5) use the same target dir as (1) (/tmp/bench-target, warm after (1)); with COLD=0
# they use CARGO_TARGET_DIR if set, else the workspace's target/ (warm after
# `cargo build --release --workspace`).
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/deploy.sh              # COLD=1 RUNS=3 by default
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/deploy.txt (time-stamped logs beside it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_cli
command -v cargo >/dev/null || die "cargo is needed (deploy builds functions with it)"

RUNS="${RUNS:-3}"
COLD="${COLD:-1}"
RESULT="$OUT_DIR/deploy.txt"
LOGS="$OUT_DIR/deploy-logs.txt"; : >"$LOGS"
FNS=()
cleanup() {
    stop_platform --prune
    for d in "${FNS[@]}"; do rm -rf "/tmp/bench-fn-$d"; done
}
trap cleanup EXIT

if [[ "$COLD" == 1 ]]; then
    export CARGO_TARGET_DIR="${BENCH_TARGET:-/tmp/bench-target}"
fi

{ echo "== deploy benchmark (issue #3)"; machine; echo "CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-<workspace target/>}"; } | tee "$RESULT"
start_platform

new_fn() { # new_fn <name>: a fresh scaffolded crate in /tmp/bench-fn-<name>
    rm -rf "/tmp/bench-fn-$1"; "$CLI" new "$1" --dir "/tmp/bench-fn-$1" >/dev/null; FNS+=("$1")
}

# Polls the gateway until <name> answers 200 with a body containing <text>; prints ms since <start>.
wait_body() { # wait_body <name> <text> <start_ms> [timeout_s]
    local url="$GW/functions/$1" deadline=$(( $(now_ms) + ${4:-900} * 1000 )) body
    while (( $(now_ms) < deadline )); do
        body=$(curl -s -f --max-time 2 "$url" 2>/dev/null || true)
        if [[ "$body" == *"$2"* ]]; then echo $(( $(now_ms) - $3 )); return 0; fi
        sleep 0.005
    done
    echo timeout
}

# Runs a deploy in the background and measures time to the expected answer.
# Sets LAST_READY (ms to the answer) and LAST_EXIT (ms to the command's exit).
timed_deploy() { # timed_deploy <label> <name> <expected body text>
    local label="$1" name="$2" text="$3" t0 pid rc=0 tmp
    tmp=$(mktemp)
    t0=$(now_ms)
    ( "$CLI" deploy "/tmp/bench-fn-$name/deploy.json" 2>&1 | stamp_lines "$t0" >"$tmp"; exit "${PIPESTATUS[0]}" ) &
    pid=$!
    LAST_READY=$(wait_body "$name" "$text" "$t0")
    wait "$pid" || rc=$?
    LAST_EXIT=$(( $(now_ms) - t0 ))
    { echo "### $label ($name) ready=${LAST_READY} ms exit=${LAST_EXIT} ms rc=$rc load=[$(load_avg)]"; cat "$tmp"; } >>"$LOGS"
    rm -f "$tmp"
    (( rc == 0 )) || { log "deploy of $name failed (rc=$rc): see $LOGS"; tail -20 "$LOGS" >&2; }
}

set_text() { # set_text <name> <text>: one-line change of the answer
    sed -i -E "s/format!\(\"[^\"]* from $1 at/format!(\"$2 from $1 at/" "/tmp/bench-fn-$1/src/lib.rs"
    grep -q "$2 from $1 at" "/tmp/bench-fn-$1/src/lib.rs" || die "could not edit /tmp/bench-fn-$1/src/lib.rs"
}

row() { printf '  %-34s %10s %10s  %s\n' "$@" | tee -a "$RESULT"; }
verdict() { [[ "$1" =~ ^[0-9.]+$ ]] || { echo "n/a"; return; }; awk -v v="$1" -v g="$2" 'BEGIN{print (v<=g)?"met":"MISSED"}'; }
echo "ms from 'proxyCli deploy' start to the new version's 200 through the gateway (and to the command's exit):" | tee -a "$RESULT"
row "case" "ready ms" "exit ms" "load / goal"

# ---- (1) first function, everything cold
if [[ "$COLD" == 1 ]]; then
    rm -rf "$CARGO_TARGET_DIR"
    new_fn bfirst
    la=$(load_avg)
    timed_deploy "first (cold deps)" bfirst "Hello from bfirst at"
    r1="$LAST_READY"; e1="$LAST_EXIT"
    row "(1) first fn, cold deps" "$LAST_READY" "$LAST_EXIT" "load=[$la] (no goal)"
fi

# ---- (2) second, different functions (dependencies warm)
r2=(); e2=()
for i in $(seq 1 "$RUNS"); do
    n="bsecond$i"; new_fn "$n"; la=$(load_avg)
    timed_deploy "second fn" "$n" "Hello from $n at"
    r2+=("$LAST_READY"); e2+=("$LAST_EXIT")
    row "(2) second fn, run $i" "$LAST_READY" "$LAST_EXIT" "load=[$la]"
done
FN=bsecond1

# ---- (3) one-line change
r3=(); e3=()
for i in $(seq 1 "$RUNS"); do
    set_text "$FN" "Hello v$i"; la=$(load_avg)
    timed_deploy "one-line change" "$FN" "Hello v$i from $FN at"
    r3+=("$LAST_READY"); e3+=("$LAST_EXIT")
    row "(3) one-line change, run $i" "$LAST_READY" "$LAST_EXIT" "load=[$la]"
done
cur="Hello v$RUNS"

# ---- (4) unchanged
r4=(); e4=()
for i in $(seq 1 "$RUNS"); do
    la=$(load_avg)
    timed_deploy "unchanged" "$FN" "$cur from $FN at"
    r4+=("$LAST_READY"); e4+=("$LAST_EXIT")
    row "(4) unchanged, run $i" "$LAST_READY" "$LAST_EXIT" "load=[$la]"
done

# ---- (5) cold start of an already built image
r5=(); e5=(); p5=()
for i in $(seq 1 "$RUNS"); do
    "$CLI" stop "$FN" >/dev/null 2>&1 || die "proxyCli stop $FN failed"
    sleep 1; la=$(load_avg)
    timed_deploy "cold start (image present)" "$FN" "$cur from $FN at"
    r5+=("$LAST_READY"); e5+=("$LAST_EXIT")
    row "(5) stop + deploy (image built), $i" "$LAST_READY" "$LAST_EXIT" "load=[$la]"
    # The peer, alternating: the engine alone. `docker run` of the same image on the same network
    # with the same hardening and limits, to the first 200 from /healthz at the container's IP.
    IMG=$(docker ps --filter label=io.rfaas.instance="$RFAAS_INSTANCE" --filter label=io.rfaas.function="$FN" --format '{{.Image}}' | head -n1)
    PEER="rfa-bench-peer-$RFAAS_INSTANCE"
    docker rm -f "$PEER" >/dev/null 2>&1 || true
    sleep 1; t0=$(now_ms)
    docker run -d --name "$PEER" --network "$NET" --read-only --tmpfs /tmp:rw,noexec,nosuid,size=64m \
        --cap-drop ALL --security-opt no-new-privileges:true --memory 128m --pids-limit 256 \
        --add-host host.docker.internal:host-gateway --restart unless-stopped "$IMG" >/dev/null
    PIP=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$PEER")
    pr=$(wait_200 "http://$PIP:6000/healthz" "$t0" 20)
    docker rm -f "$PEER" >/dev/null 2>&1 || true
    p5+=("$pr")
    row "    peer: docker run → first 200, $i" "$pr" "" "(engine alone)"
done
# The cargo no-op build, on its own (same command proxyCli runs; deploy skips it when the binary is
# newer than every source and manifest it was built from, as in (4) and (5)).
WRAP="$ROOT/deployments/$RFAAS_INSTANCE/$FN/Cargo.toml"
noop=()
for i in $(seq 1 "$RUNS"); do
    t0=$(now_ms)
    cargo build --release --manifest-path "$WRAP" --target-dir "${CARGO_TARGET_DIR:-$ROOT/target}" >/dev/null 2>&1 || true
    noop+=($(( $(now_ms) - t0 )))
done

{
    echo "medians over $RUNS runs (ready = 200 with the new body through the gateway):"
    if [[ "$COLD" == 1 ]]; then row "(1) first fn, cold deps (once)" "$r1" "$e1" "(no goal)"; fi
    row "(2) second fn (goal <= 10000)" "$(median "${r2[@]}")" "$(median "${e2[@]}")" "$(verdict "$(median "${r2[@]}")" 10000)"
    row "(3) one-line change (goal <= 8000)" "$(median "${r3[@]}")" "$(median "${e3[@]}")" "$(verdict "$(median "${r3[@]}")" 8000)"
    # the old version already answers the same body: the command's exit is the figure here
    row "(4) unchanged (goal <= 2000, exit)" "$(median "${r4[@]}")" "$(median "${e4[@]}")" "$(verdict "$(median "${e4[@]}")" 2000)"
    row "(5) cold start, image built (goal <= 450)" "$(median "${r5[@]}")" "$(median "${e5[@]}")" "$(verdict "$(median "${r5[@]}")" 450)"
    row "    peer: docker run -> first 200" "$(median "${p5[@]}")" "" "rfaas/peer $(awk "BEGIN{printf \"%.2f\", $(median "${r5[@]}")/$(median "${p5[@]}")}")x, rfaas adds $(awk "BEGIN{print $(median "${r5[@]}")-$(median "${p5[@]}")}") ms"
    echo "  no-op cargo build of the wrapper (skipped by deploy when up to date): median $(median "${noop[@]}") ms (runs: ${noop[*]})"
    echo "  time-stamped deploy output (where the time goes): $LOGS"
    echo "load after: $(load_avg)"
} | tee -a "$RESULT"
