// Host threads through OpenMP, when the translation unit is compiled with it
// (mixlens::mixlens adds -fopenmp where CMake finds OpenMP); without it every
// loop here runs on the calling thread. Exceptions never leave a parallel region
// (that would terminate): the first one is kept and rethrown on the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string_view>

#include "mixlens/config.hpp"
#include "mixlens/detail/float_mode.hpp"
#include "mixlens/error.hpp"

#if defined(_OPENMP)
#include <omp.h>
#define MIXLENS_OMP_PRAGMA_(x) _Pragma(#x)
#define MIXLENS_OMP(...) MIXLENS_OMP_PRAGMA_(omp __VA_ARGS__)
#else
#define MIXLENS_OMP(...)
#endif

namespace mixlens::detail {

inline constexpr bool has_openmp =
#if defined(_OPENMP)
    true;
#else
    false;
#endif

// The threads a policy's `threads` field stands for: n > 0 is n (more than the
// cores is allowed), 0 is OpenMP's default team (every core, or OMP_NUM_THREADS);
// 1 without OpenMP. A negative count is an error naming `threads`.
[[nodiscard]] inline int resolve_threads(std::string_view where, int threads) {
  if (threads < 0) fail(where, "threads", "a thread count >= 0 (0: all cores)", threads);
#if defined(_OPENMP)
  return threads == 0 ? std::max(1, omp_get_max_threads()) : threads;
#else
  return 1;
#endif
}

// How many of `threads` to use for `work` elements so that each gets at least
// `grain` of them (at least one thread, at most `items` when the work comes in
// `items` indivisible pieces).
[[nodiscard]] inline index_t threads_for(int threads, index_t work, index_t grain, index_t items) {
  const index_t by_work = std::max<index_t>(1, work / std::max<index_t>(1, grain));
  return std::max<index_t>(1, std::min({static_cast<index_t>(threads), by_work, items}));
}

// Keeps the first exception thrown by any thread of a region.
class first_exception {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed()) return;
    try {
      f();
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  [[nodiscard]] bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
  std::atomic<bool> failed_{false};
};

// f(i) for every i in [0, count), on `threads` threads with a static schedule
// (thread k takes the k-th contiguous block), every thread under
// flush_subnormals_guard: these are numeric loops (float_mode.hpp says why).
// After a throw the remaining iterations are skipped and the first exception is
// rethrown here.
template <class F>
void parallel_for(index_t count, index_t threads, F&& f) {
  if (count <= 0) return;
  threads = std::min(threads, count);
  if (!has_openmp || threads <= 1) {
    const flush_subnormals_guard guard;
    for (index_t i = 0; i < count; ++i) f(i);
    return;
  }
  first_exception failure;
  MIXLENS_OMP(parallel num_threads(static_cast<int>(threads)))
  {
    const flush_subnormals_guard guard;
    MIXLENS_OMP(for schedule(static))
    for (index_t i = 0; i < count; ++i) failure.run([&] { f(i); });
  }
  failure.rethrow();
}

// f(first, last) for `blocks` contiguous blocks of [0, count) (sizes differing
// by at most one; fewer blocks when count is smaller), one per thread of
// parallel_for: for work that keeps scratch per block.
template <class F>
void parallel_blocks(index_t count, index_t blocks, F&& f) {
  if (count <= 0) return;
  blocks = std::max<index_t>(1, std::min(blocks, count));
  parallel_for(blocks, blocks, [&](index_t b) { f(b * count / blocks, (b + 1) * count / blocks); });
}

}  // namespace mixlens::detail
