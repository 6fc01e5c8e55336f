#!/usr/bin/env bash
# bench/startfaas.sh — issue #2: how long `proxyCli startFaas` takes and how big the platform is.
#
# Measures, on a private instance (RFAAS_INSTANCE=bench, port 18999, token in /tmp/bench-config):
#   * cold startFaas: no rfaas platform images (rfa-base/proxy/store/nats) present, so they are all
#     built. Only images that no container uses are removed; if one is in use (another instance is
#     running) the cold run is reported as "not measurable now" instead of forcing anything.
#   * warm startFaas: images present, platform down (stopFaas, then startFaas), RUNS times (5),
#     median. Wall time from the command start to its exit (startFaas waits until every piece is
#     healthy), plus the time to the first 200 from the gateway's /healthz.
#   * image sizes of rfa-base, rfa-proxy, rfa-store, rfa-nats (as `docker images` reports them);
#   * idle memory of the proxy and store containers after IDLE seconds (10): VmRSS summed over the
#     container's processes, and `docker stats` usage.
# Goals: warm <= 3 s; rfa-base <= 15 MB; proxy/store image <= 40 MB; NATS image <= 25 MB;
#        idle RSS <= 20 MB each.
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   bench/startfaas.sh            # RUNS=5 IDLE=10 by default; SKIP_COLD=1 skips the cold run
# Results go to stdout and to ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/startfaas.txt.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_cli

RUNS="${RUNS:-5}"
IDLE="${IDLE:-10}"
RESULT="$OUT_DIR/startfaas.txt"
trap 'stop_platform --prune' EXIT

# Removes the rfaas platform images (roles base/proxy/store/nats) that no container uses.
# Returns 1 if any of them is still present afterwards (in use, so a cold start is impossible now).
remove_unused_platform_images() {
    local used ids id role refs ref
    used=$(docker ps -aq | xargs -r docker inspect --format '{{.Image}}' | sort -u)
    ids=$(docker images -q --no-trunc --filter label=io.rfaas.managed=true | sort -u)
    # Tagged images first (by reference, so multi-tag images go too), then the untagged leftovers,
    # children before parents (a few passes).
    for pass in 1 2 3; do
        for id in $(docker images -q --no-trunc --filter label=io.rfaas.managed=true | sort -u); do
            role=$(docker image inspect --format '{{index .Config.Labels "io.rfaas.role"}}' "$id" 2>/dev/null || true)
            case "$role" in base|proxy|store|nats) ;; *) continue ;; esac
            if grep -qx "$id" <<<"$used"; then log "image $id ($role) is used by a container: kept"; continue; fi
            refs=$(docker image inspect --format '{{join .RepoTags " "}}' "$id" 2>/dev/null || true)
            if [[ -n "$refs" ]]; then
                for ref in $refs; do docker rmi "$ref" >/dev/null 2>&1 || true; done
            else
                docker rmi "$id" >/dev/null 2>&1 || true
            fi
        done
    done
    local left
    left=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^rfa-(base|proxy|store|nats):' || true)
    if [[ -n "$left" ]]; then log "still present: $(tr '\n' ' ' <<<"$left")"; return 1; fi
    return 0
}

timed_start() { # prints "<exit-ms> <healthz-ms>"
    local t0 t1 h
    t0=$(now_ms)
    "$CLI" startFaas --port "$PORT" >"$OUT_DIR/startfaas.log" 2>&1 || { cat "$OUT_DIR/startfaas.log" >&2; die "startFaas failed"; }
    t1=$(now_ms)
    h=$(wait_200 "$GW/healthz" "$t0" 30 || true)
    echo "$(( t1 - t0 )) $h"
}

{
    echo "== startFaas benchmark (issue #2)"
    machine
} | tee "$RESULT"

stop_platform --prune

# ---- cold
cold="skipped"
if [[ "${SKIP_COLD:-0}" != 1 ]]; then
    echo "load before cold run: $(load_avg)" | tee -a "$RESULT"
    if remove_unused_platform_images; then
        read -r ms h < <(timed_start)
        cold="$ms ms (gateway /healthz 200 at $h ms)"
        stop_platform
    else
        cold="cold not measurable now (a platform image is in use by another instance)"
    fi
fi
echo "cold startFaas: $cold" | tee -a "$RESULT"

# ---- warm: images present, platform down. One unmeasured start first so the images exist.
start_platform; stop_platform
warm=()
for i in $(seq 1 "$RUNS"); do
    la=$(load_avg)
    read -r ms h < <(timed_start)
    warm+=("$ms")
    echo "warm run $i: ${ms} ms (healthz 200 at ${h} ms) load=[$la]" | tee -a "$RESULT"
    if (( i < RUNS )); then stop_platform; fi
done
wm=$(median "${warm[@]}")
echo "warm startFaas median: ${wm} ms over $RUNS runs (goal <= 3000 ms: $(awk -v m="$wm" 'BEGIN{print (m<=3000)?"met":"MISSED"}'))" | tee -a "$RESULT"

# ---- image sizes (the images the running platform uses)
proxy_img=$(container_image "rfa-proxy-$RFAAS_INSTANCE")
store_img=$(container_image "rfa-store-$RFAAS_INSTANCE")
nats_img=$(container_image "rfa-nats-$RFAAS_INSTANCE")
base_img=$(docker inspect --format '{{index .Config.Labels "io.rfaas.base"}}' "rfa-proxy-$RFAAS_INSTANCE" 2>/dev/null || true)
[[ -n "$base_img" && "$base_img" != "<no value>" ]] || base_img=$(latest_image rfa-base)
goal() { awk -v v="$1" -v g="$2" 'BEGIN{print (v<=g)?"met":"MISSED"}'; }
{
    echo "image sizes (MB, docker's decimal MB):"
    printf '  %-26s %6s MB  goal <= 15  %s\n' "$base_img" "$(image_mb "$base_img")" "$(goal "$(image_mb "$base_img")" 15)"
    printf '  %-26s %6s MB  goal <= 40  %s\n' "$proxy_img" "$(image_mb "$proxy_img")" "$(goal "$(image_mb "$proxy_img")" 40)"
    printf '  %-26s %6s MB  goal <= 40  %s\n' "$store_img" "$(image_mb "$store_img")" "$(goal "$(image_mb "$store_img")" 40)"
    printf '  %-26s %6s MB  goal <= 25  %s\n' "$nats_img" "$(image_mb "$nats_img")" "$(goal "$(image_mb "$nats_img")" 25)"
} | tee -a "$RESULT"

# ---- idle memory
sleep "$IDLE"
{
    echo "idle memory after ${IDLE} s (VmRSS summed over the container's processes; docker stats usage):"
    for c in proxy store nats; do
        n="rfa-$c-$RFAAS_INSTANCE"
        r=$(container_rss_mb "$n")
        g=""; [[ $c == nats ]] || g="goal <= 20 MB $(goal "$r" 20)"
        printf '  %-20s RSS %6s MiB   docker stats %8s   %s\n' "$n" "$r" "$(container_stats_mem "$n")" "$g"
    done
    echo "load after: $(load_avg)"
} | tee -a "$RESULT"
