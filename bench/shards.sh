#!/usr/bin/env bash
# Shards under load: SHARDS shards of the Rust tag sim (examples/shard-tag) at HZ with
# ~PAD-byte snapshots, SUBS subscribers each on the shard WebSocket (the ShardWS plugin;
# bench/lib/shards_load.c, one epoll thread, compiled here), for DURATION seconds, on
# loopback.
#
#   bash bench/shards.sh
#
# Settings (environment): BENCH_SHARDS (20), BENCH_SUBS (100), BENCH_HZ (20), BENCH_PAD
# (1000 bytes of filler per snapshot), BENCH_DURATION (20 s), BENCH_KEEP_TMP (1 = keep).
#
# Reports: frames received against shards x subs x hz x duration; each frame's lateness
# against its shard's ideal schedule (tick-start jitter plus delivery to the client, as one
# number: p50, p99, p99.9, share within 5 and 10 ms); the share of ticks whose first frame
# came within 5 ms (a lower bound on ticks started within 5 ms); the share of shard turns
# the host started within 5 ms of schedule while the reader ran (its histogram
# pylon_shard_tick_lateness_seconds); the reader's own CPU; the host's CPU (% of one core)
# and peak RSS.
# The load generator runs on the same 2 cores as the host.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHARDS="${BENCH_SHARDS:-20}"; SUBS="${BENCH_SUBS:-100}"; HZ="${BENCH_HZ:-20}"; PAD="${BENCH_PAD:-1000}"; DURATION="${BENCH_DURATION:-20}"
BENCH_TAG=shards
ONLY=pylon
# shellcheck source=lib/servers.sh
. bench/lib/servers.sh
[ -x .build/release/pylon-host ] && [ -f plugins/libPylonStoreSQLite.so ] && [ -f plugins/libPylonShardWS.so ] || die "run make build first"
bench_tmp shards
trap bench_cleanup EXIT
raise_fd_limit $(( SHARDS * SUBS ))
mkdir -p "$TMP/plugins"
make -s -C examples/shard-tag BUILD_DIR="$TMP/plugins" >/dev/null
ln -s "$ROOT/plugins/libPylonStoreSQLite.so" "$ROOT/plugins/libPylonShardWS.so" "$TMP/plugins/"
cc -O2 -std=c11 -o "$TMP/shards_load" bench/lib/shards_load.c || die "could not compile bench/lib/shards_load.c"
echo '{"manifest_version": 1, "name": "shards-bench", "version": "0.1.0", "entities": [], "routes": [], "policies": []}' > "$TMP/manifest.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"; WS_PORT="$(free_port)"
TOKEN=bench-admin
PYLON_ADMIN_TOKEN=$TOKEN PYLON_MAX_CONNECTIONS_PER_IP=1000000 PYLON_RATE_LIMIT_MAX=100000000 PYLON_SHARD_WS_PORT=$WS_PORT \
    .build/release/pylon-host serve --plugins "$TMP/plugins" --manifest "$TMP/manifest.json" --db "$TMP/app.db" \
    --port "$PORT" --no-compat-ports >"$TMP/host.log" 2>&1 &
HOST=$!
PIDS+=("$HOST")
wait_health pylon-host "$HOST" "http://127.0.0.1:$PORT/health" "$TMP/host.log"
for s in $(seq 0 $(( SHARDS - 1 ))); do
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"sim\": \"tag\", \"id\": \"b$s\", \"tick_rate_hz\": $HZ, \"max_subscribers\": $(( SUBS + 10 )), \"config\": {\"pad\": $PAD}}" \
        "http://127.0.0.1:$PORT/api/shards" || die "could not create shard b$s"
done
ticks() { awk '{print $14 + $15}' "/proc/$HOST/stat"; }
# Turns started within 5 ms of schedule, and all turns: the host's tick-lateness histogram
# (pylon_shard_tick_lateness_seconds) read in the Prometheus format.
tick_starts() {
    curl -s -H "Authorization: Bearer $TOKEN" -H 'Accept: text/plain' "http://127.0.0.1:$PORT/metrics" | python3 -c '
import sys
within = total = 0
for line in sys.stdin:
    if line.startswith("pylon_shard_tick_lateness_seconds_bucket") and "le=\"0.005\"" in line: within = float(line.split()[-1])
    elif line.startswith("pylon_shard_tick_lateness_seconds_count"): total = float(line.split()[-1])
print(int(within), int(total))'
}
s0="$(tick_starts)"
c0="$(ticks)"; t0="$(date +%s.%N)"
RESULT="$("$TMP/shards_load" "$WS_PORT" "$TOKEN" "$SHARDS" "$SUBS" "$HZ" "$DURATION")"
c1="$(ticks)"; t1="$(date +%s.%N)"
s1="$(tick_starts)"
STARTS="$(python3 -c "a, b = map(int, '$s0'.split()); c, d = map(int, '$s1'.split()); n = d - b; print(f'{n} turns, {100 * (c - a) / n:.3f}% started within 5 ms of schedule' if n else 'no turns')")"
CPU="$(python3 -c "print(round(100 * ($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0), 1))")"
RSS="$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$HOST/status")"
LATE="$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics" | python3 -c 'import json,sys; c=json.load(sys.stdin)["counters"]; print(c.get("shard_ticks_total", 0), c.get("shard_ticks_late_total", 0), c.get("shard_frames_dropped_total", 0))')"
echo "shards=$SHARDS subs=$SUBS hz=$HZ pad=$PAD duration=${DURATION}s load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "result: $RESULT"
echo "tick starts (host histogram, while the reader ran): $STARTS"
echo "host: cpu ${CPU}% of one core (whole run incl. connect), peak RSS ${RSS} MB; shard_ticks_total, shard_ticks_late_total, shard_frames_dropped_total: $LATE"
