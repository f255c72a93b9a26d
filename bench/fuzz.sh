#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of the host's three parsers of hostile input:
#   http-head  the HTTP front: NIO's decoder, CodecGuard and HTTPFront on an EmbeddedChannel (Fuzz/targets/HTTPHead.swift)
#   json       JSONParser.parse and .validate (must agree) and the JSONWriter round trip
#   policy     PolicyExpression: parse any text; evaluate what parses (see Fuzz/targets/*.swift)
# Not part of `make test` or CI: run it by hand and record the runs in bench/RESULTS.md.
#
#   bash bench/fuzz.sh [http-head|json|policy ...]      (default: all three, one after the other)
#   FUZZ_SECONDS=60   how long each target runs
#   FUZZ_OUT=.build/fuzz   binaries, the growing corpora, logs, and crashes/<target>/
#
# Needs the release build first (`make build`): the host's internal types are reached by
# compiling its modules (Sources/PylonJSON, PylonCore, … PylonHost) in place (no copies),
# in dependency order, instrumented with -sanitize=fuzzer,address and -enable-testing, with
# the compiler flags SwiftPM used for PylonHost (read from .build/release.yaml); each target
# is a thin `@testable import` file linked with those modules and the release build's
# dependency objects. Seeds: Fuzz/seeds/<target>/
# (committed, small); dictionaries: Fuzz/dicts/. Exits 1 when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-$ROOT/.build/fuzz}
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(http-head json policy)
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Fuzz || echo "+changes")
STARTED=$(date -u +%FT%TZ)
YAML=$ROOT/.build/release.yaml
[ -f "$YAML" ] || { echo "fuzz.sh: no release build; run 'make build' first" >&2; exit 2; }
mkdir -p "$OUT/module" "$OUT/bin" "$OUT/logs"

# SwiftPM's flags for PylonHost (search paths, C module maps, defines) and the objects
# pylon-host links, minus the host modules' own and the executable's.
python3 - "$YAML" "$OUT" <<'PY'
import json, sys
yaml, out = sys.argv[1], sys.argv[2]
lines = open(yaml).read().split("\n")
def args_of(prefix):
    for k, line in enumerate(lines):
        if line.startswith('  "' + prefix) and line.rstrip().endswith('":'):
            for l in lines[k + 1:k + 12]:
                if l.strip().startswith("args:"):
                    return json.loads(l.strip()[len("args:"):])
    sys.exit("fuzz.sh: %s not found in %s" % (prefix, yaml))
args = args_of("C.PylonHost-")
keep, i = [], 0
while i < len(args):
    a = args[i]
    if a in ("-I", "-Xcc", "-target", "-swift-version", "-module-cache-path"):
        keep += [a, args[i + 1]]; i += 2; continue
    if a.startswith("-D"):
        keep.append(a)
    i += 1
open(out + "/module/flags", "w").write("\n".join(keep) + "\n")
link = args_of("C.pylon-host-")
objects = []
for a in link:
    if a.startswith("@") and a.endswith("LinkFileList"):
        objects += [o.strip().strip("'\"") for o in open(a[1:]).read().split("\n") if o.strip()]
    elif a.endswith(".o"):
        objects.append(a)
host = ("PylonJSON", "PylonCore", "PylonPlugins", "PylonData", "PylonServices", "PylonEdge", "PylonHost",
        "pylon_host", "pylon-host")
objects = [o for o in objects if not any("/%s.build/" % m in o for m in host)]
open(out + "/module/objects", "w").write("\n".join('"%s"' % o for o in objects) + "\n")  # some names have spaces
PY
mapfile -t FLAGS < "$OUT/module/flags"

