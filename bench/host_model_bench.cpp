// Host language-model maps (mixlens_cpu_bench): the forward pass, every layer's
// channel-mean α with its range, raw maps and the rollout, as mixlens-attn
// computes them with --save-alpha none, on one backend (host_backend<float>):
//   cpu_model_maps/<model>/direct/<L>   the maps straight from the signals
//                                       (analysis::aggregate_operator: S6's
//                                       aggregate, no D × L × L tensor)
//   cpu_model_maps/<model>/tensor/<L>   the same through the materialized blocks
//                                       (analysis::aggregate_materialized), the
//                                       path before it, as the baseline
// Models: mamba130m (a random model with Mamba-130m's sizes: 24 layers, d_model
// 768, d_inner 1536, N 16, vocab 50280) and demo (the bundled 4-layer
// tests/data/mamba_demo). Counter tokens_per_second = L / time.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/mamba_model.hpp"
#include "mixlens/models/mamba_random.hpp"

namespace {

using namespace mixlens;
using namespace mixlens::models;

const mamba_model<float>& mamba130m() {
  static const mamba_model<float> m = [] {
    mamba_config c;
    c.vocab_size = 50280, c.hidden_size = 768, c.intermediate_size = 1536, c.num_layers = 24;
    c.state_size = 16, c.conv_kernel = 4, c.time_step_rank = 48;
    return random_mamba<float>(c, 1);
  }();
  return m;
}

const mamba_model<float>& demo() {
  static const mamba_model<float> m = load_mamba<float>(std::filesystem::path(MIXLENS_SOURCE_DIR) / "tests/data/mamba_demo");
  return m;
}

template <bool Direct>
void model_maps(benchmark::State& state, const mamba_model<float>& (*model)()) {
  const auto& m = model();
  const index_t L = state.range(0);
  std::vector<index_t> tokens(static_cast<std::size_t>(L));
  for (index_t t = 0; t < L; ++t) tokens[static_cast<std::size_t>(t)] = (t * 37 + 11) % m.vocab_size();
  const host_backend<float> be;
  const auto weights = host_weights(m);
  std::vector<float> map(static_cast<std::size_t>(L * L)), raw(map.size()), minmax(3);
  for (auto _ : state) {
    analysis::rollout_accumulator<host_backend<float>> roll(be, L);
    analysis::map_average<host_backend<float>> raw_average(be, L * L);
    auto logits = mamba_forward(be, weights.view(), std::span<const index_t>(tokens), [&](const auto& s) {
      if constexpr (Direct) analysis::aggregate_operator(be, s.ssm(), channel_reduction::mean, map.data(), minmax.data());
      else analysis::aggregate_materialized(be, s.ssm(), channel_reduction::mean, map.data(), minmax.data());
      analysis::raw_attention(be, map.data(), minmax.data(), L, raw.data());
      raw_average.add(raw.data());
      roll.add(map.data());
    });
    benchmark::DoNotOptimize(logits.data());
    benchmark::DoNotOptimize(roll.result());
  }
  state.counters["tokens_per_second"] = benchmark::Counter(double(L), benchmark::Counter::kIsIterationInvariantRate);
}

void direct_maps(benchmark::State& state, const mamba_model<float>& (*model)()) { model_maps<true>(state, model); }
void tensor_maps(benchmark::State& state, const mamba_model<float>& (*model)()) { model_maps<false>(state, model); }

}  // namespace

BENCHMARK_CAPTURE(direct_maps, mamba130m, &mamba130m)->Name("cpu_model_maps/mamba130m/direct")->Arg(128)
    ->Unit(benchmark::kSecond)->UseRealTime()->Iterations(3);
BENCHMARK_CAPTURE(tensor_maps, mamba130m, &mamba130m)->Name("cpu_model_maps/mamba130m/tensor")->Arg(128)
    ->Unit(benchmark::kSecond)->UseRealTime()->Iterations(3);
BENCHMARK_CAPTURE(direct_maps, demo, &demo)->Name("cpu_model_maps/demo/direct")->Arg(512)->Arg(2048)
    ->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK_CAPTURE(tensor_maps, demo, &demo)->Name("cpu_model_maps/demo/tensor")->Arg(512)
    ->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
