#!/usr/bin/env bash
# Installs distillery from the build folder into a temporary prefix, then builds and runs
# examples/ against the installed CMake package, as another project would.
set -euo pipefail
build=$1 source=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$source/examples" -B "$prefix/example-build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/example-build" -j2 >/dev/null
"$prefix/example-build/distill_minimal"
