// Basic configuration shared by every mixlens header: the index type and the
// host/device annotation macro.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MIXLENS_HD __host__ __device__
#else
#define MIXLENS_HD
#endif

namespace mixlens {

// Signed 64-bit index everywhere: D·L·L exceeds 2^31 for realistic models.
using index_t = std::int64_t;

}  // namespace mixlens
