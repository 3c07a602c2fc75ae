# Finds what mixlens needs; used by the build and, installed, by the package config.
#   libcudacxx::libcudacxx  CCCL's cuda::std (span, mdspan, complex), from the CUDA toolkit or
#                           CCCL's headers alone (MIXLENS_CCCL_INCLUDE_DIR)
#   PkgConfig::MIXLENS_FFTW3  FFTW3 in float and double (Debian: libfftw3-dev)
#   ZLIB::ZLIB               deflate for PNG heatmaps (Debian: zlib1g-dev)
#   PNG::PNG                 PNG images in, for mixlens::models (Debian: libpng-dev)
#   Freetype::Freetype       text in the figures, for mixlens::figures (Debian: libfreetype-dev)
#   nlohmann_json::nlohmann_json  for mixlens::models (Debian: nlohmann-json3-dev)
# The last three belong to one component each: a missing one is not an error here but
# leaves MIXLENS_MISSING_models / MIXLENS_MISSING_figures set to what to install; the
# build refuses only what needs the component, the package config only a request for it.
#   CUDA::cudart, CUDA::cufft  when the CUDA toolkit is found (for mixlens::gpu)
#   OpenMP::OpenMP_CXX       optional: host threads for the scan policies (MIXLENS_ENABLE_OPENMP)
#   PkgConfig::MIXLENS_OPENBLAS  optional: OpenBLAS's CBLAS for the host products (MIXLENS_ENABLE_BLAS;
#                           Debian: libopenblas-dev)
#   PkgConfig::MIXLENS_LIBZIP  optional: libzip for io::read_npz (mixlens::npz; Debian: libzip-dev),
#                              required with MIXLENS_ENABLE_NPZ=ON
include_guard(GLOBAL)

find_package(CUDAToolkit QUIET)
set(_mixlens_cccl_hints)
if(CUDAToolkit_FOUND)
  list(APPEND _mixlens_cccl_hints "${CUDAToolkit_LIBRARY_DIR}/cmake")
endif()
list(APPEND _mixlens_cccl_hints /usr/local/cuda/lib64/cmake)
find_package(libcudacxx CONFIG QUIET HINTS ${_mixlens_cccl_hints})
if(NOT libcudacxx_FOUND AND NOT TARGET libcudacxx::libcudacxx)
  # Without the toolkit: CCCL's headers alone, e.g. from NVIDIA's nvidia-cuda-cccl wheel
  # (scripts/deps.sh fetches it and sets MIXLENS_CCCL_INCLUDE_DIR; the wheel's own
  # CMake config does not find its headers in the wheel's layout).
  find_path(MIXLENS_CCCL_INCLUDE_DIR cuda/std/span HINTS ENV MIXLENS_CCCL_INCLUDE_DIR NO_DEFAULT_PATH)
  if(NOT MIXLENS_CCCL_INCLUDE_DIR)
    message(FATAL_ERROR "mixlens needs CCCL's libcudacxx (cuda::std span/mdspan/complex): install the CUDA "
                        "toolkit, or set libcudacxx_DIR to <cuda>/lib64/cmake/libcudacxx, or set "
                        "MIXLENS_CCCL_INCLUDE_DIR to a CCCL include directory (the one holding cuda/std/span, "
                        "e.g. nvidia/cu13/include/cccl of the nvidia-cuda-cccl wheel; scripts/deps.sh fetches it)")
  endif()
  add_library(libcudacxx::libcudacxx INTERFACE IMPORTED GLOBAL)
  set_target_properties(libcudacxx::libcudacxx PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${MIXLENS_CCCL_INCLUDE_DIR}")
  set(_libcudacxx_INCLUDE_DIR "${MIXLENS_CCCL_INCLUDE_DIR}" CACHE INTERNAL "CCCL's include directory")
endif()

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(MIXLENS_FFTW3 QUIET IMPORTED_TARGET GLOBAL fftw3 fftw3f)
endif()
if(NOT MIXLENS_FFTW3_FOUND)
  message(FATAL_ERROR "mixlens needs FFTW3 (float and double) found through pkg-config: "
                      "on Debian, apt-get install pkg-config libfftw3-dev")
endif()


find_package(ZLIB QUIET)
if(NOT ZLIB_FOUND)
  message(FATAL_ERROR "mixlens needs zlib for PNG output: on Debian, apt-get install zlib1g-dev")
endif()

set(MIXLENS_MISSING_models "")
find_package(nlohmann_json 3 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  string(APPEND MIXLENS_MISSING_models " nlohmann-json 3 (config.json; Debian: nlohmann-json3-dev)")
endif()
find_package(PNG QUIET)
if(NOT PNG_FOUND)
  string(APPEND MIXLENS_MISSING_models " libpng (Vision Mamba's PNG input; Debian: libpng-dev)")
endif()
set(MIXLENS_MISSING_figures "")
find_package(Freetype QUIET)
if(NOT FREETYPE_FOUND)
  set(MIXLENS_MISSING_figures " FreeType (the figures' text; Debian: libfreetype-dev)")
endif()

# Optional: without a CBLAS the host's dense products run as plain loops
# (detail/gemm.hpp). OpenBLAS through pkg-config (Debian: libopenblas-dev).
if(PkgConfig_FOUND AND (NOT DEFINED MIXLENS_ENABLE_BLAS OR MIXLENS_ENABLE_BLAS))
  pkg_check_modules(MIXLENS_OPENBLAS QUIET IMPORTED_TARGET GLOBAL openblas)
endif()

# Optional: libzip for the .npz reader (mixlens::npz). Without it the rest builds;
# MIXLENS_ENABLE_NPZ=ON makes it required, OFF leaves it out.
if(PkgConfig_FOUND AND (NOT DEFINED MIXLENS_ENABLE_NPZ OR MIXLENS_ENABLE_NPZ))
  pkg_check_modules(MIXLENS_LIBZIP QUIET IMPORTED_TARGET GLOBAL libzip)
endif()
if(MIXLENS_ENABLE_NPZ AND NOT MIXLENS_LIBZIP_FOUND)
  message(FATAL_ERROR "MIXLENS_ENABLE_NPZ=ON: io::read_npz (mixlens/io/npz.hpp) needs libzip found through "
                      "pkg-config: on Debian, apt-get install pkg-config libzip-dev")
endif()

# Optional: without OpenMP the threaded host scan policies run on one thread.
if(NOT DEFINED MIXLENS_ENABLE_OPENMP OR MIXLENS_ENABLE_OPENMP)
  find_package(OpenMP QUIET COMPONENTS CXX)
endif()
