#!/usr/bin/env bash
# bench/store.sh — issue #5: the rfaas document store (rfa-store) against PostgreSQL.
#
# The store runs as a HOST PROCESS (target/release/rfa-store, copied to /tmp/benchstore first so a
# concurrent rebuild cannot swap it mid-run) on 127.0.0.1:18797 with data in
# /tmp/benchstore/store-data, publishing its events to a host `nats-server -js -p 14322
# -sd /tmp/benchstore/js` (the same binary the platform's rfa-nats packs) — as PostgreSQL also
# runs as a host process. No platform instance is started.
# The peer: PostgreSQL (Debian's, newest /usr/lib/postgresql/*/bin) in a throw-away cluster
# /tmp/benchstore/pg owned by `postgres`, its unix socket and 127.0.0.1, port 18796 (pgbench runs
# over both: the socket is PostgreSQL's fastest path, TCP the store's transport), defaults plus fsync=on,
# synchronous_commit=on, full_page_writes=on (durable commits, as the store's 2xx), table
#   docs (id bigserial primary key, version int, created_at, updated_at timestamptz, data jsonb)
# i.e. the store's envelope. Both get the same ~115-byte JSON document.
#
#  1. 100k documents: wrk POSTs until 100,000 creates were answered 201 (TARGET in
#     bench/store_post.lua); after IDLE (10) s idle: `du` of the data dir, the store's VmRSS and
#     VmHWM, the outbox (should be 0). Peer: pg_total_relation_size of 100k rows of the same JSON.
#  2. ROUNDS (3) rounds, the order of store and peer alternating every round:
#       create  wrk -t1 -c32 -d10s -s bench/store_post.lua  POST /tables/bench/docs
#               vs pgbench -n -c 32 -j 2 -T 10 -f insert.sql   (INSERT … '<json>'::jsonb), socket and TCP
#       read    wrk -t1 -c32 -d10s -s bench/store_get.lua   GET /tables/bench/docs/<random id of
#               the 100k> vs pgbench -n -c 32 -j 2 -T 10 -f select.sql (SELECT … WHERE id = random)
#     plus, as diagnostics, `wrk` GET of one fixed id (static request, no lua per request) and the
#     creates into a second store without NATS (no events published: what an event costs);
#     with the store's CPU seconds (from /proc) and group-commit figures (flushes, mean flush
#     time, from its /metrics) per create run.
#  3. Event latency, LAT_ROUNDS (2) times: bench/store_bench.py POSTs RATE (200) docs/s for 10 s
#     and a JetStream subscriber (nats-py, ordered push consumer on RFA_STORE,
#     rfa.store.bench.new-doc.*) in the same process records each event's arrival;
#     latency = handler running - 201 received. p50/p99, missing, duplicates.
# `uptime` load is recorded before every run. Goals: creates >= 1.0 x PostgreSQL; reads >= 2 x;
# event p50 <= 5 ms, p99 <= 25 ms; disk and RSS per 100k documents are reported (no goal).
#
# Run (from the repository root, after `cargo build --release --workspace`):
#   STORE_BIN=<another rfa-store> bench/store.sh   # the same bench of another build (A/B)
#   bench/store.sh          # ROUNDS=3 DURATION=10 CONNS=32 RATE=200 IDLE=10 (~5 min)
# Needs: wrk, postgresql (pgbench), nats-server (apt-get installs them when missing), python3 with
# nats-py and aiohttp (pip installs them when missing). Run as root (or with sudo): the cluster
# runs as `postgres`. Everything it starts is stopped and /tmp/benchstore removed at exit.
# Results: stdout and ${BENCH_OUT_DIR:-/tmp/rfaas-bench}/store.txt (raw outputs in store-raw.txt).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
RATE="${RATE:-200}"
IDLE="${IDLE:-10}"
LAT_ROUNDS="${LAT_ROUNDS:-2}"
DOCS="${DOCS:-100000}"
SPORT="${BENCH_STORE_PORT:-18797}"
PGPORT="${BENCH_PG_PORT:-18796}"
NPORT="${BENCH_NATS_PORT:-14322}"
NMON="${BENCH_NATS_MON:-18795}"
W=/tmp/benchstore
STORE_URL="http://127.0.0.1:$SPORT"
NATS_URL="nats://127.0.0.1:$NPORT"
RESULT="$OUT_DIR/store.txt"
RAW="$OUT_DIR/store-raw.txt"
DOC='{"name":"Ada Lovelace","email":"ada@example.com","age":36,"active":true,"tags":["math","engines"],"score":12.5}'
export DOC

