#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and benchmarks, on 127.0.0.1 only.
#   scripts/pg-server.sh start DIR PORT [fast]   initdb (first time) + start; prints the URL
#   scripts/pg-server.sh stop DIR                fast shutdown
#   scripts/pg-server.sh kill DIR                SIGKILL the postmaster (a crash)
# PostgreSQL refuses to run as root, so as root the server runs as the system user
# "pylonpg" (created on first use). "fast" turns fsync off (writes still reach the OS,
# so killing the server loses nothing; only an OS crash could).
set -euo pipefail
cmd=${1:?start|stop|kill}
dir=${2:?data folder}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found: run scripts/install-deps.sh (Debian postgresql)" >&2; exit 2; }
user=$(id -un)
# Close every inherited descriptor but stdio: the server would otherwise keep the caller's
# pipes (or a test harness's child-exit socket) open for as long as it runs.
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  [ "$n" -gt 2 ] 2>/dev/null && eval "exec $n>&-" 2>/dev/null || true
done
as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u pylonpg -- "$@"; else "$@"; fi
}
case "$cmd" in
start)
  port=${3:?port}
  fast=${4:-}
  if [ "$(id -u)" = 0 ]; then
    id pylonpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin pylonpg
    user=pylonpg
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown pylonpg "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200"
  [ "$fast" = fast ] && opts="$opts -c fsync=off -c full_page_writes=off"
  as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgres://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  [ -f "$dir/data/postmaster.pid" ] && as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
  ;;
kill)
  if [ -f "$dir/data/postmaster.pid" ]; then
    pid=$(head -1 "$dir/data/postmaster.pid")
    # Every server process at once, as a machine crash would: children first, then the
    # postmaster, then wait until none is left holding the shared memory.
    pkill -9 -P "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      pgrep -P "$pid" >/dev/null 2>&1 || kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  ;;
*) echo "usage: $0 start DIR PORT [fast] | stop DIR | kill DIR" >&2; exit 2 ;;
esac
