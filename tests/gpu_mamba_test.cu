// The Mamba language model and its hidden attention on the GPU against the CPU
// path (models/) and the transformers references in tests/data/reference:
// logits, every layer's signals, α and the unified form, channel maps, raw
// attention, rollout, the reconstruction self-test, chunking, errors.
#define BOOST_TEST_MODULE gpu_mamba
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/gpu_testing.cuh"
#include "common/oracles.hpp"
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/attention_maps.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/mamba_random.hpp"

namespace {

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;

// MIXLENS_TEST_DATA_DIR in the environment overrides the source tree's copy (for
// a binary run on another machine).
const fs::path data_dir = std::getenv("MIXLENS_TEST_DATA_DIR") ? fs::path(std::getenv("MIXLENS_TEST_DATA_DIR"))
                                                               : fs::path(__FILE__).parent_path() / "data";

struct fixture_case {
  const char* name;
  int sequences;
};
const fixture_case fixtures[] = {{"mamba_tied_fp32", 3}, {"mamba_bias_bf16", 2}, {"mamba_ss_f16", 1}, {"mamba_demo", 1}};

fs::path reference(const std::string& model, const std::string& file) { return data_dir / "reference" / model / file; }

// max |got − want| / max |want|.
double rel(const float* got, const float* want, index_t n) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return diff / (scale > 0 ? scale : 1);
}
double rel(const matrix<float>& got, const matrix<float>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  return rel(got.data(), want.data(), got.size());
}
double rel_device(const float* device, const matrix<float>& want) {
  const auto got = gpu::download_matrix(device, want.extent(0), want.extent(1));
  return rel(got, want);
}

// What the CPU path gives for one sequence in one form.
struct cpu_run {
  matrix<float> logits;
  std::vector<matrix<float>> x, u, delta, y, mean, raw;
  tensor<float, 3> alpha0;  // layer 0's matrices
  matrix<float> raw_average, rollout;
};

cpu_run run_cpu(const mamba_model<float>& m, const std::vector<index_t>& tokens, attention_form form) {
  cpu_run r;
  attention_rollout<float> roll(static_cast<index_t>(tokens.size()));
  r.logits = for_each_layer_attention(m, std::span<const index_t>(tokens), form, {},
                                      [&](const mamba_layer_signals<float>& s, tensor_view<const float, 3> a) {
                                        r.x.push_back(s.x);
                                        r.u.push_back(s.u);
                                        r.delta.push_back(s.delta);
                                        r.y.push_back(s.y);
                                        r.mean.push_back(aggregate_channels(a));
                                        r.raw.push_back(raw_attention_layer(a));
                                        roll.add(r.mean.back().view());
                                        if (s.layer == 0) {
                                          r.alpha0 = tensor<float, 3>(a.extent(0), a.extent(1), a.extent(2));
                                          std::copy_n(a.data_handle(), a.extent(0) * a.extent(1) * a.extent(2),
                                                      r.alpha0.data());
                                        }
                                      });
  r.raw_average = average_maps(r.raw);
  r.rollout = roll.result();
  return r;
}

struct worst {
  double logits = 0, signals = 0, alpha = 0, maps = 0, rollout = 0, self_test = 0;
  void report(const std::string& what) const {
    BOOST_TEST_MESSAGE(what << ": GPU vs CPU max relative error: logits " << logits << ", signals " << signals
                            << ", layer-0 matrices " << alpha << ", maps (mean, raw) " << maps << ", rollout "
                            << rollout << "; self-test " << self_test);
  }
};

