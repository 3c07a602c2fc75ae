#!/usr/bin/env bash
# Builds and runs the demo on its bundled defaults:
#  1. examples/01_operator_classes — every operator class on one seeded input (L = 256):
#     a markdown table of measurements and verdicts, matrices as .npy and PNG in demo_out/classes/;
#  2. mixlens-attn on the bundled Mamba checkpoint (tests/data/mamba_demo): logits, per-layer
#     hidden attention, raw attention and rollout in demo_out/attention/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target 01_operator_classes mixlens-attn
mkdir -p demo_out
./build/examples/01_operator_classes --out demo_out/classes --json demo_out/classes.json
echo
./build/tools/mixlens-attn --model tests/data/mamba_demo \
  --tokens-file tests/data/reference/mamba_demo/tokens_0.npy --out demo_out/attention --self-test
