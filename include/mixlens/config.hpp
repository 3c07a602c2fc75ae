// Basic configuration shared by every mixlens header: the index type and the
// host/device annotation macros.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MIXLENS_HD __host__ __device__
#else
#define MIXLENS_HD
#endif

// Argument checks inside MIXLENS_HD members: they build messages with
// std::string, so they run in the host compilation only. Device entry points
// (mixlens::gpu) check the same arguments on the host before they launch.
#if defined(__CUDA_ARCH__)
#define MIXLENS_HOST_CHECK(...) ((void)0)
#else
#define MIXLENS_HOST_CHECK(...) __VA_ARGS__
#endif

namespace mixlens {

// Signed 64-bit index everywhere: D·L·L exceeds 2^31 for realistic models.
using index_t = std::int64_t;

}  // namespace mixlens