// Runs the GPU path on one sequence and compares every result with the CPU's.
void check_gpu(const mamba_model<float>& m, const gpu::device_mamba_model& dm, const std::vector<index_t>& tokens,
               attention_form form, std::size_t chunk_bytes, worst& w, const std::string& what) {
  const cpu_run cpu = run_cpu(m, tokens, form);
  const index_t L = static_cast<index_t>(tokens.size());
  gpu::device_attention att(chunk_bytes);
  gpu::device_rollout roll(L);
  gpu::device_map_average raw_avg(L);
  gpu::device_buffer<float> map(L * L), raw(L * L), minmax(2), full;
  const auto logits = gpu::mamba_forward(dm, std::span<const index_t>(tokens), [&](const gpu::device_mamba_layer_signals& s) {
    const auto k = static_cast<std::size_t>(s.layer);
    const index_t D = s.channels;
    double sig = rel_device(s.x, cpu.x[k]);
    sig = std::max(sig, rel_device(s.u, cpu.u[k]));
    sig = std::max(sig, rel_device(s.delta, cpu.delta[k]));
    sig = std::max(sig, rel_device(s.y, cpu.y[k]));
    BOOST_TEST(sig <= 1e-5, what << " layer " << k << ": signals error " << sig);
    w.signals = std::max(w.signals, sig);

    std::vector<float> host_alpha;
    if (k == 0) host_alpha.resize(static_cast<std::size_t>(D * L * L));
    att.aggregate(s, form, channel_reduction::mean, map.data(), minmax.data(), k == 0 ? host_alpha.data() : nullptr);
    gpu::raw_attention_map(map.data(), minmax.data(), L, raw.data(), s.stream);
    roll.add(map.data());
    raw_avg.add(raw.data());
    const double maps = std::max(rel_device(map.data(), cpu.mean[k]), rel_device(raw.data(), cpu.raw[k]));
    BOOST_TEST(maps <= 1e-4, what << " layer " << k << ": maps error " << maps);
    w.maps = std::max(w.maps, maps);

    if (k == 0) {  // the whole tensor: through the chunked copy and computed in one piece
      const double a = rel(host_alpha.data(), cpu.alpha0.data(), D * L * L);
      full = gpu::device_buffer<float>(D * L * L);
      att.compute(s, form, full.data());
      const auto direct = full.to_host();
      const double b = rel(direct.data(), cpu.alpha0.data(), D * L * L);
      BOOST_TEST(std::max(a, b) <= 1e-4, what << ": layer 0 matrices error " << a << " (chunked copy), " << b);
      w.alpha = std::max({w.alpha, a, b});
    }
    const auto e = att.check_reconstruction(s);
    BOOST_TEST(std::max(e.paper, e.unified) <= 1e-4,
               what << " layer " << k << ": self-test " << e.paper << ", " << e.unified);
    w.self_test = std::max({w.self_test, e.paper, e.unified});
  });
  const double le = rel_device(logits.data(), cpu.logits);
  BOOST_TEST(le <= 1e-5, what << ": logits error vs CPU " << le);
  w.logits = std::max(w.logits, le);
  const double re = std::max(rel(roll.to_host(), cpu.rollout), rel(raw_avg.to_host(), cpu.raw_average));
  BOOST_TEST(re <= 1e-4, what << ": rollout / raw average error " << re);
  w.rollout = std::max(w.rollout, re);
}

mamba_config random_config(index_t layers, bool biases) {
  mamba_config c;
  c.vocab_size = 50;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.state_size = 16;
  c.conv_kernel = 4;
  c.time_step_rank = 3;
  c.num_layers = layers;
  c.use_bias = biases;
  c.use_conv_bias = biases;
  c.tie_embeddings = !biases;
  return c;
}

