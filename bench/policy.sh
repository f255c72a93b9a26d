#!/usr/bin/env bash
# Cost of a row-dependent read rule (issue 16 item 5): an owner-filtered list
# (`auth.userId == data.ownerId`, ownerId indexed, compiled to a SQL predicate) as a user,
# against the admin's list of the same page size, in the same run, on the same table.
#
#   bash bench/policy.sh
#
# Settings (environment):
#   BENCH_DURATION     measured seconds per workload and server (default 10)
#   BENCH_WARMUP       unmeasured warm-up before each measurement (default 2; 0 = none)
#   BENCH_CONNECTIONS  wrk connections (default 64)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_ROWS         rows in the table (default 100000)
#   BENCH_OWNERS       owners the rows are spread over, round robin (default 100: each
#                      user owns BENCH_ROWS / BENCH_OWNERS rows)
#   BENCH_PAGE         page size of both lists (default 50)
#   BENCH_PER_ROW      1 = also measure the same list under a rule SQL cannot evaluate
#                      (`... || data.title == data.ownerId`: the per-row filter, which
#                      reads the whole table per request), on a second table of the same
#                      rows, with BENCH_PER_ROW_CONNECTIONS (default 4) connections and a
#                      30 s request timeout (default 1; 0 = skip)
#   BENCH_INDEX        owner-id = the tables' index is [ownerId, id] (default), which also
#                      serves the list's order (id) within one owner, so a page reads only
#                      its own rows; owner = [ownerId] alone, so each page sorts all of the
#                      owner's rows by id
#   BENCH_ONLY         all | a comma-separated list of pylon (SQLite store), pylon-pg
#                      (Postgres store) (default all)
#   BENCH_WAIT_IDLE    seconds to wait, before each measured run, for the machine to go
#                      idle (default 120)
#   BENCH_KEEP_TMP     1 = keep the temp dir
#
# Prints a markdown table and writes it to bench/out/policy-<timestamp>.md (raw wrk output
# beside it in .log). The hosts run without --dev, with an admin token, as the probe ran
# them (in --dev an entity with a policy enforces it all the same). Exits 3 when any
# request answered outside 2xx or failed on the socket.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
HELP="$BENCH/lib/crud_helpers.py"
DURATION="${BENCH_DURATION:-10}s"; DURATION="${DURATION%s}s"
WARMUP="${BENCH_WARMUP:-2}s"; WARMUP="${WARMUP%s}s"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
ROWS="${BENCH_ROWS:-100000}"
OWNERS="${BENCH_OWNERS:-100}"
PAGE="${BENCH_PAGE:-50}"
PER_ROW="${BENCH_PER_ROW:-1}"
PER_ROW_CONNS="${BENCH_PER_ROW_CONNECTIONS:-4}"
INDEX="${BENCH_INDEX:-owner-id}"
ONLY="${BENCH_ONLY:-all}"
export BENCH_WAIT_IDLE="${BENCH_WAIT_IDLE:-120}"
KNOWN_SERVERS=(pylon pylon-pg)
BENCH_TAG=policy
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"
(( ROWS >= OWNERS * PAGE )) || die "BENCH_ROWS must be at least BENCH_OWNERS × BENCH_PAGE, so the user's page is full"

PY="$(command -v python3 || command -v python || true)"
[ -n "$PY" ] || die "python3 is needed"
command -v curl >/dev/null || { as_root apt-get update; as_root apt-get install -y curl; }
command -v wrk >/dev/null || { as_root apt-get update; as_root apt-get install -y wrk; }
ensure_servers

bench_tmp policy

case "$INDEX" in
    owner-id) MANIFEST="$BENCH/policy-manifest.json" ;;
    owner)
        MANIFEST="$TMP/policy-manifest.json"
        "$PY" - "$BENCH/policy-manifest.json" "$MANIFEST" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for e in m["entities"]:
    for i in e["indexes"]:
        i["fields"] = ["ownerId"]
