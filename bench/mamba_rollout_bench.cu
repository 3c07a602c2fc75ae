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
//   gpu_perturbed/<B>/<L>/<tf32>  B distinct perturbed sequences through the batched evaluator
//                      (models::batch_target_evaluator: batched forward, logits at the target
//                      only); gpu_perturbed_one_by_one: the same sequences one forward pass each
//   gpu_faithfulness/<L>/<steps>/<tf32>  what mixlens-eval --device cuda does per sequence: the six
//                      methods' attributions and 10 random draws, MoRF and LeRF curves of
//                      <steps> steps in replace mode; tf32: the evaluator's products on TF32 (target: 100 sequences at L 512, 20 steps < 2 min)
//   cpu_forward, cpu_rollout  the CPU path (models/), one thread (target < 10 s at L = 128)
// Wall-clock times; the model's creation and upload are outside the timing.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/attribute.hpp"
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

// B sequences of length L, each `tokens(L)` with a different position replaced.
std::vector<analysis::perturbed_sequence> perturbed(index_t B, index_t L) {
  std::vector<analysis::perturbed_sequence> out;
  for (index_t b = 0; b < B; ++b) {
    auto t = tokens(L);
    t[static_cast<std::size_t>(b % (L - 1))] = 0;
    if (b >= L - 1) t[static_cast<std::size_t>((b / (L - 1)) % (L - 1))] = 1;
    out.push_back({std::move(t), L - 1});
  }
  return out;
}

void perturbed_counters(benchmark::State& state, index_t B, index_t L) {
  state.counters["sequences_per_second"] = benchmark::Counter(double(B), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens_per_second"] = benchmark::Counter(double(B * L), benchmark::Counter::kIsIterationInvariantRate);
}

// The evaluator's backend: fp32 products (range 2 = 0) or TF32 tensor cores (1).
const gpu::device_backend& perturbed_backend(bool tf32) {
  static const gpu::device_backend fp32, tf32_be(nullptr, gpu::gemm_precision::tf32);
  return tf32 ? tf32_be : fp32;
}

template <bool Batched>
void gpu_perturbed(benchmark::State& state) {
  if (!need_device(state)) return;
  const index_t B = state.range(0), L = state.range(1);
  const auto& be = Batched ? perturbed_backend(state.range(2) != 0) : backend();
  const auto w = device_model().view();
  const auto batch = perturbed(B, L);
  const batch_target_evaluator evaluate(be, w);
  const index_t V = w.vocab_size();
  const auto once = [&] {
    if constexpr (Batched) {
      auto r = evaluate(std::span<const analysis::perturbed_sequence>(batch), 7);
      benchmark::DoNotOptimize(r.data());
    } else {
      for (const auto& s : batch) {
        const auto logits = gpu::mamba_forward(be, device_model(), std::span<const index_t>(s.tokens));
        auto row = be.download(logits.data() + s.target_position * V, V);
        auto value = models::detail::target_value(std::span<const float>(row), 7);
        benchmark::DoNotOptimize(value);
      }
    }
  };
  once();
  for (auto _ : state) once();
  perturbed_counters(state, B, L);
}

void gpu_faithfulness(benchmark::State& state) {
  if (!need_device(state)) return;
  const index_t L = state.range(0), steps = state.range(1), draws = 10;
  const auto& be = backend();
  const auto w = device_model().view();
  const auto t = tokens(L);
  const std::span<const index_t> span(t);
  const batch_target_evaluator evaluate(perturbed_backend(state.range(2) != 0), w);
  const attribution_method methods[] = {attribution_method::raw,        attribution_method::rollout,
                                        attribution_method::mamba_attr, attribution_method::grad_input,
                                        attribution_method::attn_grad,  attribution_method::lrp,
                                        attribution_method::random};
  const faithfulness_run_options options{.curves = {.steps = steps}, .random_draws = draws};
  const auto once = [&] {
    const auto r = faithfulness_of_methods(be, w, span, std::span<const attribution_method>(methods), {}, options,
                                           evaluate);
    benchmark::DoNotOptimize(r.data());
  };
  once();
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) once();
  const double per = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
                     double(state.iterations());
  state.counters["perturbed_sequences"] = double(2 * (steps + 1) * (draws + 6));
  state.counters["seconds_for_100"] = 100 * per;
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
BENCHMARK(gpu_perturbed<true>)->Name("gpu_perturbed")->ArgNames({"B", "L", "tf32"})
    ->Args({128, 512, 0})->Args({42, 512, 0})->Args({128, 512, 1})->Unit(benchmark::kMillisecond)->UseRealTime()
    ->MinTime(1.0);
BENCHMARK(gpu_perturbed<false>)->Name("gpu_perturbed_one_by_one")->ArgNames({"B", "L", "tf32"})
    ->Args({128, 512, 0})->Args({42, 512, 0})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(gpu_faithfulness)->ArgNames({"L", "steps", "tf32"})->Args({512, 20, 0})->Args({512, 20, 1})
    ->Unit(benchmark::kSecond)->UseRealTime()->Iterations(3);
BENCHMARK(cpu_forward)->Arg(128)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
BENCHMARK(cpu_rollout)->Arg(128)->Unit(benchmark::kSecond)->UseRealTime()->Iterations(1);