STORE_BIN="${STORE_BIN:-$ROOT/target/release/rfa-store}"
[[ -x "$STORE_BIN" ]] || die "$STORE_BIN is missing: run 'cargo build --release --workspace' in $ROOT first"
[[ $(id -u) -eq 0 ]] || command -v sudo >/dev/null || die "run as root (the PostgreSQL cluster runs as user postgres)"
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
ensure_tool wrk wrk
ensure_tool nats-server nats-server
if ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then ensure_tool pgbench postgresql; fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
[[ -x "$PGBIN/pgbench" && -x "$PGBIN/initdb" ]] || die "no PostgreSQL binaries under /usr/lib/postgresql"
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
python3 -c 'import nats, aiohttp' 2>/dev/null || { log "installing nats-py and aiohttp (pip)"; python3 -m pip install -q nats-py aiohttp; }

SPID="" NPID="" PG_STARTED="" WRKPID="" XPID=""
cleanup() {
    set +e
    [[ -n "$WRKPID" ]] && kill "$WRKPID" 2>/dev/null
    [[ -n "$XPID" ]] && kill -KILL "$XPID" 2>/dev/null
    [[ -n "$SPID" ]] && { kill -TERM "$SPID" 2>/dev/null; for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$SPID" 2>/dev/null; }
    [[ -n "$NPID" ]] && { kill -TERM "$NPID" 2>/dev/null; for _ in $(seq 1 100); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$NPID" 2>/dev/null; }
    [[ -n "$PG_STARTED" ]] && $SUDO runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1
    $SUDO rm -rf "$W"
}
trap cleanup EXIT

# A previous run killed hard may have left its cluster running.
if [[ -f "$W/pg/data/postmaster.pid" ]]; then $SUDO runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true; fi
for p in "$SPORT" "$NPORT" "$NMON"; do
    ! ss -ltn "sport = :$p" | grep -q LISTEN || die "port $p is in use (set BENCH_STORE_PORT / BENCH_NATS_PORT / BENCH_NATS_MON)"
done
$SUDO rm -rf "$W"; mkdir -p "$W/store-data" "$W/js"
cp "$STORE_BIN" "$W/rfa-store"
: >"$RAW"

{
    echo "== document store benchmark (issue #5)"; machine
    echo "store:   rfa-store host process, binary $STORE_BIN of $(stat -c '%y' "$STORE_BIN" | cut -d. -f1) sha256 $(sha256sum "$W/rfa-store" | cut -c1-12)"
    echo "peer:    $("$PGBIN/postgres" --version), fsync=on synchronous_commit=on; $("$NATS_SERVER" --version)"
} | tee "$RESULT"

# ---- NATS, PostgreSQL, the store
"$NATS_SERVER" -js -a 127.0.0.1 -p "$NPORT" -m "$NMON" -sd "$W/js" >"$W/nats.log" 2>&1 &
NPID=$!
[[ "$(wait_200 "http://127.0.0.1:$NMON/healthz" "$(now_ms)" 20)" != timeout ]] || die "nats-server did not start: $(tail -5 "$W/nats.log")"

install -d -o postgres -g postgres -m 700 "$W/pg"
$SUDO runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg/data" -A trust -U postgres -E UTF8 --no-sync >"$OUT_DIR/store-initdb.log" 2>&1 || die "initdb failed (see $OUT_DIR/store-initdb.log)"
$SUDO runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/log" -w -t 60 \
    -o "-p $PGPORT -k $W/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=100" start >/dev/null \
    || die "PostgreSQL did not start: $(tail -5 "$W/pg/log")"
PG_STARTED=1
PSQL=("$PGBIN/psql" -h "$W/pg" -p "$PGPORT" -U postgres -d postgres -qAtX -v ON_ERROR_STOP=1)
PGBENCH=("$PGBIN/pgbench" -h "$W/pg" -p "$PGPORT" -U postgres -n -c "$CONNS" -j 2 -T "$DURATION")
# The same over loopback TCP, the transport the store is measured on (and functions use).
PGBENCH_TCP=("$PGBIN/pgbench" -h 127.0.0.1 -p "$PGPORT" -U postgres -n -c "$CONNS" -j 2 -T "$DURATION")
"${PSQL[@]}" -c "SHOW fsync; SHOW synchronous_commit;" | tr '\n' ' ' | sed 's/^/  pg fsync, synchronous_commit: /;s/$/\n/' | tee -a "$RESULT"
"${PSQL[@]}" <<SQL
CREATE TABLE docs (id bigserial PRIMARY KEY, version int NOT NULL DEFAULT 1,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  data jsonb NOT NULL);
INSERT INTO docs (data) SELECT '$DOC'::jsonb FROM generate_series(1, $DOCS);
VACUUM ANALYZE docs;
CHECKPOINT;
SQL
PG_100K=$("${PSQL[@]}" -c "SELECT pg_total_relation_size('docs')")
echo "INSERT INTO docs (data) VALUES ('$DOC'::jsonb);" >"$W/insert.sql"
printf '\\set id random(1, %d)\nSELECT id, version, created_at, updated_at, data FROM docs WHERE id = :id;\n' "$DOCS" >"$W/select.sql"

RFAAS_PORT="$SPORT" RFAAS_DATA_DIR="$W/store-data" RFAAS_NATS_URL="$NATS_URL" RUST_LOG=warn \
    "$W/rfa-store" >"$W/store.log" 2>&1 &
SPID=$!
[[ "$(wait_200 "$STORE_URL/healthz" "$(now_ms)" 20)" != timeout ]] || die "rfa-store did not start: $(tail -5 "$W/store.log")"
code=$(curl -s -o "$W/probe.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$DOC" "$STORE_URL/tables/probe/docs")
[[ "$code" == 201 ]] || die "a probe create answered $code: $(cat "$W/probe.json")"
curl -s -o /dev/null -X DELETE "$STORE_URL/tables/probe/docs/$(jq -r .id "$W/probe.json")"

# sum of a metric over all its label sets
metric() { curl -s --max-time 5 "$STORE_URL/metrics" | awk -v m="$1" '$1==m || index($1, m"{")==1 {s+=$2} END{printf "%.6f", s+0}'; }
cpu_s() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat" 2>/dev/null || echo 0; }   # utime+stime, USER_HZ=100
rss_kb() { awk -v k="$2" '$1==k":"{print $2}' "/proc/$1/status"; }
calc() { awk "BEGIN{printf \"%.2f\", $1}"; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000} printf "%.3f", v}'; }

# ---- 1. 100k documents: disk and memory
echo "1. $DOCS creates (wrk -t1 -c$CONNS, stops at $DOCS x 201), then ${IDLE} s idle; load=[$(load_avg)]" | tee -a "$RESULT"
# wrk's thread stops at TARGET, but wrk itself waits out -d: poll the store's write counter and
# stop wrk (SIGINT: it prints its summary) once DOCS creates are in (bounded by -d300s).
w0=$(metric rfa_store_writes_total)
t0=$(now_ms)
TARGET="$DOCS" wrk -t1 -c"$CONNS" -d300s -s "$BENCH_DIR/store_post.lua" "$STORE_URL/tables/bench/docs" >"$W/fill.out" 2>&1 &
WRKPID=$!
while kill -0 "$WRKPID" 2>/dev/null; do
    [[ $(awk -v a="$(metric rfa_store_writes_total)" -v b="$w0" -v n="$DOCS" 'BEGIN{print (a-b>=n)}') == 1 ]] && break
    sleep 0.2
done
t1=$(now_ms)
kill -INT "$WRKPID" 2>/dev/null || true; wait "$WRKPID" || true
out=$(cat "$W/fill.out")
printf '### fill %s\n%s\n' "$(load_avg)" "$out" >>"$RAW"
grep -q "Non-2xx\|Socket errors" <<<"$out" && echo "  fill errors: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')" | tee -a "$RESULT"
sleep "$IDLE"
N=$(python3 "$BENCH_DIR/store_bench.py" ids --url "$STORE_URL" --table bench --out "$W/ids-all.txt" --max 1000000 | cut -d= -f2)
head -n "$DOCS" "$W/ids-all.txt" >"$W/ids.txt"
DU=$(du -sb "$W/store-data" | cut -f1)
JSDU=$(du -sb "$W/js" | cut -f1)
RSS=$(rss_kb "$SPID" VmRSS); HWM=$(rss_kb "$SPID" VmHWM)
OUTBOX=$(metric rfa_store_outbox_pending)
FILL_RATE=$(calc "$N/(($t1-$t0)/1000)")
{
    echo "  documents: $N (the fill took $(calc "($t1-$t0)/1000") s: ~$FILL_RATE creates/s from an empty store); outbox pending after idle: ${OUTBOX%.*}"
    echo "  store data dir: $(calc "$DU/1048576") MiB = $(calc "$DU/1048576*100000/$N") MiB per 100k docs ($(calc "$DU/$N") B/doc)"
    echo "  files: $(cd "$W/store-data" && find . -type f -printf '%P=%s ' | head -c 600)"
    echo "  peer: PostgreSQL table+index (pg_total_relation_size) for $DOCS rows: $(calc "$PG_100K/1048576") MiB ($(calc "$PG_100K/$DOCS") B/row; WAL not counted)"
    echo "  (for reference, JetStream keeps the events 7 days: nats store dir $(calc "$JSDU/1048576") MiB)"
    echo "  store RSS at $N docs after idle: VmRSS $(calc "$RSS/1024") MiB, VmHWM (peak) $(calc "$HWM/1024") MiB"
} | tee -a "$RESULT"

# ---- 2. creates and reads, alternating
declare -A TPS LAT
run_store_create() {
    local c0 n0 f0 fd0 out rps p50 c1 n1 f1 fd1 w
    c0=$(cpu_s "$SPID"); n0=$(cpu_s "$NPID"); f0=$(metric rfa_store_flushes_total); fd0=$(metric rfa_store_flush_duration_seconds_sum)
    w=$(metric rfa_store_writes_total)
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$BENCH_DIR/store_post.lua" "$STORE_URL/tables/bench/docs")
    c1=$(cpu_s "$SPID"); n1=$(cpu_s "$NPID"); f1=$(metric rfa_store_flushes_total); fd1=$(metric rfa_store_flush_duration_seconds_sum)
    w=$(calc "$(metric rfa_store_writes_total)-$w")
    printf '### store-create load=[%s]\n%s\n' "$(load_avg)" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out"); p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    TPS[store-create]+="$rps "; LAT[store-create]+="$p50 "
    local err=""; grep -q "Non-2xx\|Socket errors" <<<"$out" && err=" ERRORS: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')"
    printf '  %-13s %9s /s  p50 %7s ms  store cpu %5.1f s (%s us/create), nats cpu %5.1f s, %s writes / %s flushes = %s per flush, mean flush %s ms%s\n' \
        store-create "$rps" "$p50" "$(calc "$c1-$c0")" "$(calc "1e6*($c1-$c0)/($w+1e-9)")" "$(calc "$n1-$n0")" "${w%.*}" "$(calc "$f1-$f0")" \
        "$(calc "$w/($f1-$f0+1e-9)")" "$(calc "1000*($fd1-$fd0)/($f1-$f0+1e-9)")" "$err" | tee -a "$RESULT"
}
run_store_read() {
    local out rps p50 c0 c1
    c0=$(cpu_s "$SPID")
    out=$(IDS_FILE="$W/ids.txt" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$BENCH_DIR/store_get.lua" "$STORE_URL/tables/bench/docs")
    c1=$(cpu_s "$SPID")
    printf '### store-read load=[%s]\n%s\n' "$(load_avg)" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out"); p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    TPS[store-read]+="$rps "; LAT[store-read]+="$p50 "
    local err=""; grep -q "Non-2xx\|Socket errors" <<<"$out" && err=" ERRORS: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ')"
    printf '  %-13s %9s /s  p50 %7s ms  store cpu %5.1f s%s\n' store-read "$rps" "$p50" "$(calc "$c1-$c0")" "$err" | tee -a "$RESULT"
}
# Diagnostic: the same GET, always of one id, as a static request (wrk builds it once: no lua call
# per request), to see how much of the read figure is the load generator's.
# Diagnostic: the same creates into a second store that has no NATS URL, so no event is published
# (they stay in its outbox): what the per-write JetStream event costs, which PostgreSQL does not pay.
run_store_create_noevents() {
    local port=$((SPORT + 10)) pid out rps c0 c1 n
    rm -rf "$W/store-noev"; mkdir -p "$W/store-noev"
    RFAAS_PORT="$port" RFAAS_DATA_DIR="$W/store-noev" RUST_LOG=error "$W/rfa-store" >"$W/store-noev.log" 2>&1 &
    pid=$!; XPID=$pid
    [[ "$(wait_200 "http://127.0.0.1:$port/healthz" "$(now_ms)" 20)" != timeout ]] || die "the second rfa-store did not start: $(tail -5 "$W/store-noev.log")"
    c0=$(cpu_s "$pid")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$BENCH_DIR/store_post.lua" "http://127.0.0.1:$port/tables/bench/docs")
    c1=$(cpu_s "$pid")
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; XPID=""
    printf '### store-create-noevents load=[%s]\n%s\n' "$(load_avg)" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out"); n=$(awk '/requests in/{print $1}' <<<"$out")
    TPS[store-create-noevents]+="$rps "
    printf '  %-13s %9s /s  store cpu %5.1f s (%s us/create)  (diagnostic: a store without NATS, no events)\n' \
        store-noevents "$rps" "$(calc "$c1-$c0")" "$(calc "1e6*($c1-$c0)/($n+1e-9)")" | tee -a "$RESULT"
}
run_store_read1() {
    local out rps p50 c0 c1
    c0=$(cpu_s "$SPID")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$STORE_URL/tables/bench/docs/$(sed -n 5000p "$W/ids.txt")")
    c1=$(cpu_s "$SPID")
    printf '### store-read-1id load=[%s]\n%s\n' "$(load_avg)" "$out" >>"$RAW"
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out"); p50=$(awk '$1=="50%"{print $2}' <<<"$out" | to_ms)
    TPS[store-read-1id]+="$rps "
    printf '  %-13s %9s /s  p50 %7s ms  store cpu %5.1f s  (diagnostic: one id, static request)\n' store-read-1id "$rps" "$p50" "$(calc "$c1-$c0")" | tee -a "$RESULT"
}
run_pg() { # run_pg <label> <sql file> [tcp]
    local out tps lat
    if [[ "${3:-}" == tcp ]]; then out=$("${PGBENCH_TCP[@]}" -f "$2" postgres 2>&1); else out=$("${PGBENCH[@]}" -f "$2" postgres 2>&1); fi
    printf '### %s load=[%s]\n%s\n' "$1" "$(load_avg)" "$out" >>"$RAW"
    tps=$(awk '/^tps = /{printf "%.1f", $3; exit}' <<<"$out"); lat=$(awk '/^latency average = /{print $4}' <<<"$out")
    grep -q "number of failed transactions: [1-9]\|aborted" <<<"$out" && log "$1: $(grep -E 'failed|aborted' <<<"$out")"
    TPS[$1]+="$tps "; LAT[$1]+="$lat "
    printf '  %-13s %9s /s  avg %7s ms\n' "$1" "$tps" "$lat" | tee -a "$RESULT"
}

echo "2. $ROUNDS rounds of ${DURATION} s runs, -c$CONNS (wrk -t1; pgbench -j 2), order alternating" | tee -a "$RESULT"
for r in $(seq 1 "$ROUNDS"); do
    echo " round $r load=[$(load_avg)]" | tee -a "$RESULT"
    if (( r % 2 )); then
        run_store_create; run_pg pg-insert "$W/insert.sql"; run_pg pg-insert-tcp "$W/insert.sql" tcp
        run_store_read; run_pg pg-select "$W/select.sql"; run_pg pg-select-tcp "$W/select.sql" tcp; run_store_read1
        run_store_create_noevents
    else
        run_pg pg-insert-tcp "$W/insert.sql" tcp; run_pg pg-insert "$W/insert.sql"; run_store_create
        run_pg pg-select-tcp "$W/select.sql" tcp; run_pg pg-select "$W/select.sql"; run_store_read; run_store_read1
        run_store_create_noevents
    fi
done

# ---- 3. event latency
echo "3. event latency: $RATE writes/s for ${DURATION} s, write 201 -> JetStream subscriber's handler" | tee -a "$RESULT"
P50S="" P99S=""
for r in $(seq 1 "$LAT_ROUNDS"); do
    l=$(load_avg)
    line=$(timeout 120 python3 "$BENCH_DIR/store_bench.py" latency --url "$STORE_URL" --nats "$NATS_URL" \
        --rate "$RATE" --seconds "$DURATION" --json "$OUT_DIR/store-latency-$r.json") || die "latency run failed: $line"
    echo "  run $r load=[$l]: $line" | tee -a "$RESULT"
    P50S+="$(sed -n 's/.* p50_ms=\([^ ]*\).*/\1/p' <<<"$line") "; P99S+="$(sed -n 's/.* p99_ms=\([^ ]*\).*/\1/p' <<<"$line") "
done
RSS_END=$(rss_kb "$SPID" VmRSS); HWM_END=$(rss_kb "$SPID" VmHWM)
DOCS_END=$(calc "$(metric rfa_store_writes_total)")

# ---- summary
ok() { awk "BEGIN{print ($1)?\"met\":\"MISSED\"}"; }
declare -A M
for k in store-create pg-insert pg-insert-tcp store-read pg-select pg-select-tcp store-read-1id store-create-noevents; do
    # shellcheck disable=SC2086
    M[$k]=$(median ${TPS[$k]})
done
cr=$(calc "${M[store-create]}/${M[pg-insert]}"); rr=$(calc "${M[store-read]}/${M[pg-select]}")
crt=$(calc "${M[store-create]}/${M[pg-insert-tcp]}"); rrt=$(calc "${M[store-read]}/${M[pg-select-tcp]}")
# shellcheck disable=SC2086
p50=$(median $P50S); p99=$(median $P99S)
{
    echo "== summary (medians over $ROUNDS rounds)"
    printf '  %-13s %10s   %s\n' run "per s" "all rounds"
    for k in store-create pg-insert pg-insert-tcp store-read pg-select pg-select-tcp store-read-1id store-create-noevents; do printf '  %-13s %10s   %s\n' "$k" "${M[$k]}" "${TPS[$k]}"; done
    echo "creates store/PostgreSQL: ${cr}x over PostgreSQL's unix socket, ${crt}x over TCP  (goal >= 1.0: $(ok "$cr>=1.0") / $(ok "$crt>=1.0"))"
    echo "  (diagnostic) creates with no event published: $(calc "${M[store-create-noevents]}/${M[pg-insert]}")x the socket, $(calc "${M[store-create-noevents]}/${M[pg-insert-tcp]}")x TCP"
    echo "reads   store/PostgreSQL: ${rr}x over PostgreSQL's unix socket, ${rrt}x over TCP  (goal >= 2.0: $(ok "$rr>=2.0") / $(ok "$rrt>=2.0"))"
    echo "event latency (median of $LAT_ROUNDS runs): p50 $p50 ms (goal <= 5: $(ok "$p50<=5")), p99 $p99 ms (goal <= 25: $(ok "$p99<=25"))"
    echo "disk per 100k docs: store $(calc "$DU/1048576*100000/$N") MiB vs PostgreSQL table+index $(calc "$PG_100K/1048576*100000/$DOCS") MiB"
    echo "store RSS at $N docs: $(calc "$RSS/1024") MiB (peak $(calc "$HWM/1024") MiB); at the end (~${DOCS_END%.*} writes): $(calc "$RSS_END/1024") MiB (peak $(calc "$HWM_END/1024") MiB)"
    echo "load after: $(load_avg)"
} | tee -a "$RESULT"
