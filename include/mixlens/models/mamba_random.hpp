// A randomly initialized Mamba language model built in memory, for tests and
// benchmarks that need a model of a given size without a checkpoint. Mamba's
// initialization where it has one (s6_mixer::init: A_log = log(1..N),
// D = 1, Δ bias = softplus⁻¹ of log-uniform steps), nn.Linear / nn.Conv1d
// defaults U(±1/√fan_in) for the projections and the conv, N(0, 0.02) for the
// embedding, ones for the norms. Seeded with the portable generator, so a seed
// gives the same model everywhere.
// Needs nlohmann-json (through mamba_model.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::models {

template <class T>
[[nodiscard]] mamba_model<T> random_mamba(const mamba_config& config, std::uint64_t seed) {
  constexpr std::string_view where = "mixlens::models::random_mamba";
  const index_t H = config.hidden_size, D = config.intermediate_size, N = config.state_size, K = config.conv_kernel,
                R = config.time_step_rank, V = config.vocab_size;
  for (const auto& [name, v] : {std::pair<const char*, index_t>{"hidden_size", H}, {"intermediate_size", D},
                                {"state_size", N}, {"conv_kernel", K}, {"time_step_rank", R}, {"vocab_size", V},
                                {"num_layers", config.num_layers}})
    mixlens::detail::check_positive(where, name, v);

  std::uint64_t stream = seed * 1000;  // one generator stream per tensor
  const auto uniform = [&](index_t n, double bound) {
    std::vector<T> v(static_cast<std::size_t>(n));
    mixlens::detail::splitmix64 rng(++stream);
    for (auto& x : v) x = static_cast<T>(rng.uniform(-bound, bound));
    return v;
  };
  const auto fill = [&](matrix<T>& m, double bound) {
    const auto v = uniform(m.size(), bound);
    std::copy(v.begin(), v.end(), m.data());
  };

  mamba_model<T> m;
  m.config = config;
  m.embedding = matrix<T>(V, H);
  {
    mixlens::detail::splitmix64 rng(++stream);
    for (index_t i = 0; i < m.embedding.size(); ++i) m.embedding.data()[i] = static_cast<T>(rng.normal(0, 0.02));
  }
  for (index_t k = 0; k < config.num_layers; ++k) {
    mamba_layer<T> l;
    l.norm.assign(static_cast<std::size_t>(H), T(1));
    l.in_proj = matrix<T>(2 * D, H);
    fill(l.in_proj, 1 / std::sqrt(double(H)));
    if (config.use_bias) l.in_proj_bias = uniform(2 * D, 1 / std::sqrt(double(H)));
    l.conv_weight = matrix<T>(D, K);
    fill(l.conv_weight, 1 / std::sqrt(double(K)));
    if (config.use_conv_bias) l.conv_bias = uniform(D, 1 / std::sqrt(double(K)));
    l.ssm = s6_mixer<T>::init(D, N, R, ++stream);
    stream += 2;  // init draws from three consecutive seeds
    l.out_proj = matrix<T>(H, D);
    fill(l.out_proj, 1 / std::sqrt(double(D)));
    if (config.use_bias) l.out_proj_bias = uniform(H, 1 / std::sqrt(double(D)));
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