std::vector<index_t> random_tokens(index_t L, index_t vocab, std::uint64_t seed) {
  mixlens::detail::splitmix64 rng(seed);
  std::vector<index_t> t(static_cast<std::size_t>(L));
  for (auto& v : t) v = static_cast<index_t>(rng.uniform() * double(vocab)) % vocab;
  return t;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(gpu_mamba, *mixlens::testing::requires_device())

BOOST_AUTO_TEST_CASE(fixtures_match_cpu_and_transformers) {
  for (const auto& fx : fixtures) {
    const auto m = load_mamba<float>(data_dir / fx.name);
    const gpu::device_mamba_model dm(m);
    double vs_reference = 0;
    for (const auto form : {attention_form::paper, attention_form::unified}) {
      worst w;
      for (int s = 0; s < fx.sequences; ++s) {
        const auto tokens = io::read_npy(reference(fx.name, "tokens_" + std::to_string(s) + ".npy")).as<index_t>();
        const std::string what = std::string(fx.name) + " sequence " + std::to_string(s) + " (" +
                                 std::string(to_string(form)) + ")";
        check_gpu(m, dm, tokens, form, gpu::device_attention::default_chunk_bytes, w, what);
        // The logits against transformers directly.
        const auto logits = gpu::mamba_forward(dm, std::span<const index_t>(tokens));
        const auto ref = io::read_npy(reference(fx.name, "logits_" + std::to_string(s) + ".npy"));
        const auto want = ref.as<float>();
        const auto got = gpu::download_matrix(logits.data(), ref.shape.at(0), ref.shape.at(1));
        const double e = rel(got.data(), want.data(), got.size());
        BOOST_TEST(e <= 1e-4, what << ": logits error vs transformers " << e);
        vs_reference = std::max(vs_reference, e);
      }
      w.report(std::string(fx.name) + " (" + std::string(to_string(form)) + ")");
    }
    BOOST_TEST_MESSAGE(fx.name << ": GPU logits vs transformers max relative error " << vs_reference);
  }
}

BOOST_AUTO_TEST_CASE(longer_random_model_and_channel_chunks) {
  // L = 300 spans several α tiles and several block-wide steps per row; a chunk
  // of one channel and one of 7 (not dividing D = 40) exercise the chunking.
  const bool small = std::getenv("MIXLENS_GPU_TEST_SMALL") != nullptr;
  const index_t L = small ? 130 : 300;
  for (const bool biases : {false, true}) {
    const auto m = random_mamba<float>(random_config(2, biases), biases ? 7 : 3);
    const gpu::device_mamba_model dm(m);
    const auto tokens = random_tokens(L, m.vocab_size(), 11);
    for (const auto form : {attention_form::paper, attention_form::unified})
      for (const std::size_t chunk : {std::size_t(4) * L * L, std::size_t(28) * L * L, std::size_t(1) << 30}) {
        worst w;
        const std::string what = std::string("random model") + (biases ? " with biases" : "") + " L " +
                                 std::to_string(L) + " (" + std::string(to_string(form)) + ", " +
                                 std::to_string(chunk / (4 * L * L)) + " channels per chunk)";
        check_gpu(m, dm, tokens, form, chunk, w, what);
        w.report(what);
      }
  }
}

BOOST_AUTO_TEST_CASE(channel_reductions_and_min_max) {
  const auto m = random_mamba<float>(random_config(1, true), 5);
  const gpu::device_mamba_model dm(m);
  const auto tokens = random_tokens(70, m.vocab_size(), 2);
  const index_t L = 70;
  tensor<float, 3> alpha;
  (void)for_each_layer_attention(m, std::span<const index_t>(tokens), attention_form::paper, {},
                                 [&](const mamba_layer_signals<float>&, tensor_view<const float, 3> a) {
                                   alpha = tensor<float, 3>(a.extent(0), a.extent(1), a.extent(2));
                                   std::copy_n(a.data_handle(), alpha.size(), alpha.data());
                                 });
  const tensor_view<const float, 3> av(alpha.view());
  gpu::device_attention att(std::size_t(3) * L * L * 4);
  gpu::device_buffer<float> map(L * L), minmax(2);
  (void)gpu::mamba_forward(dm, std::span<const index_t>(tokens), [&](const gpu::device_mamba_layer_signals& s) {
    for (const auto r : {channel_reduction::mean, channel_reduction::abs_mean, channel_reduction::relu_mean}) {
      att.aggregate(s, attention_form::paper, r, map.data(), minmax.data());
      const double e = rel_device(map.data(), aggregate_channels(av, r));
      BOOST_TEST(e <= 1e-4, "reduction " << int(r) << ": error " << e);
    }
    const auto mm = minmax.to_host();
    const auto [lo, hi] = std::minmax_element(alpha.data(), alpha.data() + alpha.size());
    BOOST_TEST(std::abs(mm[0] - *lo) <= 1e-4 * std::max(std::abs(*lo), std::abs(*hi)));
    BOOST_TEST(std::abs(mm[1] - *hi) <= 1e-4 * std::max(std::abs(*lo), std::abs(*hi)));
  });
}

BOOST_AUTO_TEST_CASE(min_max_normalization) {
  for (const index_t n : {1, 7, 1000, 100003}) {
    auto host = testing::random_matrix<float>(1, n, static_cast<std::uint64_t>(n));
    gpu::device_buffer<float> d(n);
    d.upload(host.data());
    gpu::normalize_min_max(d.data(), n);
    normalize_min_max(host.data(), n);
    const auto got = d.to_host();
    BOOST_TEST(rel(got.data(), host.data(), n) <= 1e-6, "n " << n);
  }
  std::vector<float> constant(50, -3.5f);  // a constant input becomes zeros
  gpu::device_buffer<float> d(constant);
  gpu::normalize_min_max(d.data(), 50);
  for (const float v : d.to_host()) BOOST_TEST(v == 0.0f);
  std::vector<float> signs{-0.0f, 0.0f, -2.0f, 3.0f, -1.0f};  // min / max across signs and −0
  gpu::device_buffer<float> e(signs);
  gpu::device_buffer<float> mm(2);
  gpu::min_max(e.data(), 5, mm.data());
  const auto r = mm.to_host();
  BOOST_TEST(r[0] == -2.0f);
  BOOST_TEST(r[1] == 3.0f);
}

BOOST_AUTO_TEST_CASE(rollout_of_given_maps) {
  // Maps with a zero-sum row (left unnormalized) and ordinary rows.
  const index_t L = 33;
  std::vector<matrix<float>> maps;
  for (int k = 0; k < 3; ++k) maps.push_back(testing::random_matrix<float>(L, L, 40 + k));
  for (index_t j = 0; j < L; ++j) maps[1](4, j) = j == 4 ? -1.0f : 0.0f;
  gpu::device_rollout roll(L);
  gpu::device_buffer<float> d(L * L);
  for (const auto& m : maps) {
    d.upload(m.data());
    roll.add(d.data());
  }
  BOOST_TEST(roll.layers() == 3);
  const double e = rel(roll.to_host(), rollout(maps));
  BOOST_TEST(e <= 1e-5, "rollout error " << e);
}

BOOST_AUTO_TEST_CASE(errors) {
  const auto m = random_mamba<float>(random_config(1, false), 1);
  const gpu::device_mamba_model dm(m);
  const std::vector<index_t> bad{1, 50}, negative{-1}, none;
  testing::check_error([&] { (void)gpu::mamba_forward(dm, std::span<const index_t>(bad)); },
                       {"token 50 at position 1", "[0, 50)"});
  testing::check_error([&] { (void)gpu::mamba_forward(dm, std::span<const index_t>(negative)); }, {"token -1"});
  testing::check_error([&] { (void)gpu::mamba_forward(dm, std::span<const index_t>(none)); }, {"no tokens"});
  testing::check_error([] { gpu::device_rollout r(0); }, {"device_rollout", "length"});
  testing::check_error([] { gpu::device_map_average a(0); }, {"device_map_average", "length"});
  testing::check_error([] { gpu::device_map_average a(3); (void)a.to_host(); }, {"at least one map"});
  const std::vector<index_t> tokens{1, 2, 3};
  gpu::device_attention att;
  gpu::device_buffer<float> out(40 * 9);
  (void)gpu::mamba_forward(dm, std::span<const index_t>(tokens), [&](const gpu::device_mamba_layer_signals& s) {
    testing::check_error([&] { att.compute(s, attention_form::paper, 39, 2, out.data()); }, {"channels", "[0, 40)"});
    testing::check_error([&] { att.compute(s, attention_form::paper, -1, 1, out.data()); }, {"channels"});
  });
}

BOOST_AUTO_TEST_SUITE_END()
