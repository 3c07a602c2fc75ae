// Flush-to-zero for the duration of a host loop, the caller's mode restored.
//
// Why the host scans need it: the running decay product e[t].a = a_t·…·a_0 of an
// inclusive scan shrinks geometrically and, for decays in (0.5, 1), never reaches
// zero under gradual underflow: once it is a few units of 2^-149 (float), x·a
// rounds back to x, and it stays subnormal for good. From then on every step
// multiplies a subnormal, which x86 cores execute through a microcode assist, many
// times slower than a normal multiplication: a float scan with decays in [0.9, 1)
// fell from about 660 M to 31 M steps/s after about 1.7k steps (double: after
// about 14k) on the development machine (bench/README.md, "Host scans"). With
// flush-to-zero (FTZ: subnormal results become 0) and denormals-are-zero (DAZ:
// subnormal inputs read as 0) the product becomes an exact 0 instead, and the scan
// keeps its speed. The values change only by the subnormal contributions (below
// 2^-126 in float, 2^-1022 in double, times the magnitude of the other operand),
// far inside the tolerance every scan oracle uses. (Chunked decays, restarting
// the product every k steps, would keep gradual underflow but not the result of
// the plain recurrence bit for bit, and need a fix-up pass.)
//
// x86 keeps FTZ and DAZ in the per-thread MXCSR register (SSE arithmetic, which is
// what x86-64 compilers use for float and double): the guard sets both bits
// (_MM_FLUSH_ZERO_ON, _MM_DENORMALS_ZERO_ON) and its destructor restores the two
// bits it found, so the caller's mode comes back
// on every exit, exceptions included, and the floating-point status flags the loop
// raised stay visible. Each thread of a parallel loop needs its own guard. On
// other targets (and in nvcc's device pass) the guard does nothing.
#pragma once

#if (defined(__SSE2__) || defined(_M_X64)) && !defined(__CUDA_ARCH__)
#include <pmmintrin.h>  // _MM_DENORMALS_ZERO_ON, _MM_DENORMALS_ZERO_MASK
#include <xmmintrin.h>  // _mm_getcsr, _mm_setcsr, _MM_FLUSH_ZERO_ON, _MM_FLUSH_ZERO_MASK
#define MIXLENS_FLUSH_SUBNORMALS 1
#else
#define MIXLENS_FLUSH_SUBNORMALS 0
#endif

namespace mixlens::detail {

// Whether flush_subnormals_guard changes anything on this target.
inline constexpr bool flushes_subnormals = MIXLENS_FLUSH_SUBNORMALS != 0;

class flush_subnormals_guard {
 public:
#if MIXLENS_FLUSH_SUBNORMALS
  // One read of the MXCSR, and a write only when a bit changes: nested guards
  // (a policy inside a threaded region) cost no more than the read.
  flush_subnormals_guard() noexcept : saved_(_mm_getcsr()) {
    const unsigned int flushed = saved_ | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON;
    if (flushed != saved_) _mm_setcsr(flushed);
  }
  // Puts back the caller's FTZ and DAZ bits (as _MM_SET_FLUSH_ZERO_MODE and
  // _MM_SET_DENORMALS_ZERO_MODE would) and nothing else.
  ~flush_subnormals_guard() {
    constexpr unsigned int mask = _MM_FLUSH_ZERO_MASK | _MM_DENORMALS_ZERO_MASK;
    const unsigned int now = _mm_getcsr(), restored = (now & ~mask) | (saved_ & mask);
    if (restored != now) _mm_setcsr(restored);
  }
#else
  // User-provided, so that a guard nobody reads draws no unused-variable warning.
  flush_subnormals_guard() noexcept {}  // NOLINT(modernize-use-equals-default)
  ~flush_subnormals_guard() {}          // NOLINT(modernize-use-equals-default)
#endif
  flush_subnormals_guard(const flush_subnormals_guard&) = delete;
  flush_subnormals_guard& operator=(const flush_subnormals_guard&) = delete;

 private:
#if MIXLENS_FLUSH_SUBNORMALS
  unsigned int saved_;
#endif
};

}  // namespace mixlens::detail
