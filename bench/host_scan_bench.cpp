// Host scans (mixlens_cpu_bench): every host scan policy of scan.hpp over
// 2^10 … 2^24 steps, float and double, the threaded ones at 1, 2 and all
// threads, next to the naive loop and to the unflushed sequential scan (the
// loop before flush-to-zero) in the same run; then S6 apply and α on the host.
// Names: scan/<type>/<policy>[/threads:<t>]/<steps> for one sequence,
// rows64/<type>/<policy>[/threads:<t>]/<steps> for 64 independent sequences of
// steps/64 each (scan_rows), s6_*/<type>/…/<L>.
//
// Elements: a_t uniform in [0.9, 1) and b_t uniform in [-1, 1] (seed 1): the
// decay product of such a scan falls below the smallest normal number after
// about 1.7k steps in float and 14k in double, the regime flush-to-zero is for.
// Policies scan in place; every iteration starts from a fresh copy of the input
// (copied outside the timed region, manual time with steady_clock). Counters:
// items_per_second = steps/s (elements/s), bytes_per_second = the element array
// read and written once (naive loop: a and b read, h written).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "mixlens/ops/s6.hpp"
#include "mixlens/scan.hpp"

namespace {

using namespace mixlens;
using clock_type = std::chrono::steady_clock;

constexpr int min_log2 = 10, max_log2 = 24;
constexpr index_t batch_rows = 64;  // independent sequences of the row benchmarks (channels × states)

template <class T>
std::vector<affine<T>> elements(index_t n) {
  std::mt19937_64 gen(1);
  std::uniform_real_distribution<double> a(0.9, 1.0), b(-1.0, 1.0);
  std::vector<affine<T>> e(static_cast<std::size_t>(n));
  for (auto& x : e) x = {T(a(gen)), T(b(gen))};
  return e;
}

// The sequential scan as the main branch had it before flush-to-zero: the same
// loop without the guard. The "before" of the FTZ change, in the same run.
struct unflushed_sequential_scan {
  template <class A, class B>
  void operator()(vector_view<affine<A, B>> e) const {
    affine_compose op;
    for (std::size_t t = 1; t < e.size(); ++t) e[t] = op(e[t - 1], e[t]);
  }
};

template <class T>
double max_state_error(const std::vector<affine<T>>& got, const std::vector<affine<T>>& want) {
  double diff = 0, scale = 0;
  for (std::size_t t = 0; t < got.size(); ++t) {
    diff = std::max(diff, double(std::abs(got[t].b - want[t].b)));
    scale = std::max(scale, double(std::abs(want[t].b)));
  }
  return diff / std::max(scale, 1e-300);
}

template <class T>
constexpr double tolerance = std::is_same_v<T, float> ? 1e-4 : 1e-12;

template <class T>
const char* type_name = std::is_same_v<T, float> ? "float" : "double";

void set_rates(benchmark::State& state, index_t n, std::size_t bytes_per_step) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * static_cast<std::int64_t>(bytes_per_step));
}

// h_t = a_t·h_{t−1} + b_t over separate arrays, in the caller's floating-point
// mode: what one writes without a library (the baseline).
template <class T>
void naive_loop(benchmark::State& state) {
  const index_t n = state.range(0);
  const auto e = elements<T>(n);
  std::vector<T> a(e.size()), b(e.size()), h(e.size());
  for (std::size_t t = 0; t < e.size(); ++t) a[t] = e[t].a, b[t] = e[t].b;
  for (auto _ : state) {
    T s = 0;
    for (std::size_t t = 0; t < a.size(); ++t) h[t] = s = a[t] * s + b[t];
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, n, 3 * sizeof(T));
}

