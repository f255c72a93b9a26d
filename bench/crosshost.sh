#!/usr/bin/env bash
# Cross-host realtime latency: several pylon-host processes (default 2) serving one
# PostgreSQL database, N WebSocket subscribers spread over them, one writer inserting at a
# fixed rate into host A (or into the hosts in turn). Measures write → receive latency for
# subscribers on the host that took the write (same-host) and on the others (cross-host:
# the event reaches them through the shared change log, polled every PYLON_CHANGE_POLL_MS),
# and checks that every subscriber got each of its rows exactly once, in seq order, with
# the same seq on every host. Load generator: bench/lib/fanout_load.py (as fanout.sh).
#
#   bash bench/crosshost.sh
#
# Settings (environment):
#   BENCH_N           subscribers in all (default 1000); subscriber i is user i mod
#                     BENCH_USERS and connects to host (i div BENCH_USERS) mod BENCH_HOSTS,
#                     so every user has subscribers on every host
#   BENCH_HOSTS       pylon-host processes on the database (default 2)
#   BENCH_WRITE_TO    space-separated list of runs: first (every write to host A) and/or
#                     alternate (row i to host i mod BENCH_HOSTS) (default "first alternate")
#   BENCH_POLL_MS     space-separated PYLON_CHANGE_POLL_MS values, one set of runs each
#                     (default 25, the host's default)
#   BENCH_RATE        writes per second (default 100)
#   BENCH_DURATION    seconds of writes (default 20)
#   BENCH_USERS       users (default 100: each row goes to N/100 subscribers, half of
#                     them on each of 2 hosts); 1 = every subscriber reads every row
#   BENCH_DRAIN       seconds to wait after the last write for late deliveries (default 30)
#   BENCH_WORKERS     subscriber processes (default 1); the writer is one more process
#   BENCH_SEED        seed of the random row owners (default 1)
#   BENCH_WAIT_IDLE   before each run, wait up to this many seconds for an idle machine
#                     (other processes under 15% of a core; default 600)
#   BENCH_RETRY_DISTURBED  measure a run again, up to this many times (default 2), when
#                     other processes used more than 10% of a core during it
#   BENCH_KEEP_TMP    1 = keep the temp dir (server logs, PostgreSQL data)
#
# PostgreSQL: a fresh server from scripts/pg-server.sh in the temp dir with fsync and
# synchronous_commit on (its defaults), a new database for each run.
# Prints a markdown table and writes it to bench/out/crosshost-<timestamp>.md (raw per-run
# JSON and host logs in crosshost-<timestamp>/). Exits 3 when any run lost, duplicated,
# reordered or leaked an event, failed a write or lost a subscriber.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
LOAD="$BENCH/lib/fanout_load.py"
HELP="$BENCH/lib/crud_helpers.py"

N="${BENCH_N:-1000}"
HOSTS="${BENCH_HOSTS:-2}"
MODES="${BENCH_WRITE_TO:-first alternate}"
POLLS="${BENCH_POLL_MS:-25}"
RATE="${BENCH_RATE:-100}"
DURATION="${BENCH_DURATION:-20}"
USERS="${BENCH_USERS:-100}"
DRAIN="${BENCH_DRAIN:-30}"
WORKERS="${BENCH_WORKERS:-1}"
SEED="${BENCH_SEED:-1}"
RETRIES="${BENCH_RETRY_DISTURBED:-2}"
ONLY=pylon-pg
KNOWN_SERVERS=(pylon-pg)

BENCH_TAG=crosshost
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "BENCH_N must be a positive number"
[[ $HOSTS =~ ^[1-9][0-9]*$ ]] && (( HOSTS >= 2 )) || die "BENCH_HOSTS must be 2 or more"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_WORKERS must be a positive number"
for m in $MODES; do [[ $m == first || $m == alternate ]] || die "BENCH_WRITE_TO entries are first or alternate (got '$m')"; done
for p in $POLLS; do [[ $p =~ ^[1-9][0-9]*$ ]] || die "BENCH_POLL_MS entries are milliseconds (got '$p')"; done

