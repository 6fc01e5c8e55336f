#!/usr/bin/env bash
# bench/gateway.sh — issue #3: what the rfaas gateway adds in front of a function, against nginx.
#
# Deploys a hello-world HTTP function (`proxyCli new hello`: answers "Hello from hello at <path>")
# on a private instance (RFAAS_INSTANCE=bench, gateway on 127.0.0.1:18999), then runs
# `wrk -t1 -c32 -d10s --latency` ROUNDS times (3) against each target, alternating:
#   direct  http://<function container IP on rfa-net-bench>:6000/
#   rfaas   http://127.0.0.1:18999/functions/hello
#   gw-ip   http://<gateway container IP>:9999/functions/hello — the same gateway without Docker's
#           userland port forwarder (docker-proxy); a diagnostic, not part of the goals
#   nginx   http://127.0.0.1:18998/  — host nginx, upstream = container IP:6000 with keepalive 64,
#           proxy_http_version 1.1, Connection "" (the usual tuned reverse proxy); temp config in /tmp.
# Reports the median req/s, p50 and p99 of each, and the ratios:
#   throughput rfaas/nginx (goal >= 1.0), added p50 (rfaas - direct vs nginx - direct; goal: rfaas's
#   <= nginx's), p99 rfaas/nginx (goal <= 2.0).
# Also: proxy memory under load (sampled every second during the rfaas runs; goal <= 40 MB), the
# function image size (goal <= 20 MB) and the function's idle memory (goal <= 8 MB).
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/gateway.sh             # ROUNDS=3 DURATION=10s CONNS=32 by default
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/gateway.txt (raw wrk output beside it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_cli
ensure_tool wrk wrk
ensure_tool nginx nginx-light
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-32}"
NGINX_PORT="${BENCH_NGINX_PORT:-18998}"
FN_DIR="${BENCH_FN_DIR:-/tmp/bench-hello}"
NGX="/tmp/bench-nginx"
RESULT="$OUT_DIR/gateway.txt"
RAW="$OUT_DIR/gateway-wrk.txt"
: >"$RAW"

cleanup() {
    [[ -f "$NGX/nginx.pid" ]] && kill "$(cat "$NGX/nginx.pid")" 2>/dev/null || true
    [[ -n "${SAMPLER:-}" ]] && kill "$SAMPLER" 2>/dev/null || true
    stop_platform --prune
}
trap cleanup EXIT

{ echo "== gateway overhead benchmark (issue #3)"; machine; } | tee "$RESULT"

start_platform
rm -rf "$FN_DIR"
"$CLI" new hello --dir "$FN_DIR" >/dev/null
"$CLI" deploy "$FN_DIR/deploy.json" >"$OUT_DIR/gateway-deploy.log" 2>&1 || { cat "$OUT_DIR/gateway-deploy.log" >&2; die "deploy failed"; }

FN=$(docker ps -q --filter label=io.rfaas.instance="$RFAAS_INSTANCE" --filter label=io.rfaas.function=hello | head -n1)
[[ -n "$FN" ]] || die "no running container for function hello"
FN_NAME=$(docker inspect --format '{{.Name}}' "$FN" | tr -d /)
IP=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$FN")
[[ "$IP" =~ ^172\.|^10\.|^192\.168\. ]] || die "unexpected container IP '$IP'"
DIRECT="http://$IP:6000/"
RFAAS="$GW/functions/hello"
GWIP=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "rfa-proxy-$RFAAS_INSTANCE")
GWDIRECT="http://$GWIP:9999/functions/hello"
NGINXURL="http://127.0.0.1:$NGINX_PORT/"

# nginx on the host, tuned as one would for a fair peer.
rm -rf "$NGX"; mkdir -p "$NGX/logs" "$NGX/tmp"
cat >"$NGX/nginx.conf" <<EOF
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    upstream fn { server $IP:6000; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://fn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$NGINX" -c "$NGX/nginx.conf" -p "$NGX/" -e "$NGX/logs/error.log"

for u in "$DIRECT" "$RFAAS" "$GWDIRECT" "$NGINXURL"; do
    [[ "$(wait_200 "$u" "$(now_ms)" 20)" != timeout ]] || die "$u does not answer 200"
done
echo "sample answers: direct='$(curl -s "$DIRECT" | tr -d '\n')' rfaas='$(curl -s "$RFAAS" | tr -d '\n')' nginx='$(curl -s "$NGINXURL" | tr -d '\n')'" | tee -a "$RESULT"

# ---- function image and idle memory (before any load)
FN_IMG=$(container_image "$FN")
sleep 10
FN_RSS=$(container_rss_mb "$FN")
FN_STATS=$(container_stats_mem "$FN")
PROXY="rfa-proxy-$RFAAS_INSTANCE"
PROXY_IDLE=$(container_rss_mb "$PROXY")

# wrk latency figure -> ms
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000} printf "%.3f", v}'; }

