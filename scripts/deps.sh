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

mixlens_require cmake g++ make pkg-config libfftw3-dev libboost-test-dev libeigen3-dev nlohmann-json3-dev zlib1g-dev libpng-dev libopenblas-dev libzip-dev \
  libfreetype-dev fonts-dejavu-core

# The CUDA toolkit provides CCCL (cuda::std) for every build and nvcc for the GPU backend.
nvcc_works() { nvcc --version >/dev/null 2>&1; }  # (a wrapper script may outlive the toolkit)
if ! nvcc_works; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
    if [[ -x $d/nvcc ]]; then export PATH="$d:$PATH"; break; fi
  done
fi
# Without it, the host library needs only CCCL's headers: NVIDIA's nvidia-cuda-cccl wheel
# from PyPI, downloaded once into the user's cache and unpacked (not installed, so no
# Python environment is touched); CMake finds it through MIXLENS_CCCL_INCLUDE_DIR.
if ! nvcc_works && [[ ! -d /usr/local/cuda/include/cccl ]] && [[ -z ${MIXLENS_CCCL_INCLUDE_DIR:-} ]]; then
  cccl_cache=${XDG_CACHE_HOME:-$HOME/.cache}/mixlens/nvidia-cuda-cccl
  cccl_include() { compgen -G "$cccl_cache/nvidia/cu*/include/cccl/cuda/std/span" | head -1 | sed 's|/cuda/std/span$||'; }
  if [[ -z $(cccl_include) ]]; then
    python3 -m pip --version >/dev/null 2>&1 || mixlens_require python3-pip
    echo "mixlens: no CUDA toolkit; fetching CCCL's headers (nvidia-cuda-cccl from PyPI) into $cccl_cache" >&2
    rm -rf "$cccl_cache.part" && mkdir -p "$cccl_cache.part"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cccl_cache.part" nvidia-cuda-cccl
    python3 -m zipfile -e "$cccl_cache.part"/nvidia_cuda_cccl-*.whl "$cccl_cache.part/wheel"
    rm -rf "$cccl_cache" && mv "$cccl_cache.part/wheel" "$cccl_cache" && rm -rf "$cccl_cache.part"
  fi
  MIXLENS_CCCL_INCLUDE_DIR=$(cccl_include)
  if [[ -z $MIXLENS_CCCL_INCLUDE_DIR ]]; then
    echo "mixlens: neither the CUDA toolkit nor CCCL's headers were found (looked in /usr/local/cuda and $cccl_cache)" >&2
    exit 1
  fi
  export MIXLENS_CCCL_INCLUDE_DIR
fi