# The instrumented host modules, in dependency order, each rebuilt when one of its sources
# or a module before it is newer than its object. `-I $OUT/module` first: each imports the
# instrumented modules before it, not the release build's. `-package-name main` is what
# SwiftPM gives the root package, so `package` declarations are visible across them.
HOST_MODULES=(PylonJSON PylonCore PylonPlugins PylonData PylonServices PylonEdge PylonHost)
MODULE_OBJS=()
previous=""
for m in "${HOST_MODULES[@]}"; do
    obj=$OUT/module/$m.o
    if [ ! -f "$obj" ] || { [ -n "$previous" ] && [ "$previous" -nt "$obj" ]; } \
        || [ -n "$(find "Sources/$m" -name '*.swift' -newer "$obj" | head -1)" ]; then
        echo "fuzz.sh: compiling Sources/$m with -sanitize=fuzzer,address"
        find "Sources/$m" -name '*.swift' | sort > "$OUT/module/$m-sources"
        swiftc -module-name "$m" -package-name main -parse-as-library -O -wmo -enable-testing \
            -sanitize=fuzzer,address -suppress-warnings \
            -emit-module -emit-module-path "$OUT/module/$m.swiftmodule" -c @"$OUT/module/$m-sources" \
            -o "$obj" -I "$OUT/module" "${FLAGS[@]}"
    fi
    MODULE_OBJS+=("$obj")
    previous=$obj
done
MODULE_OBJ=$previous

declare -A SOURCE=([http-head]=HTTPHead [json]=JSON [policy]=Policy)
declare -A MAXLEN=([http-head]=9000 [json]=4096 [policy]=1024)
for t in "${TARGETS[@]}"; do
    [ -n "${SOURCE[$t]:-}" ] || { echo "fuzz.sh: unknown target $t (http-head, json, policy)" >&2; exit 2; }
    src=Fuzz/targets/${SOURCE[$t]}.swift
    if [ ! -x "$OUT/bin/$t" ] || [ "$src" -nt "$OUT/bin/$t" ] || [ "$MODULE_OBJ" -nt "$OUT/bin/$t" ]; then
        echo "fuzz.sh: linking $t"
        swiftc -module-name "Fuzz${SOURCE[$t]}" -parse-as-library -O -sanitize=fuzzer,address -use-ld=lld -I "$OUT/module" \
            "${FLAGS[@]}" "$src" "${MODULE_OBJS[@]}" @"$OUT/module/objects" -o "$OUT/bin/$t"
    fi
done

found=0
SUMMARY=""
for t in "${TARGETS[@]}"; do
    corpus=$OUT/corpus/$t
    crashes=$OUT/crashes/$t
    mkdir -p "$corpus" "$crashes"
    log=$OUT/logs/$t.log
    echo "fuzz.sh: $t for ${SECONDS_EACH}s (log $log)"
    touch "$log.start"
    set +e
    # New inputs go to the working corpus; the committed seeds are only read. Swift's own
    # crash backtracer is off so that libFuzzer reports and saves a crash at once.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$OUT/bin/$t" "$corpus" "Fuzz/seeds/$t" \
        -dict="Fuzz/dicts/$t.dict" -max_len="${MAXLEN[$t]}" -max_total_time="$SECONDS_EACH" \
        -timeout=10 -rss_limit_mb=2048 -use_value_profile=1 -print_final_stats=1 \
        -artifact_prefix="$crashes/" > "$log" 2>&1
    rc=$?
    set -e
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
    n=$(find "$crashes" -type f -newer "$log.start" | wc -l)
    line="$t: exit $rc, ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?} features, corpus $(find "$corpus" -type f | wc -l) inputs, $n new finding(s) in $crashes"
    SUMMARY+="$line"$'\n'
    if [ "$rc" -ne 0 ] || [ "$n" -gt 0 ]; then
        found=1
        grep -E '^==[0-9]+==ERROR|Fatal error|ALARM|SUMMARY|Test unit written' "$log" | head -6 || true
    fi
done
echo
echo "fuzz.sh summary (started $STARTED, ended $(date -u +%FT%TZ), sources at $COMMIT, ${SECONDS_EACH}s each):"
printf '%s' "$SUMMARY"
exit $found
