// The Mamba, Falcon-Mamba and Mamba-2 language models and their hidden
// attention on both backends: one run body (forward pass, every layer's
// signals, matrices of both forms, channel maps, raw attention, rollout, the
// reconstruction self-test) executed by mixlens::host_backend and by
// gpu::device_backend for every family, the results compared with each other,
// with the host tensor maps, and the logits with the transformers references in
// tests/data/reference.
#define BOOST_TEST_MODULE gpu_mamba
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/batch_checks.hpp"
#include "common/gpu_testing.cuh"
#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/mamba_random.hpp"

namespace {

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;

const fs::path data_dir = testing::test_data_dir();

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  return testing::relative_error(got.data(), want.data(), static_cast<index_t>(got.size()));
}

// Everything one run produces, in host memory.
struct run_result {
  std::vector<float> logits, alpha0, raw_average, rollout;
  std::vector<std::vector<float>> x, u, delta, y, mean, raw;
  std::vector<reconstruction_error> self_test;
};

// The one run body, on either backend, for every family.
template <class Backend, class Weights>
run_result run(const Backend& be, const Weights& w, const std::vector<index_t>& tokens, attention_form form,
               std::size_t chunk_bytes) {
  run_result r;
  const index_t L = static_cast<index_t>(tokens.size());
  analysis::rollout_accumulator<Backend> roll(be, L);
  analysis::map_average<Backend> raw_average(be, L * L);
  auto map = be.alloc(L * L), raw = be.alloc(L * L), minmax = be.alloc(3);
  const auto logits = models::mamba_forward(be, w.view(), std::span<const index_t>(tokens), [&](const auto& s) {
    // the layer's matrices: per channel, or per head in Mamba-2's paper form
    const index_t D = form == attention_form::paper ? view_of(s.ssm()).out_channels() : s.channels();
    const auto get = [&](matrix_view<const float> m) { return be.download(m.data_handle(), m.size()); };
    r.x.push_back(get(s.x)), r.u.push_back(get(s.u)), r.delta.push_back(get(s.delta)), r.y.push_back(get(s.y));
    std::vector<float> alpha(s.layer == 0 ? static_cast<std::size_t>(D * L * L) : 0);
    float* copy = s.layer == 0 ? alpha.data() : nullptr;
    if (form == attention_form::paper)
      analysis::aggregate_operator(be, s.ssm(), channel_reduction::mean, map.data(), minmax.data(), copy, chunk_bytes);
    else
      analysis::aggregate_operator(be, unified_operator(be, s, {.offset = false}), channel_reduction::mean, map.data(), minmax.data(), copy,
                                   chunk_bytes);
    analysis::raw_attention(be, map.data(), minmax.data(), L, raw.data());
    raw_average.add(raw.data());
    roll.add(map.data());
    r.mean.push_back(be.download(map.data(), L * L));
    r.raw.push_back(be.download(raw.data(), L * L));
    if (s.layer == 0) r.alpha0 = std::move(alpha);
    r.self_test.push_back(check_reconstruction(be, s, chunk_bytes));
  });
  r.logits = be.download(logits.data(), L * w.view().vocab_size());
  raw_average.result(raw.data());
  r.raw_average = be.download(raw.data(), L * L);
  r.rollout = be.download(roll.result(), L * L);
  return r;
}

// Runs the body on both backends and compares every result.
template <class Model, class DeviceWeights>
double check_host_device(const Model& m, const DeviceWeights& dw, const std::vector<index_t>& tokens,
                         attention_form form, std::size_t chunk_bytes, const std::string& what) {
  const auto hw = host_weights(m);
  const host_backend<float> host;
  const gpu::device_backend device;
  const run_result h = run(host, hw, tokens, form, chunk_bytes), d = run(device, dw, tokens, form, chunk_bytes);
  const index_t L = static_cast<index_t>(tokens.size());
  double worst = 0;
  const auto expect = [&](double e, double tol, const std::string& part) {
    BOOST_TEST(e <= tol, what << ": " << part << " device vs host " << e);
    worst = std::max(worst, e);
  };
  expect(rel(d.logits, h.logits), 1e-5, "logits");
  for (std::size_t k = 0; k < h.x.size(); ++k) {
    const std::string layer = "layer " + std::to_string(k) + " ";
    expect(std::max({rel(d.x[k], h.x[k]), rel(d.u[k], h.u[k]), rel(d.delta[k], h.delta[k]), rel(d.y[k], h.y[k])}),
           1e-5, layer + "signals");
    expect(std::max(rel(d.mean[k], h.mean[k]), rel(d.raw[k], h.raw[k])), 1e-4, layer + "maps (mean, raw)");
    BOOST_TEST(std::max(h.self_test[k].paper, h.self_test[k].unified) <= 1e-4, what << ": host self-test " << layer);
    BOOST_TEST(std::max(d.self_test[k].paper, d.self_test[k].unified) <= 1e-4, what << ": device self-test " << layer);
  }
  expect(rel(d.alpha0, h.alpha0), 1e-4, "layer 0 matrices");
  expect(std::max(rel(d.rollout, h.rollout), rel(d.raw_average, h.raw_average)), 1e-4, "rollout / raw average");
  // The chunked maps against the host tensor functions on layer 0's tensor.
  const index_t D = static_cast<index_t>(h.alpha0.size()) / (L * L);
  const tensor_view<const float, 3> a0(h.alpha0.data(), D, L, L);
  const auto mean0 = analysis::aggregate_channels(a0), raw0 = analysis::raw_attention_layer(a0);
  expect(rel(h.mean[0], std::vector<float>(mean0.data(), mean0.data() + mean0.size())), 1e-6, "host mean map");
  expect(rel(h.raw[0], std::vector<float>(raw0.data(), raw0.data() + raw0.size())), 1e-6, "host raw map");
  return worst;
}

