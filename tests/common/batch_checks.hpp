// The batched forwards (models/mamba_batch.hpp) and the batched evaluator
// (models::batch_target_evaluator) against one forward pass per sequence on
// the same backend: one body for the host (tests/models/attribute_test.cpp)
// and the device (tests/models/gpu_mamba_test.cu).
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/models/attribute.hpp"

namespace mixlens::testing {

inline std::vector<index_t> random_token_ids(index_t n, index_t vocab, std::uint64_t seed) {
  mixlens::detail::splitmix64 rng(seed);
  std::vector<index_t> t(static_cast<std::size_t>(n));
  for (auto& v : t) v = static_cast<index_t>(rng.uniform() * double(vocab)) % vocab;
  return t;
}

// max |batched − single| / max |single| over the target rows of B sequences
// of length L (positions spread over the sequence, the last included).
template <class Backend, class Weights>
double batch_forward_error(const Backend& be, const Weights& w, index_t B, index_t L, index_t max_batch,
                           std::uint64_t seed) {
  const index_t V = w.vocab_size();
  const auto ids = random_token_ids(B * L, V, seed);
  std::vector<index_t> positions;
  for (index_t b = 0; b < B; ++b) positions.push_back(b == 0 ? L - 1 : (7 * b + 3) % L);
  const models::batch_forward_t<Backend, Weights> forward(be, w, max_batch);
  const auto logits = forward.target_logits(ids, positions);
  const auto got = be.download(logits.data(), B * V);
  double diff = 0, scale = 0;
  for (index_t b = 0; b < B; ++b) {
    const std::span<const index_t> seq(ids.data() + b * L, static_cast<std::size_t>(L));
    const auto full = models::mamba_forward(be, w, seq, [](const auto&) {});
    const auto want = be.download(full.data() + positions[static_cast<std::size_t>(b)] * V, V);
    for (index_t v = 0; v < V; ++v) {
      const double g = double(got[static_cast<std::size_t>(b * V + v)]), r = double(want[static_cast<std::size_t>(v)]);
      if (!std::isfinite(g - r)) return INFINITY;
      diff = std::max(diff, std::abs(g - r)), scale = std::max(scale, std::abs(r));
    }
  }
  return diff / scale;
}

// The batched evaluator on a mixed batch — lengths L and L − 3 (as the remove
// mode makes), repeated sequences, passes split by max_batch and max_tokens —
// against one forward pass per sequence: the largest relative error of the
// logits and of the probabilities.
template <class Backend, class Weights>
double batch_evaluator_error(const Backend& be, const Weights& w, index_t L, std::uint64_t seed) {
  using T = typename Weights::value_type;
  const index_t V = w.vocab_size(), token = 3 % V;
  std::vector<analysis::perturbed_sequence> batch;
  for (index_t s = 0; s < 7; ++s) {
    auto ids = random_token_ids(s % 2 ? L - 3 : L, V, seed + static_cast<std::uint64_t>(s % 5));  // s, s + 5 repeat
    const index_t P = s % 3 == 0 ? static_cast<index_t>(ids.size()) - 1 : s;
    batch.push_back({std::move(ids), P});
  }
  const models::batch_target_evaluator<Backend, Weights> evaluate(be, w, /*max_batch*/ 2, /*max_tokens*/ 2 * L + 1);
  const auto got = evaluate(std::span<const analysis::perturbed_sequence>(batch), token);
  BOOST_TEST_REQUIRE(got.size() == batch.size());
  double worst = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const auto full = models::mamba_forward(be, w, std::span<const index_t>(batch[i].tokens), [](const auto&) {});
    const auto row = be.download(full.data() + batch[i].target_position * V, V);
    const auto want = models::detail::target_value(std::span<const T>(row), token);
    worst = std::max({worst, std::abs(got[i].logit - want.logit) / std::max(1.0, std::abs(want.logit)),
                      std::abs(got[i].probability - want.probability) / want.probability});
  }
  return worst;
}

}  // namespace mixlens::testing
