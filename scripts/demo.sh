#!/usr/bin/env bash
# Builds and runs the quickstart demo on its bundled default input.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target 00_quickstart
./build/examples/00_quickstart "$@"