mamba_config random_config(index_t layers, bool biases) {
  mamba_config c;
  c.vocab_size = 50, c.hidden_size = 32, c.num_layers = layers;
  c.use_bias = biases, c.use_conv_bias = biases, c.tie_embeddings = !biases;
  c.state_size = 16, c.intermediate_size = 40, c.conv_kernel = 4, c.time_step_rank = 3;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_mamba, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(fixtures_match_host_and_transformers) {
  const gpu::device_backend be;
  for (const auto& fx : testing::all_fixtures()) {
    std::visit([&](const auto& m) {
      const auto dw = gpu::to_device(m);
      double vs_reference = 0, vs_host = 0;
      for (int s = 0; s < fx.sequences; ++s) {
        const auto tokens = testing::tokens_of(fx.name, s);
        for (const auto form : {attention_form::paper, attention_form::unified}) {
          const std::string what = std::string(fx.name) + " sequence " + std::to_string(s) + " (" +
                                   std::string(to_string(form)) + ")";
          vs_host = std::max(vs_host, check_host_device(m, dw, tokens, form, analysis::default_chunk_bytes, what));
        }
        const auto logits = models::mamba_forward(be, dw.view(), std::span<const index_t>(tokens), [](const auto&) {});
        const auto ref = io::read_npy(testing::reference(fx.name, "logits_" + std::to_string(s) + ".npy"));
        const double e = rel(be.download(logits.data(), logits.size()), ref.as<float>());
        BOOST_TEST(e <= 1e-4, fx.name << " sequence " << s << ": device logits vs transformers " << e);
        vs_reference = std::max(vs_reference, e);
      }
      BOOST_TEST_MESSAGE(fx.name << " (" << to_string(family_of(m)) << "): device vs host max relative error "
                                 << vs_host << ", device logits vs transformers " << vs_reference);
    }, load_language_model<float>(data_dir / fx.name));
  }
}

BOOST_AUTO_TEST_CASE(longer_random_model_and_channel_chunks) {
  // L = 300 spans several α tiles and several block-wide steps per row; a chunk
  // of one channel and one of 7 (not dividing D = 40) exercise the chunking.
  const bool small = std::getenv("MIXLENS_GPU_TEST_SMALL") != nullptr;
  const index_t L = small ? 130 : 300;
  for (const bool biases : {false, true}) {
    const auto m = random_mamba<float>(random_config(2, biases), biases ? 7 : 3);
    const auto dw = gpu::to_device(m);
    const auto tokens = testing::random_token_ids(L, m.vocab_size(), 11);
    for (const auto form : {attention_form::paper, attention_form::unified})
      for (const std::size_t chunk : {std::size_t(4) * L * L, std::size_t(28) * L * L, std::size_t(1) << 30}) {
        const std::string what = std::string("random model") + (biases ? " with biases" : "") + " L " +
                                 std::to_string(L) + " (" + std::string(to_string(form)) + ", " +
                                 std::to_string(chunk / (4 * L * L)) + " channels per chunk)";
        BOOST_TEST_MESSAGE(what << ": worst " << check_host_device(m, dw, tokens, form, chunk, what));
      }
  }
}

BOOST_AUTO_TEST_CASE(longer_mamba2_and_head_chunks) {
  // Several SSD chunks and α tiles; chunks of one head and of 4 (not dividing
  // 6) exercise the per-head chunking of the maps and the self-test.
  const bool small = std::getenv("MIXLENS_GPU_TEST_SMALL") != nullptr;
  const index_t L = small ? 130 : 300;
  for (const char* name : {"mamba2_groups_bf16", "mamba2_ss_mlp"}) {
    const auto m = load_mamba2<float>(data_dir / name);
    const auto dw = gpu::to_device(m);
    const auto tokens = testing::random_token_ids(L, std::min<index_t>(m.vocab_size(), 70), 13);
    for (const auto form : {attention_form::paper, attention_form::unified})
      for (const std::size_t chunk : {std::size_t(4) * L * L, std::size_t(16) * L * L, std::size_t(1) << 30}) {
        const std::string what = std::string(name) + " L " + std::to_string(L) + " (" + std::string(to_string(form)) +
                                 ", " + std::to_string(chunk / (4 * L * L)) + " matrices per chunk)";
        BOOST_TEST_MESSAGE(what << ": worst " << check_host_device(m, dw, tokens, form, chunk, what));
      }
  }
}

BOOST_AUTO_TEST_CASE(channel_reductions_and_min_max) {
  const auto m = random_mamba<float>(random_config(1, true), 5);
  const auto dw = gpu::to_device(m);
  const auto tokens = testing::random_token_ids(70, m.vocab_size(), 2);
  const index_t L = 70;
  tensor<float, 3> alpha;
  (void)for_each_layer_attention(m, std::span<const index_t>(tokens), attention_form::paper, {},
                                 [&](const mamba_layer_signals<float>&, tensor_view<const float, 3> a) {
                                   alpha = tensor<float, 3>(a.extent(0), a.extent(1), a.extent(2));
                                   std::copy_n(a.data_handle(), alpha.size(), alpha.data());
                                 });
  const tensor_view<const float, 3> av(alpha.view());
  const gpu::device_backend be;
  auto map = be.alloc(L * L), minmax = be.alloc(3);
  (void)gpu::mamba_forward(be, dw, std::span<const index_t>(tokens), [&](const mamba_layer_signals<float>& s) {
    for (const auto r : {channel_reduction::mean, channel_reduction::abs_mean, channel_reduction::relu_mean}) {
      analysis::aggregate_operator(be, s.ssm(), r, map.data(), minmax.data(), nullptr, std::size_t(3) * L * L * 4);
      const auto want = analysis::aggregate_channels(av, r);
      const double e = rel(be.download(map.data(), L * L), std::vector<float>(want.data(), want.data() + want.size()));
      BOOST_TEST(e <= 1e-4, "reduction " << int(r) << ": error " << e);
    }
    const auto mm = be.download(minmax.data(), 3);
    const auto [lo, hi] = std::minmax_element(alpha.data(), alpha.data() + alpha.size());
    BOOST_TEST(std::abs(mm[0] - *lo) <= 1e-4 * std::max(std::abs(*lo), std::abs(*hi)));
    BOOST_TEST(std::abs(mm[1] - *hi) <= 1e-4 * std::max(std::abs(*lo), std::abs(*hi)));
    BOOST_TEST(mm[2] == 0.0f);
  });
}

BOOST_AUTO_TEST_CASE(min_max_normalization_and_nan) {
  const gpu::device_backend be;
  const host_backend<float> host;
  for (const index_t n : {1, 7, 1000, 100003}) {
    auto data = testing::random_matrix<float>(1, n, static_cast<std::uint64_t>(n));
    gpu::device_buffer<float> d(n), mm(3);
    d.upload(data.data());
    be.min_max(d.data(), n, mm.data());
    be.normalize(d.data(), mm.data(), d.data(), n);
    analysis::normalize_min_max(data.data(), n);
    BOOST_TEST(rel(d.to_host(), std::vector<float>(data.data(), data.data() + n)) <= 1e-6, "n " << n);
  }
  std::vector<float> signs{-0.0f, 0.0f, -2.0f, 3.0f, -1.0f};  // min / max across signs and −0
  gpu::device_buffer<float> e(signs), mm(3);
  be.min_max(e.data(), 5, mm.data());
  auto r = mm.to_host();
  BOOST_TEST(r[0] == -2.0f);
  BOOST_TEST(r[1] == 3.0f);
  BOOST_TEST(r[2] == 0.0f);
  // A NaN is counted on both backends and turns the normalized map into NaN,
  // never into zeros.
  signs[3] = std::numeric_limits<float>::quiet_NaN();
  gpu::device_buffer<float> f(signs);
  be.min_max(f.data(), 5, mm.data());
  be.normalize(f.data(), mm.data(), f.data(), 5);
  r = mm.to_host();
  BOOST_TEST(r[2] == 1.0f);
  for (const float v : f.to_host()) BOOST_TEST(std::isnan(v));
  float hm[3];
  host.min_max(signs.data(), 5, hm);
  BOOST_TEST(hm[2] == 1.0f);
}

BOOST_AUTO_TEST_CASE(rollout_of_given_maps) {
  // Maps with a zero-sum row (left unnormalized) and ordinary rows.
  const index_t L = 33;
  std::vector<matrix<float>> maps;
  for (int k = 0; k < 3; ++k) maps.push_back(testing::random_matrix<float>(L, L, 40 + k));
  for (index_t j = 0; j < L; ++j) maps[1](4, j) = j == 4 ? -1.0f : 0.0f;
  const gpu::device_backend be;
  analysis::rollout_accumulator<gpu::device_backend> roll(be, L);
  gpu::device_buffer<float> d(L * L);
  for (const auto& m : maps) {
    d.upload(m.data());
    roll.add(d.data());
  }
  BOOST_TEST(roll.layers() == 3);
  const auto want = analysis::rollout(maps);
  const double e = rel(be.download(roll.result(), L * L), std::vector<float>(want.data(), want.data() + want.size()));
  BOOST_TEST(e <= 1e-5, "rollout error " << e);
}

BOOST_AUTO_TEST_CASE(batched_forward_and_evaluator) {
  // The host's body on the device, and the device's batched target rows
  // against the host's: plain, with biases, Falcon-Mamba, Mamba-2, and a random model
  // with a long batch of many channels.
  const gpu::device_backend device;
  const host_backend<float> host;
  const auto check = [&](const auto& m, index_t B, index_t L, const std::string& what) {
    const auto dw = gpu::to_device(m);
    const auto hw = host_weights(m);
    BOOST_TEST(testing::batch_forward_error(device, dw.view(), B, L, B, 1) <= 1e-5, what);
    BOOST_TEST(testing::batch_evaluator_error(device, dw.view(), L, 3) <= 1e-5, what << ", evaluator");
    const index_t V = m.vocab_size();
    const auto ids = testing::random_token_ids(B * L, V, 9);
    std::vector<index_t> positions;
    for (index_t b = 0; b < B; ++b) positions.push_back((5 * b + 1) % L);
    const batch_forward_t<gpu::device_backend, std::remove_cvref_t<decltype(dw.view())>> fd(device, dw.view(), B);
    const batch_forward_t<host_backend<float>, std::remove_cvref_t<decltype(hw.view())>> fh(host, hw.view(), B);
    const auto d = fd.target_logits(ids, positions);
    const auto h = fh.target_logits(ids, positions);
    BOOST_TEST(rel(device.download(d.data(), B * V), h) <= 1e-5, what << ": device vs host");
  };
  for (const char* name : {"mamba_demo", "mamba_bias_bf16", "falcon_mamba_fp32"})
    check(load_mamba<float>(data_dir / name), 5, 37, name);
  for (const char* name : {"mamba2_tied_fp32", "mamba2_groups_bf16", "mamba2_ss_mlp"})
    check(load_mamba2<float>(data_dir / name), 5, 37, name);
  check(random_mamba<float>(random_config(2, true), 4), 70, 129, "random model, B 70");
}

BOOST_AUTO_TEST_CASE(errors) {
  const auto m = random_mamba<float>(random_config(1, false), 1);
  const auto dw = gpu::to_device(m);
  const gpu::device_backend be;
  const std::vector<index_t> bad{1, 50}, negative{-1}, none;
  testing::check_error([&] { (void)gpu::mamba_forward(be, dw, std::span<const index_t>(bad)); },
                       {"token 50 at position 1", "[0, 50)"});
  testing::check_error([&] { (void)gpu::mamba_forward(be, dw, std::span<const index_t>(negative)); }, {"token -1"});
  testing::check_error([&] { (void)gpu::mamba_forward(be, dw, std::span<const index_t>(none)); }, {"no tokens"});
  testing::check_error([&] { analysis::rollout_accumulator<gpu::device_backend> r(be, 0); },
                       {"rollout_accumulator", "length"});
  testing::check_error([&] { analysis::map_average<gpu::device_backend> a(be, 0); }, {"map_average", "size"});
  testing::check_error([&] {
    analysis::map_average<gpu::device_backend> a(be, 3);
    gpu::device_buffer<float> out(3);
    a.result(out.data());
  }, {"at least one map"});
  const std::vector<index_t> tokens{1, 2, 3};
  gpu::device_buffer<float> out(40 * 9);
  (void)gpu::mamba_forward(be, dw, std::span<const index_t>(tokens), [&](const mamba_layer_signals<float>& s) {
    testing::check_error([&] { gpu::materialize_channels(s.ssm(), 39, 2, out.data()); }, {"channels", "[0, 40)"});
    testing::check_error([&] { gpu::materialize_channels(s.ssm(), -1, 1, out.data()); }, {"channels"});
  });
}

BOOST_AUTO_TEST_SUITE_END()
