#!/usr/bin/env bash
# bench/tracing.sh — issue #6: gateway throughput with tracing on vs off, in the same run.
#
# Starts two platform instances side by side and deploys the same hello-world function
# (`proxyCli new hello`) on each:
#   off  RFAAS_INSTANCE=bench-troff, gateway 127.0.0.1:18991, no OTLP endpoint (the default)
#   on   RFAAS_INSTANCE=bench-tron,  gateway 127.0.0.1:18992, `--otlp-endpoint` to a local OTLP/gRPC
#        receiver on the host (target/release/otlp-sink: receives, counts and drops spans), so every
#        request is traced by the proxy and the function and exported in batches
# then runs `wrk -t1 -c32 -d10s --latency` against /functions/hello of each, alternating, ROUNDS
# times (3). Reports the median req/s, p50 and p99 of each, the ratio on/off (goal >= 0.85) and
# the number of spans the receiver got (to show export really ran).
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/tracing.sh             # ROUNDS=3 DURATION=10s CONNS=32 by default
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/tracing.txt (raw wrk output beside it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_cli
ensure_tool wrk wrk
SINK_BIN="$ROOT/target/release/otlp-sink"
[[ -x "$SINK_BIN" ]] || die "$SINK_BIN is missing: run 'cargo build --release --workspace' first"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-32}"
SINK_PORT="${BENCH_SINK_PORT:-14317}"
FN_DIR="${BENCH_FN_DIR:-/tmp/bench-hello}"
RESULT="$OUT_DIR/tracing.txt"
RAW="$OUT_DIR/tracing-wrk.txt"
: >"$RAW"
declare -A INST=([off]=bench-troff [on]=bench-tron)
declare -A GPORT=([off]=18991 [on]=18992)
declare -A PCPU FCPU   # CPU microseconds per request of the gateway and the function container

cleanup() {
    [[ -n "${SINK:-}" ]] && kill "$SINK" 2>/dev/null || true
    for m in off on; do RFAAS_INSTANCE="${INST[$m]}" stop_platform --prune; done
}
trap cleanup EXIT

{ echo "== tracing overhead benchmark (issue #6)"; machine; } | tee "$RESULT"

"$SINK_BIN" --port "$SINK_PORT" >"$OUT_DIR/tracing-sink.log" 2>&1 &
SINK=$!
sleep 0.5
kill -0 "$SINK" 2>/dev/null || { cat "$OUT_DIR/tracing-sink.log" >&2; die "otlp-sink did not start"; }

rm -rf "$FN_DIR"
"$CLI" new hello --dir "$FN_DIR" >/dev/null
for m in off on; do
    extra=()
    [[ $m == on ]] && extra=(--otlp-endpoint "http://host.docker.internal:$SINK_PORT")
    RFAAS_INSTANCE="${INST[$m]}" "$CLI" startFaas --port "${GPORT[$m]}" "${extra[@]}" >"$OUT_DIR/tracing-start-$m.log" 2>&1 \
        || { cat "$OUT_DIR/tracing-start-$m.log" >&2; die "startFaas ($m) failed"; }
    RFAAS_INSTANCE="${INST[$m]}" "$CLI" deploy "$FN_DIR/deploy.json" >"$OUT_DIR/tracing-deploy-$m.log" 2>&1 \
        || { cat "$OUT_DIR/tracing-deploy-$m.log" >&2; die "deploy ($m) failed"; }
done
curl -fsS "http://127.0.0.1:${GPORT[on]}/functions/hello" >/dev/null || die "the traced gateway does not answer"

echo "wrk -t1 -c$CONNS -d$DURATION --latency, $ROUNDS rounds, order alternates each round:" | tee -a "$RESULT"
order=(off on)
for r in $(seq 1 "$ROUNDS"); do
    echo " round $r" | tee -a "$RESULT"
    for m in "${order[@]}"; do
        px=$(role_container "${INST[$m]}" proxy); fx=$(role_container "${INST[$m]}" function)
        p0=$(container_cpu_ns "$px"); f0=$(container_cpu_ns "$fx")
        run_wrk "$m" "http://127.0.0.1:${GPORT[$m]}/functions/hello"
        p1=$(container_cpu_ns "$px"); f1=$(container_cpu_ns "$fx")
        PCPU[$m]+="$(awk -v a="$p0" -v b="$p1" -v n="$LAST_REQUESTS" 'BEGIN{printf "%.1f", (b-a)/n/1000}') "
        FCPU[$m]+="$(awk -v a="$f0" -v b="$f1" -v n="$LAST_REQUESTS" 'BEGIN{printf "%.1f", (b-a)/n/1000}') "
        echo "          CPU per request: gateway $(echo ${PCPU[$m]} | awk '{print $NF}') us, function $(echo ${FCPU[$m]} | awk '{print $NF}') us" | tee -a "$RESULT"
    done
    order=("${order[1]}" "${order[0]}")
done
sleep 6   # the batch exporters' interval (5 s) passes, so the last spans arrive
SPANS=$(awk '/^spans /{n=$2} END{print n+0}' "$OUT_DIR/tracing-sink.log")

calc() { awk "BEGIN{printf \"%.2f\", $1}"; }
{
    echo "== medians"
    printf '  %-5s %10s %10s %10s %14s %14s\n' mode "req/s" "p50 ms" "p99 ms" "gw CPU us/req" "fn CPU us/req"
    declare -A mR m50 m99
    for m in off on; do
        mR[$m]=$(median ${RPS[$m]}); m50[$m]=$(median ${P50[$m]}); m99[$m]=$(median ${P99[$m]})
        printf '  %-5s %10s %10s %10s %14s %14s\n' "$m" "${mR[$m]}" "${m50[$m]}" "${m99[$m]}" "$(median ${PCPU[$m]})" "$(median ${FCPU[$m]})"
    done
    ratio=$(calc "${mR[on]}/${mR[off]}")
    echo "throughput tracing on/off: ${ratio}x  (goal >= 0.85: $(awk "BEGIN{print ($ratio>=0.85)?\"met\":\"MISSED\"}"))"
    echo "spans received by the OTLP receiver: $SPANS"
} | tee -a "$RESULT"