json.dump(m, open(sys.argv[2], "w"))
PY
        ;;
    *) die "BENCH_INDEX must be owner or owner-id" ;;
esac
ADMIN="$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
USER_ID="u7"
declare -A LABEL=([pylon]="pylon SQLite" [pylon-pg]="pylon Postgres")
declare -A BASE PID LOGF TOKEN
start_pylon() { # server manifest [serve flags...]
    local s=$1 manifest=$2 port
    shift 2
    port="$("$PY" "$HELP" free-port)"
    LOGF[$s]="$TMP/$s.log"
    log "starting pylon-host ($s) on 127.0.0.1:$port"
    # PYLON_RATE_LIMIT_MAX: the per-IP request limit (issue 16) must not throttle wrk.
    PYLON_ADMIN_TOKEN="$ADMIN" PYLON_RATE_LIMIT_MAX=1000000000 "$PYLON_BIN" serve --plugins plugins \
        --manifest "$manifest" --port "$port" --no-compat-ports "$@" >"${LOGF[$s]}" 2>&1 &
    PID[$s]=$!
    PIDS+=("${PID[$s]}")
    BASE[$s]="http://127.0.0.1:$port"
    wait_health "pylon-host ($s)" "${PID[$s]}" "${BASE[$s]}/health" "${LOGF[$s]}"
}
want pylon && start_pylon pylon "$MANIFEST" --db "$TMP/pylon.db"
if want pylon-pg; then
    pg_start "$TMP/pg" bench
    "$PY" "$HELP" manifest-store "$MANIFEST" "$TMP/manifest-pg.json" "{\"use\":\"postgres\",\"url\":\"$PG_URL\"}"
    start_pylon pylon-pg "$TMP/manifest-pg.json"
fi

# seed SERVER ENTITY: BENCH_ROWS rows through /api/batch (admin), owners u0..u<OWNERS-1>
# round robin; then mints USER_ID's session and checks both lists.
seed() {
    "$PY" - "${BASE[$1]}" "$ADMIN" "$2" "$ROWS" "$OWNERS" <<'PY' || die "$1: seeding $2 failed"
import json, sys, urllib.request
base, admin, entity, rows, owners = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
for start in range(0, rows, 1000):
    ops = [{"op": "insert", "entity": entity, "data": {"ownerId": "u%d" % (i % owners), "title": "doc %d" % i}}
           for i in range(start, min(rows, start + 1000))]
    req = urllib.request.Request(base + "/api/batch", data=json.dumps({"operations": ops}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + admin})
    answer = json.load(urllib.request.urlopen(req))
    if answer.get("failed"):
        sys.exit("batch at %d: %s" % (start, json.dumps(answer)[:400]))
PY
}
check_list() { # server entity token owner-or-empty: the list is a full page, of that owner's rows only
    "$PY" - "${BASE[$1]}/api/entities/$2?limit=$PAGE" "$3" "$4" "$PAGE" <<'PY' || die "$1: list check of $2 failed"
import json, sys, urllib.request
url, token, owner, page = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + token})))["data"]
if len(rows) != page or (owner and any(r["ownerId"] != owner for r in rows)):
    sys.exit("%s: %d rows, owners %s" % (url, len(rows), sorted({r["ownerId"] for r in rows})))
PY
}
ENTITIES=(Doc); [ "$PER_ROW" = 1 ] && ENTITIES+=(Memo)
for s in "${SERVERS[@]}"; do
    for e in "${ENTITIES[@]}"; do
        log "$s: inserting $ROWS rows into $e ($OWNERS owners)"
        seed "$s" "$e"
    done
    TOKEN[$s]="$(curl -sS -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
        --data "{\"user_id\":\"$USER_ID\"}" "${BASE[$s]}/api/auth/session" | "$PY" "$HELP" json-get token)"
    [ -n "${TOKEN[$s]}" ] || die "$s: no session for $USER_ID"
    for e in "${ENTITIES[@]}"; do
        check_list "$s" "$e" "$ADMIN" ""
        check_list "$s" "$e" "${TOKEN[$s]}" "$USER_ID"
    done
