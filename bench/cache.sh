#!/usr/bin/env bash
# CacheRESP (pylon-host's cache plugin) against redis-server, measured in the same run on
# loopback with the same load generator (redis-benchmark) and the same command line.
#
#   bash bench/cache.sh
#
# Settings (environment):
#   BENCH_REQUESTS   requests per test (redis-benchmark -n; default 200000)
#   BENCH_CLIENTS    connections (-c; default 50)
#   BENCH_PIPELINES  pipeline depths to run (-P; default "1 16")
#   BENCH_TESTS      redis-benchmark tests (-t; default set,get,incr,lpush,lpop,hset)
#   BENCH_ROUNDS     rounds per pipeline depth; each round runs CacheRESP then redis-server
#                    (then the other order) and the median per test is reported (default 3)
#   BENCH_KEEP_TMP   1 = keep the temp dir (server logs, raw redis-benchmark output)
#
# Prints a markdown table (ops/s of both and the ratio CacheRESP / redis per line, plus
# each server's CPU time per operation, which the other load on a shared machine disturbs
# less than ops/s) and writes it to bench/out/cache-<timestamp>.md with the raw output
# beside it in .log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQUESTS="${BENCH_REQUESTS:-200000}"
CLIENTS="${BENCH_CLIENTS:-50}"
PIPELINES="${BENCH_PIPELINES:-1 16}"
TESTS="${BENCH_TESTS:-set,get,incr,lpush,lpop,hset}"
ROUNDS="${BENCH_ROUNDS:-3}"

BENCH_TAG=cache
ONLY=pylon
# shellcheck source=lib/servers.sh
. bench/lib/servers.sh

command -v redis-benchmark >/dev/null && command -v redis-server >/dev/null || {
    log "installing redis-server and redis-tools (redis-benchmark)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools
}
if [ ! -x .build/release/pylon-host ] || [ ! -f plugins/libPylonCacheRESP.so ]; then
    log "pylon-host or plugins/libPylonCacheRESP.so missing: make build"
    make build
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; die "nothing answers PING on port $1"; }

TMP="$(mktemp -d /tmp/pylon-bench-cache-XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${BENCH_KEEP_TMP:-0}" = 1 ] && log "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

CACHE_PORT="$(free_port)"
HTTP_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
cat > "$TMP/manifest.json" <<JSON
{"manifest_version": 1, "name": "cache-bench", "version": "0.1.0", "entities": [], "routes": [], "policies": [],
 "plugins": {"cache": {"use": "resp", "port": $CACHE_PORT}}}
JSON
# Load comes from one address: the per-address request limit is set out of reach.
PYLON_RATE_LIMIT_MAX="${PYLON_RATE_LIMIT_MAX:-1000000000}" \
    .build/release/pylon-host serve --plugins plugins --manifest "$TMP/manifest.json" --db "$TMP/app.db" \
    --port "$HTTP_PORT" --no-compat-ports > "$TMP/pylon.log" 2>&1 &
PIDS+=($!)
CACHE_PID=$!
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" \
    --logfile "$TMP/redis.log" --daemonize no &
PIDS+=($!)
REDIS_PID=$!
wait_port "$CACHE_PORT"
wait_port "$REDIS_PORT"
log "CacheRESP on $CACHE_PORT (pylon-host $(git rev-parse --short HEAD 2>/dev/null || echo '?')), $(redis-server --version | cut -d' ' -f1-3) on $REDIS_PORT"

mkdir -p bench/out
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="bench/out/cache-$STAMP.md"
RAW="bench/out/cache-$STAMP.log"
: > "$RAW"

# CPU time (user + system) of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

# run PORT PID P -> "TEST ops cpu_us_per_op" lines, one redis-benchmark per test
run() {
    local port=$1 pid=$2 p=$3 t before after ops
    for t in ${TESTS//,/ }; do
        before="$(cpu_ticks "$pid")"
        ops="$(redis-benchmark -h 127.0.0.1 -p "$port" -q -t "$t" -n "$REQUESTS" -c "$CLIENTS" -P "$p" 2>/dev/null \
            | tr '\r' '\n' | tee -a "$RAW" | awk -F': ' '/requests per second/ { split($2, a, " "); print a[1] }' | tail -1)"
        after="$(cpu_ticks "$pid")"
        awk -v t="$t" -v o="$ops" -v d="$(( (after - before) * TICK_US ))" -v n="$REQUESTS" \
            'BEGIN { printf "%s %s %.3f\n", toupper(t), o, d / n }'
    done
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

{
    echo "| -P | test | CacheRESP ops/s | redis-server ops/s | ratio | CacheRESP CPU µs/op | redis CPU µs/op |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
} > "$OUT"
for p in $PIPELINES; do
    : > "$TMP/cache-$p" ; : > "$TMP/redis-$p"
    for r in $(seq "$ROUNDS"); do
        # Alternate who goes first, so neither always runs on a warmer (or busier) machine.
        if (( r % 2 )); then
            run "$CACHE_PORT" "$CACHE_PID" "$p" >> "$TMP/cache-$p"; run "$REDIS_PORT" "$REDIS_PID" "$p" >> "$TMP/redis-$p"
        else
            run "$REDIS_PORT" "$REDIS_PID" "$p" >> "$TMP/redis-$p"; run "$CACHE_PORT" "$CACHE_PID" "$p" >> "$TMP/cache-$p"
        fi
        log "-P $p round $r/$ROUNDS done"
    done
    for t in $(awk '{ print $1 }' "$TMP/cache-$p" | awk '!seen[$0]++'); do
        c="$(awk -v t="$t" '$1 == t { print $2 }' "$TMP/cache-$p" | median)"
        r="$(awk -v t="$t" '$1 == t { print $2 }' "$TMP/redis-$p" | median)"
        ratio="$(awk -v c="$c" -v r="$r" 'BEGIN { printf "%.2f", (r > 0 ? c / r : 0) }')"
        cc="$(awk -v t="$t" '$1 == t { print $3 }' "$TMP/cache-$p" | median)"
        rc="$(awk -v t="$t" '$1 == t { print $3 }' "$TMP/redis-$p" | median)"
        printf '| %s | %s | %.0f | %.0f | %s× | %.2f | %.2f |\n' "$p" "$t" "$c" "$r" "$ratio" "$cc" "$rc" >> "$OUT"
    done
done
echo
cat "$OUT"
log "written to $OUT (raw output: $RAW)"
