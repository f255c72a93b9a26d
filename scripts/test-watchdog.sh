#!/usr/bin/env bash
# Runs `swift test ARGS…` with a time budget, so a hung test fails the run with a report
# instead of holding CI until its own limit.
#   PYLON_TEST_BUDGET=SECONDS scripts/test-watchdog.sh --skip-build [--filter …]
# On time-out it prints, after the test output: the tests that started and never ended,
# every thread's stack in the test process (gdb, when installed), and the processes the
# tests left running; then it ends every process below it and exits 124.
set -uo pipefail
budget=${PYLON_TEST_BUDGET:-1500}
swift_bin=${SWIFT:-swift}
log=$(mktemp -t pylon-test-XXXXXX.log)
trap 'rm -f "$log"' EXIT

"$swift_bin" test "$@" > >(tee "$log") 2>&1 &
leader=$!
deadline=$((SECONDS + budget))
while kill -0 "$leader" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 2; done

if ! kill -0 "$leader" 2>/dev/null; then
  wait "$leader"
  status=$?
  sleep 0.2 # let tee write the last lines
  exit "$status"
fi

# Every process below the leader (children may have sessions or groups of their own).
tree() {
  local pids="$1" all="$1" next
  while [ -n "$pids" ]; do
    next=$(for p in $pids; do pgrep -P "$p"; done | tr '\n' ' ')
    all="$all $next"
    pids=$(echo "$next" | xargs)
  done
  echo "$all"
}

# Freeze every process of the run first: the report is about this moment, and no more test
# output interleaves with it.
procs=$(tree "$leader" | xargs)
sleep 1 # let tee take what is in the pipe; it stays running, to write the log
for p in $procs; do [ "$(cat /proc/$p/comm 2>/dev/null)" = tee ] || kill -STOP "$p" 2>/dev/null; done
sleep 0.5
echo
echo "=== test-watchdog: swift test $* did not finish within ${budget} s ==="
echo "--- tests that started and did not end:"
# Swift Testing prints `◇ Test "NAME" started.` and `✔/✘ Test "NAME" passed/failed …`.
python3 - "$log" <<'PY'
import re, sys
started, ended = [], set()
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    m = re.search(r'◇ Test "(.*)" started\.', line)
    if m:
        started.append(m.group(1))
        continue
    m = re.search(r'[✔✘] Test "(.*)" (?:with \d+ test cases? )?(?:passed|failed)', line)
    if m:
        ended.add(m.group(1))
left = [t for t in dict.fromkeys(started) if t not in ended]
print("\n".join("  " + t for t in left) if left else "  (none: the hang is outside a test)")
PY
tests_pid=$(for p in $procs; do tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -q 'PackageTests\.xctest' && echo "$p"; done | head -1)
if [ -n "$tests_pid" ] && command -v gdb >/dev/null 2>&1; then
  echo "--- stacks of the test process $tests_pid:"
  timeout 60 gdb -p "$tests_pid" -batch -nx -ex 'set pagination off' -ex 'thread apply all bt 25' 2>/dev/null \
    | grep -E '^(Thread|#)' | head -600
fi
echo "--- processes of this run still alive:"
ps -o pid,ppid,etimes,args -p "${procs// /,}" 2>/dev/null | cut -c1-200
kill -KILL $(tree "$leader") 2>/dev/null
exit 124
