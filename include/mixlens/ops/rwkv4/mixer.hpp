// The rwkv4 mixer: parameters, init and bind (the view is ops/rwkv4/operator.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <cuda/std/limits>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/rwkv4/operator.hpp"

namespace mixlens {

// What rwkv4_mixer::bind folds into the operator.
struct rwkv4_bind_options {
  bool receptance = false;  // the output gate σ(r) on the rows
};

// RWKV-4 time mixing with token shift and projections: x̃ = μ ⊙ x_t + (1 − μ) ⊙ x_{t−1}
// (x_{−1} = 0) per branch, k = W_k x̃_k, v = W_v x̃_v, r = W_r x̃_r; w = exp(time_decay),
// u = time_first. The output projection W_o is not part of the operator.
template <class T>
class rwkv4_mixer {
 public:
  using value_type = T;

  matrix<T> w_k, w_v, w_r;                       // D × D, no bias
  std::vector<T> time_decay, time_first;         // D
  std::vector<T> time_mix_k, time_mix_v, time_mix_r;  // D, in [0, 1]

  // RWKV-4's initialization for layer `layer` of `layers`: decay speeds
  // −5 + 8·(d/(D−1))^{0.7 + 1.3·ρ₀}, time_first log 0.3 plus a zigzag, token-shift
  // mixes (d/D)^{ρ₁} (ρ₀ = layer/(layers−1), ρ₁ = 1 − layer/layers); projections U(±1/√D).
  static rwkv4_mixer init(index_t channels, std::uint64_t seed, index_t layer = 0, index_t layers = 2) {
    constexpr std::string_view where = "mixlens::rwkv4_mixer::init";
    detail::check_positive(where, "channels", channels);
    if (layers < 2) detail::fail(where, "layers", "at least 2 layers", layers);
    if (layer < 0 || layer >= layers) detail::fail(where, "layer", "a layer in [0, " + std::to_string(layers) + ")", layer);
    const index_t D = channels;
    const double r0 = double(layer) / double(layers - 1), r1 = 1.0 - double(layer) / double(layers);
    rwkv4_mixer m;
    m.w_k = matrix<T>(D, D);
    m.w_v = matrix<T>(D, D);
    m.w_r = matrix<T>(D, D);
    const double bound = 1.0 / std::sqrt(double(D));
    detail::uniform_fill(m.w_k, seed, bound);
    detail::uniform_fill(m.w_v, seed + 1, bound);
    detail::uniform_fill(m.w_r, seed + 2, bound);
    for (index_t d = 0; d < D; ++d) {
      const double frac = D > 1 ? double(d) / double(D - 1) : 0.0, x = double(d) / double(D);
      m.time_decay.push_back(static_cast<T>(-5.0 + 8.0 * std::pow(frac, 0.7 + 1.3 * r0)));
      m.time_first.push_back(static_cast<T>(std::log(0.3) + 0.5 * double((d + 1) % 3 - 1)));
      m.time_mix_k.push_back(static_cast<T>(std::pow(x, r1)));
      m.time_mix_v.push_back(static_cast<T>(std::pow(x, r1) + 0.3 * r0));
      m.time_mix_r.push_back(static_cast<T>(std::pow(x, 0.5 * r1)));
    }
    return m;
  }

  [[nodiscard]] index_t channels() const { return static_cast<index_t>(time_decay.size()); }

  // The values v = W_v x̃_v the bound operator mixes.
  [[nodiscard]] matrix<T> values(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::rwkv4_mixer::values";
    validate(where, x);
    return detail::project(w_v.view(), {}, shifted(x, time_mix_v).view(), where, "w_v");
  }

  // Binds to x; options.receptance folds the output gate σ(r) into the rows.
  [[nodiscard]] bound_rwkv4<T> bind(matrix_view<const T> x, rwkv4_bind_options options = {}) const {
    constexpr std::string_view where = "mixlens::rwkv4_mixer::bind";
    validate(where, x);
    rwkv4_storage<T> s;
    s.k = detail::project(w_k.view(), {}, shifted(x, time_mix_k).view(), where, "w_k");
    for (T td : time_decay) s.w.push_back(static_cast<T>(std::exp(double(td))));
    s.u = time_first;
    if (options.receptance) {
      s.receptance = detail::project(w_r.view(), {}, shifted(x, time_mix_r).view(), where, "w_r");
      for (index_t i = 0; i < s.receptance.size(); ++i)
        s.receptance.data()[i] = detail::sigmoid(s.receptance.data()[i]);
    }
    bound_rwkv4<T> op(std::move(s), [](const rwkv4_storage<T>& st) {
      return rwkv4_operator<T>(st.k.view(), vector_view<const T>(st.w.data(), st.w.size()),
                               vector_view<const T>(st.u.data(), st.u.size()), st.receptance.view());
    });
    op->validate();
    return op;
  }

 private:
  // Token shift: μ ⊙ x_t + (1 − μ) ⊙ x_{t−1}.
  static matrix<T> shifted(matrix_view<const T> x, const std::vector<T>& mix) {
    matrix<T> out(x.extent(0), x.extent(1));
    for (index_t d = 0; d < x.extent(0); ++d) {
      const T mu = mix[static_cast<std::size_t>(d)];
      for (index_t t = 0; t < x.extent(1); ++t) out(d, t) = mu * x(d, t) + (T(1) - mu) * (t > 0 ? x(d, t - 1) : T(0));
    }
    return out;
  }

  void validate(std::string_view where, matrix_view<const T> x) const {
    const index_t D = channels();
    detail::check_positive(where, "time_decay (channels)", D);
    for (const auto* v : {&time_first, &time_mix_k, &time_mix_v, &time_mix_r})
      detail::check_equal(where, "time_first/time_mix", "size (= channels)", D, static_cast<index_t>(v->size()));
    for (const auto* m : {&w_k, &w_v, &w_r}) {
      detail::check_equal(where, "w_k/w_v/w_r", "rows (= channels)", D, m->extent(0));
      detail::check_equal(where, "w_k/w_v/w_r", "columns (= channels)", D, m->extent(1));
    }
    detail::check_equal(where, "x", "channels (extent 0)", D, x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
  }
};

}  // namespace mixlens
