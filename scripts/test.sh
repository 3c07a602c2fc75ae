#!/usr/bin/env bash
# Builds the host library, tools, examples and tests without the CUDA toolkit (hidden
# when installed) and runs the CPU test set; then, with a toolkit, everything nvcc
# builds (the GPU tests where a GPU runs them: see below).
# Then a sanitizer stage (docs/reliability.md; clang 14, installed like the rest):
# a clang syntax check of every host header, an ASan + UBSan build of the I/O, model and
# tool tests (MIXLENS_SANITIZE_TESTS=all: the whole CPU set), and each libFuzzer
# harness for MIXLENS_FUZZ_SECONDS (default 20). MIXLENS_SANITIZE=0 skips it.
# Before it, a Python stage (docs/python.md; MIXLENS_PYTHON=0 skips it): `pip install .` (with
# the CUDA backend where nvcc works) into a virtual environment under build-python/ (system site
# packages visible: numpy, torch), pytest, torch (CPU wheel) and transformers from PyPI where
# missing, then pytest python/tests, compared with build-host/tools/mixlens-attn too. About two
# minutes on 2 cores, five with nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
# Headless Chromium for the test of mixlens-attn's HTML page (html_report_test), installed
# before the configure that finds it.
mixlens_require chromium

# The host library, tools, examples and the CPU tests, built without the CUDA toolkit:
# where one is installed, in a mount namespace that covers /usr/local/cuda* with empty
# directories (CCCL's headers then come from the nvidia-cuda-cccl wheel, scripts/deps.sh).
host_stage() {
  source scripts/deps.sh
  cmake -S . -B build-host -DCMAKE_BUILD_TYPE=Release -DMIXLENS_BUILD_TESTS=ON >/dev/null
  cmake --build build-host -j"$(nproc)"
  ctest --test-dir build-host -L cpu --output-on-failure -j"$(nproc)"
}
export -f host_stage
toolkits=$(compgen -G '/usr/local/cuda-*' || true)
if [[ -z $toolkits ]]; then
  host_stage
elif [[ $(id -u) -eq 0 ]] && unshare -m true 2>/dev/null; then
  echo "mixlens: host build and CPU tests with the CUDA toolkit hidden (${toolkits//$'\n'/ })"
  # shellcheck disable=SC2016
  unshare -m bash -c 'for d in '"${toolkits//$'\n'/ }"'; do mount -t tmpfs none "$d"; done
    PATH=$(tr ":" "\n" <<<"$PATH" | grep -v "/usr/local/cuda" | paste -sd:) host_stage'
else
  echo "mixlens: cannot hide the CUDA toolkit (needs root and mount namespaces): host build with it visible" >&2
  host_stage
fi

# With a toolkit: what nvcc builds (nvcc header checks, the CUDA builds of the tools and
# examples), and the CPU tests of those CUDA-built binaries. The GPU tests are built and run
# where a GPU can run them (nvidia-smi lists one), or built alone with MIXLENS_GPU_TESTS=build.
if nvcc_works; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMIXLENS_BUILD_TESTS=ON >/dev/null
  cmake --build build -j"$(nproc)" --target mixlens_cuda_targets
  ctest --test-dir build -L cpu --output-on-failure -j"$(nproc)" \
    -R '^(mixlens_attn_test|mixlens_eval_test|operator_classes_verdicts|vim_attention_example)$'
  gpu_tests=${MIXLENS_GPU_TESTS:-}
  if [[ -z $gpu_tests ]] && nvidia-smi -L >/dev/null 2>&1; then gpu_tests=run; fi
  if [[ $gpu_tests == build || $gpu_tests == run ]]; then
    cmake --build build -j"$(nproc)" --target mixlens_gpu_test_targets
  fi
  if [[ $gpu_tests == run ]]; then ctest --test-dir build -L gpu --output-on-failure; fi
fi

if [[ ${MIXLENS_PYTHON:-1} == 1 ]]; then
  python=${PYTHON:-python3}
  if ! "$python" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null ||
     ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    mixlens_require python3-dev python3-venv  # headers for the extension, venv for the install
  fi
  "$python" -m venv --system-site-packages build-python/venv
  py=build-python/venv/bin/python
  "$py" -m pip install --quiet --disable-pip-version-check numpy pytest transformers tokenizers
  if ! "$py" -c 'import torch' 2>/dev/null; then  # the CPU wheel, else PyPI's default one
    "$py" -m pip install --quiet --disable-pip-version-check --index-url https://download.pytorch.org/whl/cpu torch ||
      "$py" -m pip install --quiet --disable-pip-version-check torch
  fi
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) build-python/venv/bin/python -m pip install --quiet --disable-pip-version-check .
  MIXLENS_ATTN=$PWD/build-host/tools/mixlens-attn build-python/venv/bin/python -m pytest -q -p no:cacheprovider python/tests
fi

if [[ ${MIXLENS_SANITIZE:-1} == 0 ]]; then exit 0; fi
mixlens_require clang libclang-rt-14-dev  # clang 14 with its sanitizer and libFuzzer runtimes
clang=clang++

# Every host header in one translation unit, through clang (GCC checks each alone).
cccl=$(sed -n 's/^_libcudacxx_INCLUDE_DIR:[A-Z]*=//p' build-host/CMakeCache.txt)
(cd include && find mixlens -name '*.hpp' | sort | sed 's/.*/#include "&"/') |
  "$clang" -std=c++20 -fsyntax-only -Wall -Wextra -Iinclude ${cccl:+-isystem "$cccl"} $(pkg-config --cflags freetype2) -x c++ -

sanitized=(io_test figure_test npz_test safetensors_test reference_params_test mamba_model_test mixlens-attn mixlens-test-set-nan
           faithfulness_test mixlens-eval)
fuzzers=(fuzz_npy fuzz_npz fuzz_json fuzz_safetensors fuzz_config fuzz_checkpoint mixlens-fuzz-seeds)
# -O1 and line tables: the usual sanitizer settings, and the build stays short.
cmake -S . -B build-asan -DCMAKE_CXX_COMPILER="$clang" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" -DMIXLENS_ENABLE_CUDA=OFF \
  -DMIXLENS_BUILD_EXAMPLES=OFF -DMIXLENS_SANITIZE=ON -DMIXLENS_BUILD_FUZZERS=ON \
  -DMIXLENS_FUZZ_SECONDS="${MIXLENS_FUZZ_SECONDS:-20}" >/dev/null
if [[ ${MIXLENS_SANITIZE_TESTS:-} == all ]]; then
  cmake --build build-asan -j"$(nproc)"
  ctest --test-dir build-asan -L cpu --output-on-failure -j"$(nproc)"
else
  cmake --build build-asan -j"$(nproc)" --target "${sanitized[@]}" "${fuzzers[@]}"
  ctest --test-dir build-asan -L cpu --output-on-failure -j"$(nproc)" \
    -R '^(io_test|figure_test|safetensors_test|reference_params_test|mamba_model_test|mixlens_attn_test|faithfulness_test|mixlens_eval_test)$'
fi
ctest --test-dir build-asan -L fuzz --output-on-failure -j"$(nproc)"
