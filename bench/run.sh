#!/usr/bin/env bash
# `make bench`: makes sure the build (CLI + micro-benchmarks) is up to date, then runs the driver,
# which writes docs/results/bench.json and docs/BENCH.md. Arguments go to bench/run.py
# (--quick, --repeats N, --clean-build, ...; see /usr/bin/python3 bench/run.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
JOBS="${JOBS:-2}"
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j"$JOBS" --target distillery_cli distillery_microbench
# Debian's python3-torch: the same torch as libtorch-dev (a python3 earlier on PATH may lack torch).
PYTHON="${PYTHON:-/usr/bin/python3}"
"$PYTHON" -c "import torch" 2>/dev/null || { echo "bench: $PYTHON cannot import torch (apt install python3-torch)" >&2; exit 2; }
export DISTILLERY_BENCH_COMMAND="${DISTILLERY_BENCH_COMMAND:-make bench${*:+ BENCH_ARGS=\"$*\"}}"
exec "$PYTHON" bench/run.py --build "$BUILD" "$@"