// One policy on one sequence of n steps, checked against the sequential scan first.
template <class T, class Policy>
void scan(benchmark::State& state, Policy policy) {
  const index_t n = state.range(0);
  const auto input = elements<T>(n);
  auto want = input, work = input;
  sequential_scan{}(vector_view<affine<T>>(want));
  policy(vector_view<affine<T>>(work));
  if (const double err = max_state_error(work, want); !(err <= tolerance<T>)) {
    state.SkipWithError(("differs from sequential_scan: " + std::to_string(err)).c_str());
    return;
  }
  for (auto _ : state) {
    std::copy(input.begin(), input.end(), work.begin());
    const auto start = clock_type::now();
    policy(vector_view<affine<T>>(work));
    benchmark::ClobberMemory();
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  set_rates(state, n, 2 * sizeof(affine<T>));
}

// n steps as batch_rows independent sequences of n / batch_rows steps (scan_rows).
template <class T, class Policy>
void rows(benchmark::State& state, Policy policy) {
  const index_t n = state.range(0), length = n / batch_rows;
  const auto input = elements<T>(n);
  auto want = input, work = input;
  scan_rows(matrix_view<affine<T>>(want.data(), batch_rows, length), sequential_scan{});
  scan_rows(matrix_view<affine<T>>(work.data(), batch_rows, length), policy);
  if (const double err = max_state_error(work, want); !(err <= tolerance<T>)) {
    state.SkipWithError(("differs from sequential_scan: " + std::to_string(err)).c_str());
    return;
  }
  for (auto _ : state) {
    std::copy(input.begin(), input.end(), work.begin());
    const auto start = clock_type::now();
    scan_rows(matrix_view<affine<T>>(work.data(), batch_rows, length), policy);
    benchmark::ClobberMemory();
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
  }
  set_rates(state, n, 2 * sizeof(affine<T>));
}

// ---- S6 on the host: D = 16 channels, N = 16 states, Mamba's initialization ----

constexpr index_t s6_channels = 16, s6_states = 16;

template <class T>
struct s6_case {
  explicit s6_case(index_t length) : u(s6_channels, length), y(s6_channels, length) {
    std::mt19937_64 gen(2);
    std::normal_distribution<double> normal;
    for (index_t d = 0; d < s6_channels; ++d)
      for (index_t t = 0; t < length; ++t) u(d, t) = T(normal(gen));
  }
  matrix<T> u, y;
};

// The S6 operator's own loops do not set the floating-point mode; the
// caller_ftz variants run them under flush_subnormals_guard (what a caller can
// do) to show what subnormal running products cost there.
template <bool Ftz>
struct maybe_flushed {
  std::conditional_t<Ftz, detail::flush_subnormals_guard, int> guard{};
};

// y = M·u by the fused sequential recurrence (no policy) or through `policy`
// per (channel, state) sequence. items: channel-steps (D·L); bytes: Δ, u, y and
// B, C (per step) once.
template <class T, bool Ftz = false, class Policy>
void s6_apply(benchmark::State& state, Policy policy) {
  const index_t L = state.range(0);
  s6_case<T> c(L);
  const auto op = s6_mixer<T>::init(s6_channels, s6_states, 4, 0).bind(c.u.view());
  for (auto _ : state) {
    const maybe_flushed<Ftz> mode;
    if constexpr (std::is_same_v<Policy, sequential_scan>) op->apply(c.u.view(), c.y.view());
    else op->apply(c.u.view(), c.y.view(), policy);
    benchmark::DoNotOptimize(c.y.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * s6_channels * L);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * L *
                          static_cast<std::int64_t>((3 * s6_channels + 2 * s6_states) * sizeof(T)));
}

// α of one channel (L × L, the paper's hidden attention). items: matrix entries
// written (L², zeros above the diagonal included); bytes: the matrix written.
template <class T, bool Ftz>
void s6_alpha_full(benchmark::State& state) {
  const index_t L = state.range(0);
  s6_case<T> c(L);
  const auto op = s6_mixer<T>::init(s6_channels, s6_states, 4, 0).bind(c.u.view());
  matrix<T> m(L, L);
  for (auto _ : state) {
    const maybe_flushed<Ftz> mode;
    op->alpha(0, m.view());
    benchmark::DoNotOptimize(m.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * L * L);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * L * L * static_cast<std::int64_t>(sizeof(T)));
}

// 64 rows of α (the last 64 positions of channel 0), each in O(L·N).
template <class T, bool Ftz>
void s6_alpha_rows(benchmark::State& state) {
  const index_t L = state.range(0), count = 64;
  s6_case<T> c(L);
  const auto op = s6_mixer<T>::init(s6_channels, s6_states, 4, 0).bind(c.u.view());
  std::vector<T> r(static_cast<std::size_t>(L));
  for (auto _ : state) {
    const maybe_flushed<Ftz> mode;
    for (index_t t = L - count; t < L; ++t) {
      op->alpha_row(0, t, vector_view<T>(r));
      benchmark::DoNotOptimize(r.data());
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * count * L);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * count * L * static_cast<std::int64_t>(sizeof(T)));
}

// ---- registration: names scan/<type>/<policy>[/threads:<t>]/<n> ----------------

std::string threads_label(int threads) {
  return threads == 0 ? "all(" + std::to_string(host_threads(0)) + ")" : std::to_string(threads);
}

template <class T>
void register_type() {
  const std::string type = type_name<T>;
  auto lengths = [](benchmark::internal::Benchmark* b) {
    b->RangeMultiplier(2)->Range(index_t(1) << min_log2, index_t(1) << max_log2);
  };
  auto manual = [&](benchmark::internal::Benchmark* b) {
    lengths(b);
    b->UseManualTime()->Unit(benchmark::kMicrosecond);
  };
  lengths(benchmark::RegisterBenchmark(("naive_loop/" + type).c_str(), naive_loop<T>)->Unit(benchmark::kMicrosecond));
  manual(benchmark::RegisterBenchmark(("scan/" + type + "/unflushed_sequential").c_str(),
                                      [](benchmark::State& s) { scan<T>(s, unflushed_sequential_scan{}); }));
  manual(benchmark::RegisterBenchmark(("scan/" + type + "/sequential").c_str(),
                                      [](benchmark::State& s) { scan<T>(s, sequential_scan{}); }));
  manual(benchmark::RegisterBenchmark(("scan/" + type + "/chunked_64").c_str(),
                                      [](benchmark::State& s) { scan<T>(s, chunked_scan{64}); }));
  manual(benchmark::RegisterBenchmark(("scan/" + type + "/blelloch").c_str(),
                                      [](benchmark::State& s) { scan<T>(s, blelloch_scan{}); }));
  for (int threads : {1, 2, 0}) {
    manual(benchmark::RegisterBenchmark(("scan/" + type + "/time_parallel/threads:" + threads_label(threads)).c_str(),
                                        [threads](benchmark::State& s) { scan<T>(s, time_parallel_scan{threads}); }));
  }
  manual(benchmark::RegisterBenchmark(("rows64/" + type + "/sequential").c_str(),
                                      [](benchmark::State& s) { rows<T>(s, sequential_scan{}); }));
  for (int threads : {1, 2, 0}) {
    manual(benchmark::RegisterBenchmark(("rows64/" + type + "/sequence_parallel/threads:" + threads_label(threads)).c_str(),
                                        [threads](benchmark::State& s) { rows<T>(s, sequence_parallel_scan{threads}); }));
  }
  auto s6_lengths = [](benchmark::internal::Benchmark* b) {
    b->RangeMultiplier(4)->Range(1 << 10, 1 << 14)->Unit(benchmark::kMillisecond);
  };
  s6_lengths(benchmark::RegisterBenchmark(("s6_apply/" + type + "/fused_sequential").c_str(),
                                          [](benchmark::State& s) { s6_apply<T>(s, sequential_scan{}); }));
  s6_lengths(benchmark::RegisterBenchmark(("s6_apply/" + type + "/fused_sequential/caller_ftz").c_str(),
                                          [](benchmark::State& s) { s6_apply<T, true>(s, sequential_scan{}); }));
  for (int threads : {1, 2, 0})  // the channels split over threads (the host backend's model path)
    s6_lengths(benchmark::RegisterBenchmark(("s6_apply/" + type + "/channel_parallel/threads:" + threads_label(threads)).c_str(),
                                            [threads](benchmark::State& s) { s6_apply<T>(s, sequence_parallel_scan{threads}); }));
  for (bool ftz : {false, true}) {
    const std::string suffix = ftz ? "/caller_ftz" : "";
    benchmark::RegisterBenchmark(("s6_alpha_full/" + type + suffix).c_str(),
                                 ftz ? s6_alpha_full<T, true> : s6_alpha_full<T, false>)
        ->RangeMultiplier(2)->Range(512, 2048)->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("s6_alpha_rows64/" + type + suffix).c_str(),
                                 ftz ? s6_alpha_rows<T, true> : s6_alpha_rows<T, false>)
        ->RangeMultiplier(4)->Range(1 << 10, 1 << 14)->Unit(benchmark::kMillisecond);
  }
}

const bool registered = [] {
  benchmark::AddCustomContext("mixlens_host_threads", std::to_string(host_threads(0)));
  benchmark::AddCustomContext("mixlens_openmp", detail::has_openmp ? "yes" : "no");
  benchmark::AddCustomContext("mixlens_flush_subnormals", detail::flushes_subnormals ? "yes" : "no");
  register_type<float>();
  register_type<double>();
  return true;
}();

}  // namespace
