# Shared helpers for the bench/*.sh scripts. Sourced, not run.
#
# Every benchmark runs on its own platform instance so it never touches another one:
#   RFAAS_INSTANCE=bench, gateway on 127.0.0.1:18999, token under XDG_CONFIG_HOME=/tmp/bench-config.
# Override with BENCH_INSTANCE / BENCH_PORT if those are taken.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
CLI="${CLI:-$ROOT/target/release/proxyCli}"

export RFAAS_INSTANCE="${BENCH_INSTANCE:-bench}"
export XDG_CONFIG_HOME="${BENCH_CONFIG:-/tmp/bench-config}"
PORT="${BENCH_PORT:-18999}"
NET="rfa-net-$RFAAS_INSTANCE"
GW="http://127.0.0.1:$PORT"
OUT_DIR="${BENCH_OUT_DIR:-/tmp/rfaas-bench}"
mkdir -p "$OUT_DIR" "$XDG_CONFIG_HOME"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_cli() {
    [[ -x "$CLI" ]] || die "$CLI is missing: run 'cargo build --release --workspace' in $ROOT first"
    command -v docker >/dev/null || die "docker is not installed"
    docker info >/dev/null 2>&1 || die "the Docker engine is not reachable"
}

# Installs Debian packages providing the given commands when they are missing (wrk, nginx).
ensure_tool() { # ensure_tool <command> <package>
    local cmd="$1" pkg="$2"
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$cmd" ]]; then
        log "installing $pkg (for $cmd)"
        local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
        $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
}

now_ms() { local t=$EPOCHREALTIME; echo $(( ${t/./} / 1000 )); }   # wall clock in ms

load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# median of numbers given as arguments (works on decimals)
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# Machine description, printed at the top of each result file.
machine() {
    echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:    nproc=$(nproc) mem=$(free -m | awk '/^Mem:/{print $2" MiB"}') kernel=$(uname -r)"
    echo "docker:  $(docker version --format '{{.Server.Version}}' 2>/dev/null)"
    echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') (worktree may have uncommitted changes)"
    echo "load:    $(load_avg)"
}

start_platform() {
    "$CLI" startFaas --port "$PORT" >"$OUT_DIR/startfaas.log" 2>&1 || { cat "$OUT_DIR/startfaas.log" >&2; die "startFaas failed"; }
}

stop_platform() {
    local out
    out=$("$CLI" stopFaas "$@" 2>&1) || log "stopFaas $* failed (ignored): $out"
}

# Sum of VmRSS (KiB -> MiB, 1 decimal) of every process in a container, read from the host /proc.
container_rss_mb() {
    local c="$1" total=0 pid kb
    for pid in $(docker top "$c" -eo pid 2>/dev/null | tail -n +2); do
        kb=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    awk -v k="$total" 'BEGIN{printf "%.1f", k/1024}'
}

# docker stats' memory figure for a container (cgroup usage; includes some page cache).
container_stats_mem() { docker stats --no-stream --format '{{.MemUsage}}' "$1" 2>/dev/null | cut -d/ -f1 | tr -d ' '; }

# Image size in MB (decimal, as `docker images` reports) of an image reference.
image_mb() { docker image inspect --format '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%.1f", $1/1e6}'; }

# Current tag of the newest rfa-<x> image.
latest_image() { docker images --format '{{.Repository}}:{{.Tag}}' "$1" | head -n1; }

# Image actually used by a running container.
container_image() { docker inspect --format '{{.Config.Image}}' "$1" 2>/dev/null; }

# Waits until URL answers 200 (bounded); prints the ms it took from $2 (a now_ms stamp).
wait_200() { # wait_200 <url> <start_ms> [timeout_s]
    local url="$1" start="$2" deadline=$(( $(now_ms) + ${3:-120} * 1000 ))
    while (( $(now_ms) < deadline )); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url")" == 200 ]]; then
            echo $(( $(now_ms) - start )); return 0
        fi
        sleep 0.005
    done
    echo "timeout"; return 1
}

# Prefixes every line of stdin with ms since $1 (to see where a command's time goes).
stamp_lines() { local start="$1" line; while IFS= read -r line; do printf '[+%6d ms] %s\n' $(( $(now_ms) - start )) "$line"; done; }

# CPU time (ns) a container has used so far, from its cgroup (v1 cpuacct or v2 cpu.stat).
container_cpu_ns() { # container_cpu_ns <container id or name>
    local id; id=$(docker inspect --format '{{.Id}}' "$1" 2>/dev/null) || { echo 0; return; }
    if [[ -r /sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage ]]; then
        cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage"
    elif [[ -r /sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat ]]; then
        awk '$1=="usage_usec"{print $2*1000}' "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat"
    else
        echo 0
    fi
}

# The id of the running container of <role> (proxy|store|nats|function) in instance <instance>.
role_container() { # role_container <instance> <role>
    docker ps -q --filter "label=io.rfaas.instance=$1" --filter "label=io.rfaas.role=$2" | head -n1
}

# wrk latency figure -> ms
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000} printf "%.3f", v}'; }

declare -A RPS P50 P99
# One wrk run against <url>: its req/s, p50 and p99 (ms) are appended to RPS/P50/P99[<label>],
# the raw output to $RAW and a summary line to $RESULT. Uses CONNS and DURATION.
run_wrk() { # run_wrk <label> <url>
    local label="$1" url="$2" out rps p50 p99
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url")
    printf '### %s %s load=[%s]\n%s\n' "$label" "$url" "$(load_avg)" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    p99=$(awk '$1=="99%"{print $2}' <<<"$out" | to_ms)
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then log "$label: $(grep -E 'Non-2xx|Socket errors' <<<"$out")"; echo "  $label errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')" >>"$RESULT"; fi
    RPS[$label]+="$rps "; P50[$label]+="$p50 "; P99[$label]+="$p99 "
    LAST_REQUESTS=$(awk '/requests in/{print $1}' <<<"$out")
    printf '  %-7s req/s %9s  p50 %7s ms  p99 %7s ms  load=[%s]\n' "$label" "$rps" "$p50" "$p99" "$(load_avg)" | tee -a "$RESULT"
}