declare -A RPS P50 P99
run_wrk() { # run_wrk <label> <url>
    local label="$1" url="$2" out rps p50 p99
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url")
    printf '### %s %s load=[%s]\n%s\n' "$label" "$url" "$(load_avg)" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then log "$label: $(grep -E 'Non-2xx|Socket errors' <<<"$out")"; echo "  $label errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')" >>"$RESULT"; fi
    RPS[$label]+="$rps "; P50[$label]+="$p50 "; P99[$label]+="$p99 "
    printf '  %-7s req/s %9s  p50 %7s ms  p99 %7s ms  load=[%s]\n' "$label" "$rps" "$p50" "$p99" "$(load_avg)" | tee -a "$RESULT"
}

# proxy memory sampler, bounded: one sample a second for at most 10 minutes
PEAK_FILE="$OUT_DIR/gateway-proxy-rss.txt"; : >"$PEAK_FILE"
# (reads /proc only: `docker stats` in a loop would cost the engine CPU and disturb every run)
PROXY_PIDS=$(docker top "$PROXY" -eo pid | tail -n +2 | tr '\n' ' ')
( for _ in $(seq 1 600); do
    t=0; for p in $PROXY_PIDS; do k=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0); t=$((t + ${k:-0})); done
    awk -v k="$t" 'BEGIN{printf "%.1f\n", k/1024}' >>"$PEAK_FILE"; sleep 1
  done ) &
SAMPLER=$!

echo "wrk -t1 -c$CONNS -d$DURATION --latency, $ROUNDS rounds, order rotates each round:" | tee -a "$RESULT"
order=(direct rfaas nginx gw-ip)
declare -A URL=([direct]="$DIRECT" [rfaas]="$RFAAS" [nginx]="$NGINXURL" [gw-ip]="$GWDIRECT")
for r in $(seq 1 "$ROUNDS"); do
    echo " round $r" | tee -a "$RESULT"
    for l in "${order[@]}"; do run_wrk "$l" "${URL[$l]}"; done
    order=("${order[@]:1}" "${order[0]}")
done
kill "$SAMPLER" 2>/dev/null || true; SAMPLER=""
PROXY_PEAK=$(sort -g "$PEAK_FILE" | tail -n1)
PROXY_STATS_PEAK=$(container_stats_mem "$PROXY")
PROXY_AFTER=$(container_rss_mb "$PROXY")

# ---- summary
declare -A mR m50 m99
for l in direct rfaas nginx gw-ip; do
    # shellcheck disable=SC2086
    mR[$l]=$(median ${RPS[$l]}); m50[$l]=$(median ${P50[$l]}); m99[$l]=$(median ${P99[$l]})
done
calc() { awk "BEGIN{printf \"%.2f\", $1}"; }
thr=$(calc "${mR[rfaas]}/${mR[nginx]}")
add_r=$(calc "${m50[rfaas]}-${m50[direct]}")
add_n=$(calc "${m50[nginx]}-${m50[direct]}")
p99r=$(calc "${m99[rfaas]}/${m99[nginx]}")
ok() { awk "BEGIN{print ($1)?\"met\":\"MISSED\"}"; }
{
    echo "medians over $ROUNDS rounds:"
    printf '  %-7s %10s %10s %10s\n' target "req/s" "p50 ms" "p99 ms"
    for l in direct rfaas nginx gw-ip; do printf '  %-7s %10s %10s %10s\n' "$l" "${mR[$l]}" "${m50[$l]}" "${m99[$l]}"; done
    echo "(gw-ip = the gateway at its container IP, without docker-proxy: $(calc "${mR[gw-ip]}/${mR[nginx]}")x nginx's throughput, added p50 $(calc "${m50[gw-ip]}-${m50[direct]}") ms)"
    echo "throughput rfaas/nginx: ${thr}x  (goal >= 1.0: $(ok "$thr>=1.0"))"
    echo "added p50: rfaas ${add_r} ms vs nginx ${add_n} ms  (goal rfaas <= nginx: $(ok "$add_r<=$add_n"))"
    echo "p99 rfaas/nginx: ${p99r}x  (goal <= 2.0: $(ok "$p99r<=2.0"))"
    echo "proxy RSS: idle ${PROXY_IDLE} MiB, peak under load ${PROXY_PEAK} MiB (docker stats right after the load ${PROXY_STATS_PEAK}), after ${PROXY_AFTER} MiB  (goal <= 40: $(ok "$PROXY_PEAK<=40"))"
    echo "function image $FN_IMG: $(image_mb "$FN_IMG") MB  (goal <= 20: $(ok "$(image_mb "$FN_IMG")<=20"))"
    echo "function $FN_NAME idle RSS: $FN_RSS MiB (docker stats $FN_STATS)  (goal <= 8: $(ok "$FN_RSS<=8"))"
    echo "load after: $(load_avg)"
} | tee -a "$RESULT"
