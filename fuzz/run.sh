#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS, or until it has tried FUZZ_RUNS inputs if that comes
# first, on a scratch copy of its seed corpus (the committed seeds are never modified).
# FUZZ_TARGETS picks targets (default: idx config checkpoint). Exits non-zero if any target finds a crash; the crashing input is kept in
# ARTIFACTS/ to become a regression seed. With RESULTS_JSON, also writes the figures for
# docs/RESULTS.md (executions and crashes per target).
# Usage: fuzz/run.sh BUILD_DIR SECONDS [RESULTS_JSON]
set -uo pipefail
build=$1 seconds=$2 results=${3:-}
runs_limit=${FUZZ_RUNS:-0}
targets=${FUZZ_TARGETS:-idx config checkpoint}
[ "$runs_limit" -gt 0 ] 2>/dev/null && run_flag=(-runs="$runs_limit") || run_flag=()
source=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
# LibTorch is not instrumented and keeps allocations alive until exit: leak reports would be its own.
# Its unpickler trusts a length field of a damaged checkpoint and may allocate up to 4 GiB before it
# fails cleanly; the malloc limit lets that allocation through instead of calling it a crash.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
failures=0 rows="" started=$SECONDS
for target in $targets; do
  target_start=$SECONDS
  corpus=$work/$target
  mkdir -p "$corpus"
  [ -d "$source/fuzz/corpus/$target" ] && cp "$source/fuzz/corpus/$target"/* "$corpus/"
  DISTILLERY_FUZZ_SEED_DIR=$corpus "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=6144 -malloc_limit_mb=6144 \
    -max_len=65536 -artifact_prefix="$artifacts/$target-" -print_final_stats=1 "${run_flag[@]}" "$corpus" >"$work/$target.log" 2>&1
  code=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log" | tail -1)
  crashes=$(ls "$artifacts" 2>/dev/null | grep -c "^$target-" || true)
  took=$((SECONDS - target_start))
  if [ "$code" != 0 ]; then
    failures=$((failures + 1))
    echo "FAIL fuzz_$target (exit $code); last lines:"; tail -30 "$work/$target.log" | sed 's/^/  | /'
  else
    echo "ok   fuzz_$target: ${runs:-?} inputs in ${took} s, corpus $(ls "$corpus" | wc -l) files"
  fi
  rows+="${rows:+,}{\"id\":\"fuzz-$target-runs\",\"what\":\"fuzz_$target: inputs tried in $took s\",\"paper\":null,\"ours\":${runs:-0},\"unit\":\"inputs\"}"
  rows+=",{\"id\":\"fuzz-$target-crashes\",\"what\":\"fuzz_$target: crashing inputs found in this run\",\"paper\":null,\"ours\":$([ "$code" = 0 ] && echo 0 || echo 1),\"unit\":\"crashes\"}"
done
if [ -n "$results" ]; then
  cat > "$results" <<JSON
{
  "experiment": "fuzz",
  "title": "Fuzzing the readers of untrusted files (libFuzzer, ASan + UBSan)",
  "profile": "up to ${seconds} s$([ "$runs_limit" -gt 0 ] 2>/dev/null && echo " or $runs_limit inputs") per target",
  "command": "$([ "$runs_limit" -gt 0 ] 2>/dev/null && echo "FUZZ_RUNS=$runs_limit ")bash fuzz/run.sh $build $seconds $results",
  "git_revision": "$(git -C "$source" rev-parse --short HEAD 2>/dev/null)",
  "machine": {"cpu": "$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed "s/^ //")", "cores": $(nproc)},
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "seconds": $((SECONDS - started)),
  "rows": [$rows]
}
JSON
  echo "wrote $results"
fi
exit $(( failures > 0 ))
