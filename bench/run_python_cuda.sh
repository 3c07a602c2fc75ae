#!/usr/bin/env bash
# The Python package with its CUDA backend on a GPU machine: `pip install .` (nvcc found, so
# device.cu is built) into a virtual environment that sees the system's torch and transformers,
# then the whole pytest suite, python/tests/test_cuda.py's GPU cases included, and the
# mixlens.hf timing of bench/python_cuda_timing.py.
#
#   bench/run_python_cuda.sh OUT [DEBS]
#
# OUT: where the logs go. DEBS (optional): a folder of Debian packages (.deb) to unpack into a
# private root first, for a machine that lacks the build's Debian dependencies; nothing is
# installed system-wide then. On a Debian machine with the same architecture:
#   (cd DEBS && apt-get download libfftw3-dev libfftw3-double3 libfftw3-single3 libfftw3-long3 \
#      libfftw3-quad3 nlohmann-json3-dev pkgconf-bin libpkgconf3)
set -uo pipefail
out=${1:?usage: bench/run_python_cuda.sh OUT [DEBS]}
debs=${2:-}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1

if [[ -n $debs ]]; then
  root=$(mktemp -d)/root
  for f in "$debs"/*.deb; do dpkg -x "$f" "$root"; done
  lib=$root/usr/lib/x86_64-linux-gnu
  export PKG_CONFIG_SYSROOT_DIR=$root PKG_CONFIG_PATH=$lib/pkgconfig:$root/usr/share/pkgconfig
  export PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH CMAKE_PREFIX_PATH=$root/usr LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  command -v pkg-config >/dev/null || export PKG_CONFIG=$root/usr/bin/pkgconf
fi

venv=$(mktemp -d)/venv
python3 -m venv --system-site-packages "$venv"
{
  echo "python: $("$venv/bin/python" --version), nvcc: $(nvcc --version | tail -1)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
} | tee "$out/environment.txt"

start=$SECONDS
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/python" -m pip install --no-build-isolation --no-deps -v . \
  >"$out/pip-install.log" 2>&1
rc=$?
echo "pip install .: exit $rc after $((SECONDS - start)) s" | tee -a "$out/environment.txt"
grep -E "mixlens: CUDA backend|Python extension" "$out/pip-install.log" | tee -a "$out/environment.txt"
[[ $rc -eq 0 ]] || { tail -40 "$out/pip-install.log"; exit "$rc"; }

cd python/tests  # import the installed package, not the source tree
"$venv/bin/python" -c 'import mixlens; print("cuda_available:", mixlens.cuda_available())' | tee -a "$out/environment.txt"
"$venv/bin/python" -m pytest -q -p no:cacheprovider -rs . 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
"$venv/bin/python" ../../bench/python_cuda_timing.py 2>&1 | tee "$out/timing.txt"
exit "$rc"
