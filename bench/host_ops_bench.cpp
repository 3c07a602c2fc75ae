// Host apply of the operators beyond S6 (mixlens_cpu_bench): each operator's
// apply with its independent work split over sequence_parallel_scan{threads}
// (channels, heads or query rows; bit-identical for any count), at 1, 2 and all
// threads, float. Names: host_apply/<op>/float/threads:<t>/<L>. Shapes:
//   ssd              Mamba-2 SSD, 8 heads of P 64, N 64, chunk 64, L 1024 (per head)
//   hyena            order 2, D 768, L 1024: gates and one FFT convolution per channel
//   causal_conv_fft  depthwise causal conv, D 768, L 1024, L taps (the FFT path)
//   two_sided_fft    the same, both directions (two FFT convolutions)
//   rg_lru           D 1024, L 4096 (per channel)
//   softmax_attention  4 heads, E 64, P 64, L 512 (query rows)
//   linear_attention 4 heads, E 64, P 64, L 1024 (value channels)
//   retnet           4 heads, E 64, P 64, L 1024 (value channels)
// Inputs seeded normal values, bound outside the timed loop. Counter items:
// output entries (channels × L) per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/causal_conv/two_sided.hpp"
#include "mixlens/ops/hyena.hpp"
#include "mixlens/ops/linear_attention.hpp"
#include "mixlens/ops/retnet.hpp"
#include "mixlens/ops/rg_lru.hpp"
#include "mixlens/ops/softmax_attention.hpp"
#include "mixlens/ops/ssd.hpp"
#include "mixlens/scan.hpp"

namespace {

using namespace mixlens;
using T = float;

matrix<T> normal_matrix(index_t rows, index_t cols, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  matrix<T> m(rows, cols);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = T(normal(gen));
  return m;
}

// Times view.apply(x, y, policy); the owner `op` stays alive meanwhile.
template <class Op>
void run_apply(benchmark::State& state, const Op& op, const matrix<T>& x, int threads) {
  const auto& v = view_of(op);
  matrix<T> y(v.out_channels(), v.length());
  const sequence_parallel_scan policy{.threads = threads};
  for (auto _ : state) {
    v.apply(x.view(), y.view(), policy);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * v.out_channels() * v.length());
}

void ssd_apply(benchmark::State& s, int threads) {
  const index_t H = 8, P = 64, N = 64, L = s.range(0);
  auto mixer = ssd_mixer<T>::init(H, P, N, 1);
  mixer.chunk = 64;
  const auto x = normal_matrix(H * P, L, 2);
  const auto op = mixer.bind(x.view(), {.skip = true});
  run_apply(s, op, x, threads);
}

void hyena_apply(benchmark::State& s, int threads) {
  const index_t D = 768, L = s.range(0);
  hyena_config c;
  c.d_model = D, c.l_max = L, c.order = 2, c.seed = 3;
  const hyena_mixer<T> mixer(c);
  const auto u = normal_matrix(D, L, 4), v = normal_matrix(D, L, 5);
  const auto op = mixer.bind(u.view());
  run_apply(s, op, v, threads);
}

void conv_apply(benchmark::State& s, int threads) {
  const index_t D = 768, L = s.range(0);
  const auto k = normal_matrix(D, L, 6), x = normal_matrix(D, L, 7);
  const causal_conv_operator<T, short_conv_kind> op(k.view(), {}, L);
  run_apply(s, op, x, threads);
}

void two_sided_apply(benchmark::State& s, int threads) {
  const index_t D = 768, L = s.range(0);
  const auto kf = normal_matrix(D, L, 8), kb = normal_matrix(D, L, 9), x = normal_matrix(D, L, 10);
  using conv = causal_conv_operator<T, short_conv_kind>;
  const two_sided_conv_operator<T, short_conv_kind> op(conv(kf.view(), {}, L), conv(kb.view(), {}, L));
  run_apply(s, op, x, threads);
}

void rg_lru_apply(benchmark::State& s, int threads) {
  const index_t D = 1024, L = s.range(0);
  const auto x = normal_matrix(D, L, 11);
  const auto op = rg_lru_mixer<T>::init(D, 12).bind(x.view());
  run_apply(s, op, x, threads);
}

constexpr index_t attn_model = 256, attn_heads = 4, attn_key = 64, attn_value = 64;

template <class Mixer>
void attention_apply(benchmark::State& s, int threads, const Mixer& mixer) {
  const auto x = normal_matrix(attn_model, s.range(0), 13);
  const auto v = mixer.values(x.view());
  const auto op = mixer.bind(x.view());
  run_apply(s, op, v, threads);
}

void softmax_apply(benchmark::State& s, int threads) {
  attention_apply(s, threads, softmax_attention_mixer<T>::init(attn_model, attn_heads, attn_key, attn_value, 14));
}
void linear_apply(benchmark::State& s, int threads) {
  attention_apply(s, threads, linear_attention_mixer<T>::init(attn_model, attn_heads, attn_key, attn_value, 15));
}
void retnet_apply(benchmark::State& s, int threads) {
  attention_apply(s, threads, retnet_mixer<T>::init(attn_model, attn_heads, attn_key, attn_value, 16));
}

std::string threads_label(int threads) {
  return threads == 0 ? "all(" + std::to_string(host_threads(0)) + ")" : std::to_string(threads);
}

const bool registered = [] {
  struct entry {
    const char* name;
    void (*fn)(benchmark::State&, int);
    index_t length;
  };
  const entry entries[] = {
      {"ssd", ssd_apply, 1024},           {"hyena", hyena_apply, 1024},
      {"causal_conv_fft", conv_apply, 1024}, {"two_sided_fft", two_sided_apply, 1024},
      {"rg_lru", rg_lru_apply, 4096},     {"softmax_attention", softmax_apply, 512},
      {"linear_attention", linear_apply, 1024}, {"retnet", retnet_apply, 1024},
  };
  for (const auto& e : entries)
    for (int threads : {1, 2, 0})
      benchmark::RegisterBenchmark(("host_apply/" + std::string(e.name) + "/float/threads:" + threads_label(threads)).c_str(),
                                   [fn = e.fn, threads](benchmark::State& s) { fn(s, threads); })
          ->Arg(e.length)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  return true;
}();

}  // namespace
