#!/usr/bin/env bash
# Chat message echo latency between two headless Chromium browsers on examples/chat (SQLite
# store): N messages (BENCH_MESSAGES, 1000) sent one after another by one browser through
# the page's composer (the sendMessage mutation), timed until the other browser's page shows
# each (its replica, fed by the realtime WebSocket). bench/lib/chat_echo.py drives them.
#
#   bash bench/chat-echo.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${BENCH_MESSAGES:-1000}"
[ -x .build/release/pylon-host ] && [ -f plugins/libPylonFnBun.so ] || { echo "run make build first" >&2; exit 1; }
TMP="$(mktemp -d /tmp/pylon-chat-echo-XXXXXX)"
cleanup() { [ -n "${HOST:-}" ] && kill "$HOST" 2>/dev/null; wait 2>/dev/null || true; [ -n "${BENCH_KEEP_TMP:-}" ] || rm -rf "$TMP"; }
trap cleanup EXIT
cp -r examples/chat/pylon.manifest.json examples/chat/functions examples/chat/web "$TMP/"
bun build examples/chat/src/app.ts --outfile "$TMP/web/app.js" --target browser --format esm >/dev/null
mkdir -p "$TMP/data"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(cd "$TMP" && PYLON_CACHE_PORT=0 PYLON_RATE_LIMIT_MAX=100000000 exec "$ROOT/.build/release/pylon-host" serve --plugins "$ROOT/plugins" \
    --manifest pylon.manifest.json --port "$PORT" --no-compat-ports --dev >"$TMP/host.log" 2>&1) &
HOST=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
echo "messages=$N load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "result: $(python3 bench/lib/chat_echo.py "http://127.0.0.1:$PORT" "$N")"
