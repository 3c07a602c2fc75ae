// A randomly initialized Mamba-2 language model built in memory, for tests that
// need a model of a given shape without a checkpoint: Mamba-2's initialization
// where it has one (A_log = log U[1, 16], D = 1, dt_bias = softplus⁻¹ of
// log-uniform steps in [1e-3, 1e-1]), U(±1/√fan_in) for the projections and the
// conv, N(0, 0.02) for the embedding, ones for the norms. The config's derived
// sizes (norm_group_size, chunk_size, time-step limits) are used as given.
// Seeded with the portable generator, so a seed gives the same model everywhere.
// Needs nlohmann-json (through mamba2_model.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/models/mamba2_model.hpp"

namespace mixlens::models {

template <class T>
[[nodiscard]] mamba2_model<T> random_mamba2(const mamba2_config& config, std::uint64_t seed) {
  constexpr std::string_view where = "mixlens::models::random_mamba2";
  const index_t H = config.hidden_size, S = config.ssm_channels(), X = config.conv_channels(), Hd = config.num_heads,
                K = config.conv_kernel, R = config.in_proj_rows(), I = config.intermediate_size(), V = config.vocab_size;
  for (const auto& [name, v] : {std::pair<const char*, index_t>{"hidden_size", H}, {"num_heads", Hd},
                                {"head_dim", config.head_dim}, {"state_size", config.state_size},
                                {"n_groups", config.n_groups}, {"conv_kernel", K}, {"vocab_size", V},
                                {"num_layers", config.num_layers}, {"norm_group_size", config.norm_group_size}})
    mixlens::detail::check_positive(where, name, v);
  if (Hd % config.n_groups != 0)
    mixlens::detail::fail(where, "n_groups", "a divisor of the " + std::to_string(Hd) + " heads", config.n_groups);
  if (S % config.norm_group_size != 0)
    mixlens::detail::fail(where, "norm_group_size", "a divisor of the " + std::to_string(S) + " SSM channels",
                          config.norm_group_size);

  std::uint64_t stream = seed * 1000;  // one generator stream per tensor
  const auto uniform = [&](index_t n, double lo, double hi) {
    std::vector<T> v(static_cast<std::size_t>(n));
    mixlens::detail::splitmix64 rng(++stream);
    for (auto& x : v) x = static_cast<T>(rng.uniform(lo, hi));
    return v;
  };
  const auto fill = [&](matrix<T>& m, double bound) {
    const auto v = uniform(m.size(), -bound, bound);
    std::copy(v.begin(), v.end(), m.data());
  };

  mamba2_model<T> m;
  m.config = config;
  m.embedding = matrix<T>(V, H);
  {
    mixlens::detail::splitmix64 rng(++stream);
    for (index_t i = 0; i < m.embedding.size(); ++i) m.embedding.data()[i] = static_cast<T>(rng.normal(0, 0.02));
  }
  for (index_t k = 0; k < config.num_layers; ++k) {
    mamba2_layer<T> l;
    l.norm.assign(static_cast<std::size_t>(H), T(1));
    l.in_proj = matrix<T>(R, H);
    fill(l.in_proj, 1 / std::sqrt(double(H)));
    if (config.use_bias) l.in_proj_bias = uniform(R, -1 / std::sqrt(double(H)), 1 / std::sqrt(double(H)));
    l.conv_weight = matrix<T>(X, K);
    fill(l.conv_weight, 1 / std::sqrt(double(K)));
    if (config.use_conv_bias) l.conv_bias = uniform(X, -1 / std::sqrt(double(K)), 1 / std::sqrt(double(K)));
    mixlens::detail::splitmix64 rng(++stream);
    for (index_t h = 0; h < Hd; ++h) {
      const double dt = std::exp(std::log(1e-3) + rng.uniform() * (std::log(1e-1) - std::log(1e-3)));
      l.dt_bias.push_back(static_cast<T>(dt + std::log(-std::expm1(-dt))));
      l.a_log.push_back(static_cast<T>(std::log(1.0 + 15.0 * rng.uniform())));
      l.skip.push_back(T(1));
    }
    l.norm_weight.assign(static_cast<std::size_t>(S), T(1));
    l.out_proj = matrix<T>(H, I);
    fill(l.out_proj, 1 / std::sqrt(double(I)));
    if (config.use_bias) l.out_proj_bias = uniform(H, -1 / std::sqrt(double(I)), 1 / std::sqrt(double(I)));
    m.layers.push_back(std::move(l));
  }
  m.norm_f.assign(static_cast<std::size_t>(H), T(1));
  if (!config.tie_embeddings) {
    m.lm_head = matrix<T>(V, H);
    fill(m.lm_head, 1 / std::sqrt(double(H)));
  }
  return m;
}

}  // namespace mixlens::models
