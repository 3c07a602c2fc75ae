#!/usr/bin/env bash
# Builds everything (host tests, examples, CUDA targets when nvcc is present) and
# runs the CPU test set. GPU tests run with: ctest --test-dir build -L gpu
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMIXLENS_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build -L cpu --output-on-failure -j"$(nproc)"
