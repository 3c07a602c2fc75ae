// The rg_lru mixer: parameters, init and bind (the view is ops/rg_lru/operator.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/rg_lru/operator.hpp"
#include "mixlens/scan.hpp"

namespace mixlens {

// The RG-LRU with its gate projections (full D × D here; Griffin's are
// block-diagonal per head, a special case).
template <class T>
class rg_lru_mixer {
 public:
  using value_type = T;

  matrix<T> w_a, w_x;           // D × D: recurrence and input gate weights
  std::vector<T> b_a, b_x;      // D
  std::vector<T> lambda;        // Λ, D: a = σ(Λ)
  T c = 8;

  // Griffin's initialization: Λ such that a^c is uniform in [0.9, 0.999]; gate
  // weights U(±1/√D), biases 0.
  static rg_lru_mixer init(index_t channels, std::uint64_t seed) {
    constexpr std::string_view where = "mixlens::rg_lru_mixer::init";
    detail::check_positive(where, "channels", channels);
    rg_lru_mixer m;
    m.w_a = matrix<T>(channels, channels);
    m.w_x = matrix<T>(channels, channels);
    detail::uniform_fill(m.w_a, seed, 1.0 / std::sqrt(double(channels)));
    detail::uniform_fill(m.w_x, seed + 1, 1.0 / std::sqrt(double(channels)));
    m.b_a.assign(static_cast<std::size_t>(channels), T(0));
    m.b_x.assign(static_cast<std::size_t>(channels), T(0));
    detail::splitmix64 rng(seed + 2);
    for (index_t d = 0; d < channels; ++d) {
      const double ac = 0.9 + 0.099 * rng.uniform();  // a^c
      const double a = std::pow(ac, 1.0 / double(m.c));
      m.lambda.push_back(static_cast<T>(std::log(a / (1 - a))));  // σ⁻¹(a)
    }
    return m;
  }

  [[nodiscard]] index_t channels() const { return static_cast<index_t>(lambda.size()); }

  [[nodiscard]] bound_rg_lru<T> bind(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::rg_lru_mixer::bind";
    const index_t D = channels();
    detail::check_positive(where, "lambda (channels)", D);
    detail::check_equal(where, "w_a", "rows", D, w_a.extent(0));
    detail::check_equal(where, "w_x", "rows", D, w_x.extent(0));
    detail::check_equal(where, "w_x", "columns", D, w_x.extent(1));
    detail::check_positive(where, "c", c);
    detail::check_equal(where, "x", "channels (extent 0)", D, x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
    auto r = detail::project(w_a.view(), vector_view<const T>(b_a.data(), b_a.size()), x, where, "w_a");
    auto i = detail::project(w_x.view(), vector_view<const T>(b_x.data(), b_x.size()), x, where, "w_x");
    rg_lru_storage<T> s{matrix<T>(D, x.extent(1)), matrix<T>(D, x.extent(1))};
    for (index_t d = 0; d < D; ++d) {
      const double log_base = -detail::softplus(-double(lambda[static_cast<std::size_t>(d)]));  // log σ(Λ)
      for (index_t t = 0; t < x.extent(1); ++t) {
        const double log_a = double(c) * detail::sigmoid(double(r(d, t))) * log_base;
        s.decay(d, t) = static_cast<T>(std::exp(log_a));
        s.scale(d, t) = static_cast<T>(std::sqrt(-std::expm1(2 * log_a)) * detail::sigmoid(double(i(d, t))));
      }
    }
    bound_rg_lru<T> op(std::move(s), [](const rg_lru_storage<T>& st) {
      return rg_lru_operator<T>(st.decay.view(), st.scale.view());
    });
    op->validate();
    return op;
  }
};

}  // namespace mixlens
