#!/usr/bin/env bash
# One GPU run: GPU tests, the memory checker on the GPU test binaries, the
# Google Benchmark suite (JSON) and the PyTorch baselines, all on the same GPU.
#   bench/run_h200.sh <dir with gpu_*_test and mixlens_gpu_bench | empty: build here> <output dir>
set -u -o pipefail
BIN=${1:-}
OUT=${2:-bench/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
if [ -z "$BIN" ]; then
  cmake -S . -B build-h200 -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DMIXLENS_BUILD_BENCHMARKS=ON \
    && cmake --build build-h200 -j16 --target gpu_scan_test gpu_s6_test gpu_alpha_test gpu_fft_conv_test mixlens_gpu_bench || exit 1
  mkdir -p build-h200/all && cp build-h200/tests/gpu_*_test build-h200/bench/mixlens_gpu_bench build-h200/all/
  BIN=build-h200/all
fi
status=0
echo "== GPU tests"
for t in gpu_scan_test gpu_s6_test gpu_alpha_test gpu_fft_conv_test; do
  start=$(date +%s%N)
  timeout 240 "$BIN/$t" --log_level=warning --report_level=short || status=1
  echo "$t: $(( ($(date +%s%N) - start) / 1000000 )) ms"
done
echo "== compute-sanitizer memcheck (MIXLENS_GPU_TEST_SMALL=1)"
for t in gpu_scan_test gpu_s6_test gpu_alpha_test gpu_fft_conv_test; do
  MIXLENS_GPU_TEST_SMALL=1 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/$t" \
    --log_level=error --report_level=short 2>&1 | tail -4 || status=1
done
echo "== benchmarks"
timeout 300 "$BIN/mixlens_gpu_bench" --benchmark_out="$OUT/h200-gbench.json" --benchmark_out_format=json \
  --benchmark_min_time=0.1 --benchmark_counters_tabular=true || status=1
echo "== PyTorch baselines"
PYTHONUNBUFFERED=1 timeout 200 python3 bench/torch_baselines.py --out "$OUT/h200-torch.json" || status=1
echo "== Nsight Compute: the fused S6 kernel, fp32, batch 4, D 1536, L 2048"
timeout 120 ncu --clock-control none --kernel-name regex:selective_scan --launch-count 1 \
  --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
  "$BIN/mixlens_gpu_bench" --benchmark_filter='^s6_forward_fp32/4/1536/2048' --benchmark_min_time=0.01 \
  > "$OUT/h200-ncu-s6.txt" 2>&1 || echo "ncu failed"
echo "== Nsight Compute: the full α kernel, fp32, D 1536, L 1024"
timeout 120 ncu --clock-control none --kernel-name regex:alpha_full --launch-count 1 \
  --section SpeedOfLight --section Occupancy --section WarpStateStats --section MemoryWorkloadAnalysis \
  "$BIN/mixlens_gpu_bench" --benchmark_filter='^alpha_full_fp32/1536/1024' --benchmark_min_time=0.01 \
  > "$OUT/h200-ncu-alpha.txt" 2>&1 || echo "ncu failed"
for f in "$OUT/h200-ncu-s6.txt" "$OUT/h200-ncu-alpha.txt"; do
  grep -E "Duration|Throughput|Achieved Occupancy|Warp Cycles Per Issued|L1/TEX Hit|L2 Hit" "$f" | head -12
done
exit $status
