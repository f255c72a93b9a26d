#!/usr/bin/env bash
# The minimal edge build: the host and exactly one store plugin, nothing else.
#
#   scripts/edge-build.sh [executor-c|d1] [OUT_DIR] [--prebuilt]
#
# OUT_DIR (default: edge) receives
#   pylon-host            the release host, stripped of debug symbols
#   plugins/<one>.so      libpylon_executor_c.so (C99 over libsqlite3, default) or libPylonStoreD1.so
# Every other capability (functions, cache, auth plugins, shards) is served by the host's
# stubs: 501 CAPABILITY_UNAVAILABLE naming the capability. Run it with
#   OUT_DIR/pylon-host serve --plugins OUT_DIR/plugins --manifest app.json
# and select the store in the manifest: {"plugins": {"store": {"use": "executor_c"}}} or "d1".
# --prebuilt skips `swift build` and uses the existing .build/release/pylon-host (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
store="${1:-executor-c}"
out="${2:-edge}"
prebuilt="${3:-}"
SWIFT="${SWIFT:-swift}"
case "$store" in
  executor-c|d1) ;;
  *) echo "unknown store '$store': use executor-c or d1" >&2; exit 2 ;;
esac
if [ "$prebuilt" != "--prebuilt" ]; then
  "$SWIFT" build -c release --product pylon-host
  if [ "$store" = d1 ]; then "$SWIFT" build -c release --product PylonStoreD1; fi
fi
rm -rf "$out"
mkdir -p "$out/plugins"
if command -v strip >/dev/null; then
  strip -o "$out/pylon-host" .build/release/pylon-host
else
  cp .build/release/pylon-host "$out/pylon-host"
fi
if [ "$store" = d1 ]; then
  plugin=.build/release/libPylonStoreD1.so
else
  build_dir="$(mktemp -d)"
  trap 'rm -rf "$build_dir"' EXIT
  make -s -C examples/executor-c BUILD_DIR="$build_dir"
  plugin="$build_dir/libpylon_executor_c.so"
fi
if command -v strip >/dev/null; then
  strip -o "$out/plugins/$(basename "$plugin")" "$plugin"
else
  cp "$plugin" "$out/plugins/"
fi
echo "edge build in $out:"
ls -l "$out/pylon-host" "$out/plugins"
