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
#   ngx-c   http://127.0.0.1:18996/  — the same nginx binary and config in a container on the same
#           network, published the way the gateway is (-p 127.0.0.1:18996:8080, so through Docker's
#           userland proxy) and hardened the way rfaas's containers are: the peer in the gateway's
#           own topology. Image `rfa-bench-nginx`, built FROM the platform's rfa-base, removed after.
#   ngx-cip the containerised nginx at its container IP (the peer of gw-ip).
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

NGXC="rfa-bench-nginx-$RFAAS_INSTANCE"
NGXC_PORT="${BENCH_NGINX_CONTAINER_PORT:-18996}"
cleanup() {
    [[ -f "$NGX/nginx.pid" ]] && kill "$(cat "$NGX/nginx.pid")" 2>/dev/null || true
    docker rm -f "$NGXC" >/dev/null 2>&1 || true
    docker rmi rfa-bench-nginx:latest >/dev/null 2>&1 || true
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

# The same nginx in a container beside the gateway: FROM the platform's base, plus the libraries
# nginx links that the base lacks, run with rfaas's hardening and published like the gateway.
BASE_TAG=$(docker inspect --format '{{index .Config.Labels "io.rfaas.base"}}' "rfa-proxy-$RFAAS_INSTANCE")
[[ "$BASE_TAG" == rfa-base:* ]] || die "cannot tell the platform's base image (got '$BASE_TAG')"
NGXIMG="/tmp/bench-nginx-image"
rm -rf "$NGXIMG"; mkdir -p "$NGXIMG/root/usr/sbin" "$NGXIMG/root/etc/nginx"
cp "$NGINX" "$NGXIMG/root/usr/sbin/nginx"
for lib in $(ldd "$NGINX" | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}'); do
    mkdir -p "$NGXIMG/root$(dirname "$lib")"; cp -L "$lib" "$NGXIMG/root$lib"
done
sed -e "s#$NGX/logs/error.log#stderr#" -e "s#$NGX/tmp/#/tmp/#g" -e "s#$NGX/#/tmp/#g" -e "s#127.0.0.1:$NGINX_PORT#0.0.0.0:8080#" "$NGX/nginx.conf" >"$NGXIMG/root/etc/nginx/nginx.conf"
printf '%s\n' "FROM $BASE_TAG" "COPY root/ /" \
    'ENTRYPOINT ["/usr/sbin/nginx", "-c", "/etc/nginx/nginx.conf", "-p", "/tmp/", "-e", "stderr", "-g", "daemon off;"]' \
    >"$NGXIMG/Dockerfile"
docker build -q -t rfa-bench-nginx:latest "$NGXIMG" >/dev/null || die "cannot build the nginx peer image"
docker rm -f "$NGXC" >/dev/null 2>&1 || true
docker run -d --name "$NGXC" --network "$NET" -p "127.0.0.1:$NGXC_PORT:8080" \
    --read-only --tmpfs /tmp:rw,size=64m,mode=1777 --cap-drop ALL \
    --security-opt no-new-privileges:true --user 10001:10001 rfa-bench-nginx:latest >/dev/null \
    || die "cannot start the nginx peer container"
NGXCIP=$(docker inspect --format "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$NGXC")
NGXCURL="http://127.0.0.1:$NGXC_PORT/"
NGXCIPURL="http://$NGXCIP:8080/"

for u in "$DIRECT" "$RFAAS" "$GWDIRECT" "$NGINXURL" "$NGXCURL" "$NGXCIPURL"; do
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
order=(direct rfaas nginx gw-ip ngx-c ngx-cip)
declare -A URL=([direct]="$DIRECT" [rfaas]="$RFAAS" [nginx]="$NGINXURL" [gw-ip]="$GWDIRECT" [ngx-c]="$NGXCURL" [ngx-cip]="$NGXCIPURL")
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
for l in direct rfaas nginx gw-ip ngx-c ngx-cip; do
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
    for l in direct rfaas nginx gw-ip ngx-c ngx-cip; do printf '  %-7s %10s %10s %10s\n' "$l" "${mR[$l]}" "${m50[$l]}" "${m99[$l]}"; done
    echo "(gw-ip = the gateway at its container IP, without docker-proxy: $(calc "${mR[gw-ip]}/${mR[nginx]}")x nginx's throughput, added p50 $(calc "${m50[gw-ip]}-${m50[direct]}") ms)"
    echo "throughput rfaas/nginx: ${thr}x  (goal >= 1.0: $(ok "$thr>=1.0"))"
    echo "same topology: rfaas/ngx-c (both published through docker-proxy) $(calc "${mR[rfaas]}/${mR[ngx-c]}")x, gw-ip/ngx-cip (both at their container IP) $(calc "${mR[gw-ip]}/${mR[ngx-cip]}")x"
    echo "  added p50 in that topology: rfaas $(calc "${m50[rfaas]}-${m50[direct]}") ms vs ngx-c $(calc "${m50[ngx-c]}-${m50[direct]}") ms; p99 rfaas/ngx-c $(calc "${m99[rfaas]}/${m99[ngx-c]}")x"
    echo "added p50: rfaas ${add_r} ms vs nginx ${add_n} ms  (goal rfaas <= nginx: $(ok "$add_r<=$add_n"))"
    echo "p99 rfaas/nginx: ${p99r}x  (goal <= 2.0: $(ok "$p99r<=2.0"))"
    echo "proxy RSS: idle ${PROXY_IDLE} MiB, peak under load ${PROXY_PEAK} MiB (docker stats right after the load ${PROXY_STATS_PEAK}), after ${PROXY_AFTER} MiB  (goal <= 40: $(ok "$PROXY_PEAK<=40"))"
    echo "function image $FN_IMG: $(image_mb "$FN_IMG") MB  (goal <= 20: $(ok "$(image_mb "$FN_IMG")<=20"))"
    echo "function $FN_NAME idle RSS: $FN_RSS MiB (docker stats $FN_STATS)  (goal <= 8: $(ok "$FN_RSS<=8"))"
    echo "load after: $(load_avg)"
} | tee -a "$RESULT"