done

# ---------------------------------------------------------------- load
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$BENCH/out"
OUT_MD="$BENCH/out/policy-$STAMP.md"
OUT_LOG="$BENCH/out/policy-$STAMP.log"
: >"$OUT_LOG"
CLK_TCK="$(getconf CLK_TCK)"
NCPU="$(nproc)"
TIMEFORMAT='%3U %3S'
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0; }
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
declare -A R
WORKLOADS=(admin user); [ "$PER_ROW" = 1 ] && WORKLOADS+=(per-row)
declare -A WNAME=([admin]="admin list-of-$PAGE (no rule)" [user]="user list-of-$PAGE, rule in SQL"
                  [per-row]="user list-of-$PAGE, rule SQL cannot evaluate (per-row filter)")
run_wrk() { # server workload phase duration
    local s=$1 w=$2 phase=$3 dur=$4 entity=Doc token=$ADMIN conns=$CONNS extra=() out line kv
    [ "$w" != admin ] && token="${TOKEN[$s]}"
    # A per-row list reads the whole table: few connections, and time for each answer.
    [ "$w" = per-row ] && { entity=Memo; conns=$PER_ROW_CONNS; extra=(--timeout 30s); }
    out="$TMP/wrk-$s-$w-$phase.txt"
    local cmd=(wrk -t"$THREADS" -c"$conns" -d"$dur" "${extra[@]}" -H "Authorization: Bearer $token" -s "$BENCH/wrk/list.lua"
               "${BASE[$s]}/api/entities/$entity?limit=$PAGE")
    log "$s $w ($phase, $dur)"
    [ "$phase" = run ] && wait_idle
    local c0 b0 t0 c1 b1 t1
    c0="$(cpu_ticks "${PID[$s]}")"; b0="$(busy_ticks)"; t0="$(date +%s.%N)"
    { time BENCH_WRK_DIR="$BENCH/wrk" "${cmd[@]}" >"$out" 2>&1; } 2>"$out.time" || { cat "$out" >&2; die "wrk failed for $s $w"; }
    c1="$(cpu_ticks "${PID[$s]}")"; b1="$(busy_ticks)"; t1="$(date +%s.%N)"
    kill -0 "${PID[$s]}" 2>/dev/null || { tail -n 30 "${LOGF[$s]}" >&2; die "$s died during $w"; }
    { echo "### $s $w $phase: ${cmd[*]/$token/<token>}"; cat "$out"; echo; } >>"$OUT_LOG"
    line="$(grep '^BENCH_RESULT ' "$out" || true)"
    [ -n "$line" ] || { cat "$out" >&2; die "wrk printed no BENCH_RESULT line for $s $w"; }
    for kv in ${line#BENCH_RESULT }; do R["$s.$w.$phase.${kv%%=*}"]="${kv#*=}"; done
    R["$s.$w.$phase.bad"]=$(( R[$s.$w.$phase.non2xx] + R[$s.$w.$phase.connect] + R[$s.$w.$phase.read] + R[$s.$w.$phase.write] + R[$s.$w.$phase.timeout] ))
    R["$s.$w.$phase.cpu_us"]="$(LC_ALL=C awk -v t=$(( c1 - c0 )) -v hz="$CLK_TCK" -v n="${R[$s.$w.$phase.requests]}" \
        'BEGIN { printf "%.0f", (n > 0 ? t / hz * 1e6 / n : 0) }')"
    # What the rest of the machine (not the host, not wrk) used meanwhile, % of all cores.
    local pg=0; [ "$s" = pylon-pg ] && pg=1
    R["$s.$w.$phase.other_pct"]="$(LC_ALL=C awk -v b=$(( b1 - b0 )) -v h=$(( c1 - c0 )) -v pg="$pg" \
        -v wrk="$(awk '{ print $1 + $2 }' "$out.time")" -v hz="$CLK_TCK" -v n="$NCPU" -v t0="$t0" -v t1="$t1" \
        'BEGIN { o = (b - h - wrk * hz) / (hz * n * (t1 - t0)) * 100; if (o < 0) o = 0; printf "%.0f%s", o, pg ? " (incl. PostgreSQL)" : "" }')"
}
run_workloads

# ---------------------------------------------------------------- report
BAD=0
row() { printf '| %s ' "$@"; echo '|'; }
rev="$(git rev-parse --short HEAD 2>/dev/null || echo "no git")"
[ -n "$(git status --porcelain -- Sources Plugins 2>/dev/null || true)" ] && rev="$rev + uncommitted changes"
{
    echo "## Read rules: owner-filtered list vs admin list — $STAMP"
    echo
    echo "- command: \`$(env | grep -E '^BENCH_[A-Z_]+=' | grep -v -e '^BENCH_WRK_DIR=' | sort | tr '\n' ' ' || true)bash bench/policy.sh\`"
    echo "- machine: $NCPU cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)"
    echo "- pylon-host $("$PYLON_BIN" --version 2>&1 | head -n 1 || true) (tree $rev, binary built $(date -u -r "$PYLON_BIN" +%FT%TZ)), not --dev; $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2 || true)$(want pylon-pg && echo "; PostgreSQL $(psql_at "$PG_URL" 'SHOW server_version' 2>/dev/null || echo '?') (scripts/pg-server.sh, fsync on)")"
    echo "- table: $ROWS rows, owners u0..u$(( OWNERS - 1 )) round robin ($(( ROWS / OWNERS )) rows each), index on $([ "$INDEX" = owner ] && echo "[ownerId]" || echo "[ownerId, id]"); the user is $USER_ID"
    echo "- load: wrk -t$THREADS -c$CONNS (per-row: -c$PER_ROW_CONNS --timeout 30s), $DURATION measured after a $WARMUP warm-up, loopback, host and wrk on the same machine; \`GET /api/entities/E?limit=$PAGE\`"
    echo
    row server workload "req/s" "p50 ms" "p99 ms" "host CPU µs/req" "admin req/s ÷ this" "other load %" "non-2xx / socket errors"
    row --- --- ---: ---: ---: ---: ---: ---: ---:
    for s in "${SERVERS[@]}"; do
        for w in "${WORKLOADS[@]}"; do
            bad=0; for p in warm run; do bad=$(( bad + ${R[$s.$w.$p.bad]:-0} )); done
            BAD=$(( BAD + bad ))
            row "${LABEL[$s]}" "${WNAME[$w]}" "$(LC_ALL=C printf '%.0f' "${R[$s.$w.run.rps]}")$( (( bad )) && echo ' ⚠')" \
                "${R[$s.$w.run.p50_ms]}" "${R[$s.$w.run.p99_ms]}" "${R[$s.$w.run.cpu_us]}" \
                "$(LC_ALL=C awk -v a="${R[$s.admin.run.rps]}" -v b="${R[$s.$w.run.rps]}" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }')" \
                "${R[$s.$w.run.other_pct]}" "$bad"
        done
    done
    echo
    echo "Goal (issue 16): the user's list (rule in SQL) within 2× of the admin list, i.e. \"admin req/s ÷ this\" ≤ 2.00×."
} >"$OUT_MD"
echo
cat "$OUT_MD"
log "table written to $OUT_MD (raw wrk output: $OUT_LOG)"
if (( BAD > 0 )); then
    echo "!!! INVALID RUN: some requests answered outside 2xx or failed on the socket (see the log)" >&2
    exit 3
fi
