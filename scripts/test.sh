#!/usr/bin/env bash
# Builds everything (host tests, examples, CUDA targets when nvcc is present) and
# runs the CPU test set. GPU tests run with: ctest --test-dir build -L gpu
# Then a sanitizer stage (docs/reliability.md; clang 14, installed like the rest):
# a clang syntax check of every host header, an ASan + UBSan build of the I/O, model and
# tool tests (MIXLENS_SANITIZE_TESTS=all: the whole CPU set), and each libFuzzer
# harness for MIXLENS_FUZZ_SECONDS (default 20). MIXLENS_SANITIZE=0 skips it.
# MIXLENS_PYTHON=1 adds a Python stage before it (docs/python.md): `pip install .` into a
# virtual environment under build-python/ (system site packages visible: numpy, torch), then
# pytest python/tests, compared with build/tools/mixlens-attn too. About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMIXLENS_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build -L cpu --output-on-failure -j"$(nproc)"

if [[ ${MIXLENS_PYTHON:-0} == 1 ]]; then
  python=${PYTHON:-python3}
  if ! "$python" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null ||
     ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    mixlens_require python3-dev python3-venv  # headers for the extension, venv for the install
  fi
  "$python" -m venv --system-site-packages build-python/venv
  build-python/venv/bin/python -m pip install --quiet --disable-pip-version-check numpy pytest
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) build-python/venv/bin/python -m pip install --quiet --disable-pip-version-check .
  MIXLENS_ATTN=$PWD/build/tools/mixlens-attn build-python/venv/bin/python -m pytest -q -p no:cacheprovider python/tests
fi

if [[ ${MIXLENS_SANITIZE:-1} == 0 ]]; then exit 0; fi
mixlens_require clang libclang-rt-14-dev  # clang 14 with its sanitizer and libFuzzer runtimes
clang=clang++

# Every host header in one translation unit, through clang (GCC checks each alone).
cccl=$(sed -n 's/^_libcudacxx_INCLUDE_DIR:[A-Z]*=//p' build/CMakeCache.txt)
(cd include && find mixlens -name '*.hpp' | sort | sed 's/.*/#include "&"/') |
  "$clang" -std=c++20 -fsyntax-only -Wall -Wextra -Iinclude ${cccl:+-isystem "$cccl"} -x c++ -

sanitized=(io_test safetensors_test reference_params_test mamba_model_test mixlens-attn mixlens-test-set-nan)
fuzzers=(fuzz_npy fuzz_json fuzz_safetensors fuzz_config fuzz_checkpoint mixlens-fuzz-seeds)
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
    -R '^(io_test|safetensors_test|reference_params_test|mamba_model_test|mixlens_attn_test)$'
fi
ctest --test-dir build-asan -L fuzz --output-on-failure -j"$(nproc)"
