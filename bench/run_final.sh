#!/usr/bin/env bash
# One GPU run within a fixed time budget, from prebuilt binaries:
#   every GPU test binary, the memory checker on each (MIXLENS_GPU_TEST_SMALL=1),
#   the Google Benchmark suite, the Mamba rollout benchmark, the PyTorch
#   baselines, the summary (and, if time is left, Nsight Compute on the S6 kernels).
#
#   bench/run_final.sh <dir with bin/ and lib/> <output dir> [budget seconds, default 530]
#
# bin/ holds gpu_*_test, mixlens_gpu_bench and mixlens_mamba_bench built for
# sm_90; lib/ the shared libraries the build machine linked them against
# (cudart, Boost.Test, Google Benchmark, FFTW). cuBLAS comes from the GPU
# machine's CUDA installation. Tests and memory checks run side by side (they
# only check results); the benchmarks run afterwards one at a time on an idle GPU.
set -u -o pipefail
CARRY=$(cd "${1:?carry dir}" && pwd)
OUT=$(mkdir -p "${2:?output dir}" && cd "$2" && pwd)
BUDGET=${3:-530}
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
ls "$BIN"
for b in "$BIN"/*; do ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done
status=0

stamp "GPU tests and memory checks (side by side)"
tests=$(cd "$BIN" && ls gpu_*_test)
pids=()
for t in $tests; do
  ( s=$(date +%s%N)
    timeout "$(cap 240)" "$BIN/$t" --log_level=warning --report_level=short > "$OUT/$t.log" 2>&1
    echo "rc=$? $(( ($(date +%s%N) - s) / 1000000 )) ms" >> "$OUT/$t.log" ) &
  pids+=($!)
  ( s=$(date +%s%N)
    MIXLENS_GPU_TEST_SMALL=1 timeout "$(cap 240)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/$t" \
      --log_level=error --report_level=short > "$OUT/memcheck-$t.log" 2>&1
    echo "rc=$? $(( ($(date +%s%N) - s) / 1000000 )) ms" >> "$OUT/memcheck-$t.log" ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for t in $tests; do
  echo "-- $t"; grep -E "passed|failed|error|rc=" "$OUT/$t.log" | tail -6
  grep -q "^rc=0 " "$OUT/$t.log" || status=1
  echo "-- memcheck $t"; grep -E "ERROR SUMMARY|passed|failed|rc=" "$OUT/memcheck-$t.log" | tail -4
  grep -q "^rc=0 " "$OUT/memcheck-$t.log" || status=1
done

stamp "Google Benchmark suite"
timeout "$(cap 200)" "$BIN/mixlens_gpu_bench" --benchmark_out="$OUT/h200-gbench.json" --benchmark_out_format=json \
  --benchmark_min_time=0.1 --benchmark_counters_tabular=true > "$OUT/gbench.txt" 2> "$OUT/gbench.err" || status=1
grep -E "^(s6_|copy)" "$OUT/gbench.txt"

stamp "Mamba rollout benchmark"
timeout "$(cap 120)" "$BIN/mixlens_mamba_bench" --benchmark_filter=gpu_ --benchmark_out="$OUT/h200-mamba-bench.json" \
  --benchmark_out_format=json > "$OUT/mamba-bench.txt" 2>&1 || status=1
grep -E "^gpu_" "$OUT/mamba-bench.txt"

stamp "PyTorch baselines"
PYTHONUNBUFFERED=1 timeout "$(cap 150)" python3 bench/torch_baselines.py --out "$OUT/h200-torch.json" \
  > "$OUT/torch.txt" 2>&1 || status=1
cat "$OUT/torch.txt" | tail -20

stamp "summary"
python3 bench/summarize.py --gbench "$OUT/h200-gbench.json" --torch "$OUT/h200-torch.json" \
  --out "$OUT/h200-summary.json" --date "$(date -u +%F)" \
  --command "bench/run_final.sh .gpu-carry \$OUT" > "$OUT/summary.md" 2>&1 || status=1
cat "$OUT/summary.md"

if [ "$(left)" -gt 60 ]; then
  stamp "Nsight Compute: S6 fp32 B1 D1536 L65536 (time-parallel passes)"
  timeout "$(cap 50)" ncu --clock-control none --kernel-name regex:'selective_scan|s6_carry' --launch-count 3 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats \
    "$BIN/mixlens_gpu_bench" --benchmark_filter='^s6_forward_fp32/1/1536/65536' --benchmark_min_time=0.01 \
    > "$OUT/h200-ncu-s6-long.txt" 2>&1 || echo "ncu failed or timed out"
  grep -E "selective_scan|s6_carry|Duration|Compute \(SM\) Throughput|Achieved Occupancy" "$OUT/h200-ncu-s6-long.txt" | head -20
fi
stamp "done, status $status"
exit $status
