#!/usr/bin/env bash
# Checks for (and, as root on Debian, installs) what mixlens needs to build and test.
# Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

# mixlens_require PACKAGE...: installs the missing ones (as root with apt-get) or
# stops naming them.
mixlens_require() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "mixlens: installing ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "mixlens: missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
}

mixlens_require cmake g++ make pkg-config libfftw3-dev libboost-test-dev libeigen3-dev nlohmann-json3-dev zlib1g-dev

# The CUDA toolkit provides CCCL (cuda::std) for every build and nvcc for the GPU backend.
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [[ -x $d/nvcc ]]; then export PATH="$d:$PATH"; break; fi
  done
fi
if ! command -v nvcc >/dev/null && [[ ! -d /usr/local/cuda/include/cccl ]]; then
  echo "mixlens: the CUDA toolkit (for CCCL's cuda::std headers) was not found under /usr/local/cuda;" \
       "install it (Debian: nvidia-cuda-toolkit from non-free, or NVIDIA's cuda-toolkit package)" >&2
  exit 1
fi
