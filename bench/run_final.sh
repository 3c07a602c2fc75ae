#!/usr/bin/env bash
# One GPU run within a fixed time budget, from prebuilt binaries:
#   every GPU test binary side by side with the memory checker on each
#   (MIXLENS_GPU_TEST_SMALL=1); the Google Benchmark suite of this build and of
#   a reference build (old/) alternately, in the same run; the Mamba model
#   benchmark of both; 01_operator_classes --device cuda; mixlens-attn --device
#   cuda on the bundled checkpoint with its self-test and reference logits.
#
#   bench/run_final.sh <dir with bin/, lib/ and optionally old/> <output dir> [budget seconds, default 560] [steps]
#
# steps: a comma-separated subset of tests,bench,mamba,classes,attn (default: all), so
# that one budget can be split over two runs. MIXLENS_BENCH_FILTER replaces the
# Google Benchmark filter of the bench step, MIXLENS_BENCH_ROUNDS (default 2) the
# number of alternating rounds of the bench and mamba steps.
#
# bin/ holds the GPU test binaries (*_test), mixlens_gpu_bench, mixlens_mamba_bench,
# 01_operator_classes, mixlens-attn and mixlens-attn-cuda (which mixlens-attn hands
# --device cuda runs to) built for sm_90; old/ the two benchmark
# binaries of the reference build, named *_old; lib/ the shared libraries the build
# machine linked them against (Boost.Test, Google Benchmark, FFTW). CUDA's
# libraries come from the GPU machine's installation.
set -u -o pipefail
CARRY=$(cd "${1:?carry dir}" && pwd)
OUT=$(mkdir -p "${2:?output dir}" && cd "$2" && pwd)
BUDGET=${3:-560}
STEPS=,${4:-tests,bench,mamba,classes,attn},
step() { [[ $STEPS == *,$1,* ]]; }
BIN=$CARRY/bin
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
cap() { local l; l=$(left); [ "$l" -lt "$1" ] && echo $((l > 5 ? l : 5)) || echo "$1"; }  # min(step cap, time left)
stamp() { echo "== [$(($(date +%s) - START)) s] $*"; }

export PATH=/usr/local/cuda/bin:$PATH
CUBLAS=$(find /usr/local /opt /usr/lib -name 'libcublasLt.so.13' 2>/dev/null | head -1)
export LD_LIBRARY_PATH=$CARRY/lib:$(dirname "${CUBLAS:-/x/x}"):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export MIXLENS_TEST_DATA_DIR=$PWD/tests/data
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
git log --oneline -1 2>/dev/null
for b in "$BIN"/* "$CARRY"/old/*; do [ -f "$b" ] && ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done
status=0

if step tests; then
stamp "GPU tests and memory checks (side by side)"
tests=$(cd "$BIN" && ls *_test)
pids=()
for t in $tests; do
  ( s=$(date +%s%N)
    timeout "$(cap 300)" "$BIN/$t" --log_level=warning --report_level=short > "$OUT/$t.log" 2>&1
    echo "rc=$? $(( ($(date +%s%N) - s) / 1000000 )) ms" >> "$OUT/$t.log" ) &
  pids+=($!)
  ( s=$(date +%s%N)
    MIXLENS_GPU_TEST_SMALL=1 timeout "$(cap 300)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/$t" \
      --log_level=error --report_level=short > "$OUT/memcheck-$t.log" 2>&1
    echo "rc=$? $(( ($(date +%s%N) - s) / 1000000 )) ms" >> "$OUT/memcheck-$t.log" ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for t in $tests; do
  echo "-- $t"; grep -E "passed|failed|error|rc=" "$OUT/$t.log" | tail -6
  grep -q "^rc=0 " "$OUT/$t.log" || status=1
  echo "-- memcheck $t"; grep -E "ERROR SUMMARY|passed|failed|rc=" "$OUT/memcheck-$t.log" | tail -3
  grep -q "^rc=0 " "$OUT/memcheck-$t.log" || status=1
done
# One log for all of them (the files that come back are few).
for t in $tests; do echo "#### $t"; cat "$OUT/$t.log"; echo "#### memcheck $t"; tail -20 "$OUT/memcheck-$t.log"; done \
  > "$OUT/h200-tests.txt"
rm -f "$OUT"/*_test.log "$OUT"/memcheck-*.log
fi

if step bench; then
FILTER=${MIXLENS_BENCH_FILTER:-'^(copy|s6_forward_fp32/|s6_forward_bf16/|alpha_full_fp32/|fftconv/1/768|scan<gpu::block_policy>/4096|concept_)'}
stamp "Google Benchmark: this build and the reference build, alternately"
for round in $(seq 1 "${MIXLENS_BENCH_ROUNDS:-2}"); do
  for which in new old; do
    exe=$BIN/mixlens_gpu_bench; [ $which = old ] && exe=$CARRY/old/mixlens_gpu_bench_old
    [ -x "$exe" ] || continue
    timeout "$(cap 100)" "$exe" --benchmark_filter="$FILTER" --benchmark_min_time=0.2 \
      --benchmark_out="$OUT/gbench-$which-$round.json" --benchmark_out_format=json > /dev/null 2>> "$OUT/gbench.err" || status=1
  done
done

fi

if step mamba; then
stamp "Mamba model benchmark: this build and the reference build, alternately"
for round in $(seq 1 "${MIXLENS_BENCH_ROUNDS:-2}"); do
  for which in new old; do
    exe=$BIN/mixlens_mamba_bench; [ $which = old ] && exe=$CARRY/old/mixlens_mamba_bench_old
    [ -x "$exe" ] || continue
    timeout "$(cap 120)" "$exe" --benchmark_filter=gpu_ --benchmark_out="$OUT/mamba-$which-$round.json" \
      --benchmark_out_format=json > /dev/null 2>> "$OUT/gbench.err" || status=1
  done
done

fi

if step classes; then
stamp "01_operator_classes --device cuda"
for L in 1024 4096; do
  timeout "$(cap $((L / 16 + 40)))" "$BIN/01_operator_classes" --device cuda --length $L --out /tmp/classes-$L \
    --json "$OUT/classes-cuda-$L.json" --quiet > "$OUT/classes-cuda-$L.md" 2>&1 || { echo "L=$L: rc=$?"; status=1; }
  tail -25 "$OUT/classes-cuda-$L.md"
done

fi

if step attn; then
stamp "mixlens-attn --device cuda"
timeout "$(cap 60)" "$BIN/mixlens-attn" --model tests/data/mamba_demo --tokens-file tests/data/reference/mamba_demo/tokens_0.npy \
  --out /tmp/attn --device cuda --self-test --reference-logits tests/data/reference/mamba_demo/logits_0.npy --no-png \
  > "$OUT/attn-cuda.txt" 2>&1 || status=1
cat "$OUT/attn-cuda.txt"
fi
stamp "done, status $status"
exit $status
