// Hidden attention of a whole Mamba language model, end to end: a random
// Mamba-130m-sized model (d_model 768, 24 layers, d_inner 1536, N 16, vocab
// 50280; seeded, built in memory) run on L tokens, every layer's α reduced to its
// channel mean and rolled out, the rollout copied to the host.
//   gpu_forward        the forward pass alone (logits stay on the device)
//   gpu_rollout        forward + per-layer channel-mean α + rollout (target < 1 s at L = 1024 on an H200)
//   gpu_rollout_raw    the same plus min / max, raw maps and their average (what mixlens-attn computes)
//   gpu_rollout_direct, gpu_rollout_raw_direct  the same from the fused aggregate, no D × L × L tensor
//   gpu_rollout_unified  with the unified form instead of the paper's α
//   gpu_attribution/<method>  one attribution end to end (forward, backward, maps):
//                      grad-input, lrp, mamba-attr, attn-grad (target < 1 s at L = 1024)
//   cpu_forward, cpu_rollout  the CPU path (models/), one thread (target < 10 s at L = 128)
// Wall-clock times; the model's creation and upload are outside the timing.
#include <benchmark/benchmark.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/mamba_attribution.hpp"
#include "mixlens/models/mamba_random.hpp"

namespace {

using namespace mixlens;
using namespace mixlens::models;

mamba_config mamba_130m() {
  mamba_config c;
  c.vocab_size = 50280;
  c.hidden_size = 768;
  c.intermediate_size = 1536;
  c.state_size = 16;
  c.conv_kernel = 4;
  c.time_step_rank = 48;
  c.num_layers = 24;
  return c;
}

const mamba_model<float>& host_model() {
  static const mamba_model<float> m = random_mamba<float>(mamba_130m(), 130);
  return m;
}

const gpu::device_mamba_weights& device_model() {
  static const gpu::device_mamba_weights m = gpu::to_device(host_model());
  return m;
}

const gpu::device_backend& backend() {
  static const gpu::device_backend be;
  return be;
}

std::vector<index_t> tokens(index_t L) {
  mixlens::detail::splitmix64 rng(static_cast<std::uint64_t>(L));
  std::vector<index_t> t(static_cast<std::size_t>(L));
  for (auto& v : t) v = static_cast<index_t>(rng.next() % 50277);
  return t;
}

bool need_device(benchmark::State& state) {
  std::string reason;
  if (gpu::device_available(&reason)) return true;
  state.SkipWithError(reason.c_str());
  return false;
}

void counters(benchmark::State& state, index_t L) {
  state.counters["tokens_per_second"] = benchmark::Counter(double(L), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["layers"] = double(mamba_130m().num_layers);
  state.counters["alpha_GB_per_layer"] = 4.0 * double(mamba_130m().intermediate_size) * double(L * L) / 1e9;
}

void gpu_forward(benchmark::State& state) {
  if (!need_device(state)) return;
  const index_t L = state.range(0);
  const auto& m = device_model();
  const auto t = tokens(L);
  (void)gpu::mamba_forward(backend(), m, std::span<const index_t>(t));  // warm-up: cuBLAS and module loading
  for (auto _ : state) {
    auto logits = gpu::mamba_forward(backend(), m, std::span<const index_t>(t));
    benchmark::DoNotOptimize(logits.data());
  }
  counters(state, L);
}

// rollout / rollout_raw: analysis::aggregate_operator (on the device: the
// D × L × L tensor in chunks, reduced); *_direct: the same maps straight from
// the signals through the fused aggregate (gpu::aggregate_channels), no tensor.
enum class what { rollout, rollout_raw, unified, rollout_direct, rollout_raw_direct };

template <what W>
void gpu_rollout(benchmark::State& state) {
  if (!need_device(state)) return;
  const index_t L = state.range(0);
  const auto& m = device_model();
  const auto t = tokens(L);
  const attention_form form = W == what::unified ? attention_form::unified : attention_form::paper;
  const auto& be = backend();
  auto map = be.alloc(L * L), raw = be.alloc(L * L), minmax = be.alloc(3);
  auto acc = be.alloc<double>(L * L);
  analysis::rollout_accumulator<gpu::device_backend> roll(be, L);
  analysis::map_average<gpu::device_backend> raw_average(be, L * L);
  const auto once = [&] {
    roll.reset();
    raw_average.reset();
    auto logits = gpu::mamba_forward(be, m, std::span<const index_t>(t), [&](const mamba_layer_signals<float>& s) {
      constexpr bool raw_maps = W == what::rollout_raw || W == what::rollout_raw_direct;
      float* mm = raw_maps ? minmax.data() : nullptr;
      if (W == what::rollout_direct || W == what::rollout_raw_direct) {
        be.fill_zero(acc.data(), L * L);
        if (mm) be.reset_min_max(mm);
        gpu::aggregate_channels(s.ssm(), channel_reduction::mean, acc.data(), mm, be.stream());
        be.mean(acc.data(), L * L, double(s.channels()), map.data());
      } else if (form == attention_form::paper)
        analysis::aggregate_operator(be, s.ssm(), channel_reduction::mean, map.data(), mm);
      else
        analysis::aggregate_operator(be, unified_operator(be, s, {.offset = false}), channel_reduction::mean, map.data(), mm);
      roll.add(map.data());
      if (raw_maps) {
        analysis::raw_attention(be, map.data(), minmax.data(), L, raw.data());
        raw_average.add(raw.data());
      }
    });
    auto result = be.download(roll.result(), L * L);
    benchmark::DoNotOptimize(result.data());
    if (W == what::rollout_raw || W == what::rollout_raw_direct) {
      raw_average.result(raw.data());
      auto r = be.download(raw.data(), L * L);
      benchmark::DoNotOptimize(r.data());
    }
    benchmark::DoNotOptimize(logits.data());
  };
  once();  // warm-up: workspace allocation, module loading
  for (auto _ : state) once();
  counters(state, L);
}

enum class method { grad_input, lrp, mamba_attr, attn_grad };

template <method M>
void gpu_attribution(benchmark::State& state) {
  const index_t L = state.range(0);
  const auto& be = backend();
  const auto w = device_model().view();
  const auto t = tokens(L);
  const std::span<const index_t> span(t);
  const auto once = [&] {
    const attribution_result r = M == method::grad_input ? grad_input(be, w, span)
                                 : M == method::lrp      ? lrp(be, w, span)
                                 : M == method::mamba_attr ? mamba_attr(be, w, span)
                                                           : attn_grad(be, w, span);
    benchmark::DoNotOptimize(r.scores.data());
  };
  once();
  for (auto _ : state) once();
  counters(state, L);
}

void cpu_forward(benchmark::State& state) {
  const index_t L = state.range(0);
  const auto& m = host_model();
  const auto t = tokens(L);
  for (auto _ : state) {
    auto logits = mamba_forward(m, std::span<const index_t>(t));
    benchmark::DoNotOptimize(logits.data());
  }
  counters(state, L);
}

void cpu_rollout(benchmark::State& state) {
  const index_t L = state.range(0);
  const auto& m = host_model();
  const auto t = tokens(L);
  for (auto _ : state) {
    analysis::attention_rollout<float> roll(L);
    auto logits = for_each_layer_attention(m, std::span<const index_t>(t), attention_form::paper, {},
                                           [&](const mamba_layer_signals<float>&, tensor_view<const float, 3> a) {
                                             roll.add(analysis::aggregate_channels(a).view());
                                           });
    benchmark::DoNotOptimize(logits.data());
    benchmark::DoNotOptimize(roll.result().data());
  }
  counters(state, L);
}

}  // namespace

BENCHMARK(gpu_forward)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(gpu_rollout<what::rollout>)->Name("gpu_rollout")->Arg(1024)->Arg(2048)->Arg(8192)->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(1.0);
BENCHMARK(gpu_rollout<what::rollout_direct>)->Name("gpu_rollout_direct")->Arg(1024)->Arg(2048)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(gpu_rollout<what::rollout_raw>)->Name("gpu_rollout_raw")->Arg(1024)->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(1.0);
BENCHMARK(gpu_rollout<what::rollout_raw_direct>)->Name("gpu_rollout_raw_direct")->Arg(1024)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(gpu_rollout<what::unified>)->Name("gpu_rollout_unified")->Arg(1024)->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(1.0);
BENCHMARK(gpu_attribution<method::grad_input>)->Name("gpu_attribution/grad-input")->Arg(1024)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(gpu_attribution<method::lrp>)->Name("gpu_attribution/lrp")->Arg(1024)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(gpu_attribution<method::mamba_attr>)->Name("gpu_attribution/mamba-attr")->Arg(1024)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(gpu_attribution<method::attn_grad>)->Name("gpu_attribution/attn-grad")->Arg(1024)
    ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
BENCHMARK(cpu_forward)->Arg(128)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(cpu_rollout)->Arg(128)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
