#!/usr/bin/env bash
# Installs the system packages the build and tests need, only when missing.
# Swift itself comes with the machine image (Swift 6.x toolchain on PATH).
set -euo pipefail
need=()
for pkg in libsqlite3-dev libcurl4-openssl-dev pkg-config sqlite3 gcc libc6-dev make python3 openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
command -v swift >/dev/null || { echo "swift is not on PATH; install a Swift 6 toolchain" >&2; exit 1; }