# ---------------------------------------------------------------- tools
PY="$(command -v python3 || command -v python || true)"
[ -n "$PY" ] || die "python3 is needed"
command -v curl >/dev/null || { as_root apt-get update; as_root apt-get install -y curl; }
ensure_loadgen
ensure_servers
raise_fd_limit "$N"

# ---------------------------------------------------------------- temp dir and cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pylon-crosshost.XXXXXX")"
HOST_PIDS=()
stop_hosts() {
    stop_pids "${HOST_PIDS[@]}"
    HOST_PIDS=()
}
cleanup() {
    stop_hosts
    pg_stop
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

copy_pylon_build "$TMP/pylon-bin"

pg_start "$TMP/pg" bench0
PG_VERSION="$(psql_at "$PG_URL" 'SHOW server_version')"
PG_SETTINGS="fsync=$(psql_at "$PG_URL" 'SHOW fsync'), synchronous_commit=$(psql_at "$PG_URL" 'SHOW synchronous_commit')"
log "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT ($PG_SETTINGS)"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LOADAVG0="$(cut -d' ' -f1-3 /proc/loadavg)"
OUTDIR="$BENCH/out"
RAW="$OUTDIR/crosshost-$STAMP"
mkdir -p "$RAW"
RESULTS=()
RUN=0

run_once() { # poll_ms write_to out_json: fresh database, HOSTS hosts on it, one measured run
    local poll=$1 mode=$2 out=$3 db port h pid admin bases="" pids="" dir
    RUN=$(( RUN + 1 ))
    db="bench$RUN"
    dir="$TMP/run$RUN"
    mkdir -p "$dir"
    wait_idle
    psql_at "$PG_ADMIN_URL" "CREATE DATABASE $db" >/dev/null || die "psql: CREATE DATABASE $db failed"
    "$PY" "$HELP" manifest-store "$BENCH/fanout-manifest.json" "$dir/manifest.json" \
        "{\"use\":\"postgres\",\"url\":\"postgres://postgres@127.0.0.1:$PG_PORT/$db\"}"
    admin="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
    # One after the other: the first creates the schema, the others find it.
    for h in $(seq 0 $(( HOSTS - 1 ))); do
        port="$("$PY" "$HELP" free-port)"
        # Load comes from one address: the per-address request limit is set out of reach.
        PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
        PYLON_ADMIN_TOKEN="$admin" PYLON_MAX_CONNECTIONS_PER_IP=$(( N + 1000 )) PYLON_CHANGE_POLL_MS="$poll" \
            "$PYLON_BIN" serve --plugins "$TMP/pylon-bin/plugins" --manifest "$dir/manifest.json" \
            --port "$port" --no-compat-ports >"$dir/host$h.log" 2>&1 &
        pid=$!
        HOST_PIDS+=("$pid")
        wait_health "pylon-host $h" "$pid" "http://127.0.0.1:$port/health" "$dir/host$h.log"
        grep -q 'fed from the shared change log' "$dir/host$h.log" \
            || { tail -n 20 "$dir/host$h.log" >&2; die "pylon-host $h does not feed its hub from the shared change log"; }
        bases+="${bases:+,}http://127.0.0.1:$port"
        pids+="${pids:+,}$pid"
    done
    # Sessions live in the shared database, so a session minted on A is valid on B.
    "$PY" "$LOAD" setup-pylon "${bases%%,*}" "$admin" "$USERS" "$dir/users.json"
    log "run $RUN: $HOSTS hosts, poll $poll ms, $N subscribers ($USERS users), $RATE writes/s for $DURATION s to $( [ "$mode" = first ] && echo "host A" || echo "the hosts in turn")"
    "$PY" "$LOAD" run --server pylon --base "${bases%%,*}" --bases "$bases" --server-pid "${pids%%,*}" \
        --server-pids "$pids" --db-pid "$(pg_postmaster)" --write-to "$mode" --label "$poll" \
        --users "$dir/users.json" --n "$N" --rate "$RATE" --duration "$DURATION" --workers "$WORKERS" \
        --drain "$DRAIN" --seed "$SEED" --admin-token "$admin" --out "$out" \
        || { tail -n 40 "$dir"/host*.log >&2; die "run $RUN: load generator failed"; }
    for pid in ${pids//,/ }; do
        kill -0 "$pid" 2>/dev/null || { tail -n 40 "$dir"/host*.log >&2; die "run $RUN: a pylon-host died during the run"; }
    done
    stop_hosts
    for h in $(seq 0 $(( HOSTS - 1 ))); do cp "$dir/host$h.log" "${out%.json}.host$h.log"; done
}

disturbed_pct() { # result JSON -> % of a core other processes used during its window
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(100*r["other_cpu_s"]/r["window_s"]))' "$1"
}

for poll in $POLLS; do
    for mode in $MODES; do
        out="$RAW/$mode-poll$poll.json"
        try=0
        while :; do
            run_once "$poll" "$mode" "$out"
            d="$(disturbed_pct "$out")"
            if (( d <= 10 )) || (( try >= RETRIES )); then break; fi
            try=$(( try + 1 ))
            log "other processes used ${d}% of a core during the run: measuring again ($try/$RETRIES)"
            mv "$out" "${out%.json}.disturbed-$try.json"
        done
        RESULTS+=("$out")
    done
done

# ---------------------------------------------------------------- report
OUT_MD="$OUTDIR/crosshost-$STAMP.md"
envs="$(env | grep -E '^BENCH_[A-Z_]+=' | sort | tr '\n' ' ' || true)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
loadgen="$("$PY" -c 'import sys, websockets, aiohttp, uvloop; print("Python %s, websockets %s, aiohttp %s, uvloop %s" % (sys.version.split()[0], websockets.__version__, aiohttp.__version__, uvloop.__version__))')"
{
    echo "## Cross-host realtime latency: $HOSTS pylon-host processes on one PostgreSQL — $STAMP"
    echo
    echo "- command: \`${envs}bash bench/crosshost.sh\`"
    echo "- machine: $(nproc) cores, $cpu, Linux $(uname -r); hosts, PostgreSQL and load generator on the same cores; load average at the start $LOADAVG0"
    echo "- pylon-host $("$PYLON_BIN" --version 2>&1 | head -n 1) ($PYLON_BUILD; Postgres store plugin, not --dev); PostgreSQL $PG_VERSION (scripts/pg-server.sh, $PG_SETTINGS), one fresh database per run; load generator: $loadgen"
    echo "- load: $N WebSocket subscribers, subscriber i is user i mod $USERS on host (i div $USERS) mod $HOSTS, so each row goes to $(( N / USERS )) subscribers spread over the $HOSTS hosts; one writer, $RATE rows/s for $DURATION s, each row owned by a random user (seed $SEED); up to $DRAIN s drain"
    echo "- rule: \`allowRead: auth.userId == data.ownerId\`, insert admin-only (writer = admin token); sessions minted on host A (they live in the shared database)"
    echo "- latency = time the event's bytes reached the subscriber process − \`sentAt\` (stamped by the writer just before its POST), so it includes the insert; same-host = the subscriber's host took the write, cross-host = another host did; percentiles over every delivery"
    echo "- checks: every subscriber gets each row of its user exactly once, none of another user, seqs strictly increasing on every connection, and the same seq for a row on every host"
} >"$TMP/header.md"
set +e
"$PY" "$LOAD" report-crosshost "$OUT_MD" "$TMP/header.md" "${RESULTS[@]}"
rc=$?
set -e
finish_report "$rc" "$OUT_MD" "$RAW" "missing / duplicate / reordered / leaked events, failed writes or dropped subscribers"
