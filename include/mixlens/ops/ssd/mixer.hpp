// The ssd mixer: parameters, init and bind (the view is ops/ssd/operator.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/detail/math.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/ssd/operator.hpp"

namespace mixlens {

// What ssd_mixer::bind folds into the operator.
struct ssd_bind_options {
  bool skip = false;  // + D on the diagonal (the paper's α excludes it)
};

// SSD with Mamba-2's input-dependent projections, acting on x (H·P × L):
//   B = W_B x, C = W_C x (G·N rows each), Δ = softplus(W_Δ x + dt_bias), a = −exp(a_log).
// (In Mamba-2 these come out of one in_proj together with x and pass a short conv;
// here they are read off the operator's own input, as s6_mixer does.)
template <class T>
class ssd_mixer {
 public:
  using value_type = T;

  matrix<T> w_b, w_c;      // (G·N) × (H·P)
  matrix<T> w_dt;          // H × (H·P)
  std::vector<T> dt_bias;  // H
  std::vector<T> a_log;    // H
  std::vector<T> skip;     // H (D)
  index_t head_dim = 0;
  index_t groups = 1;
  index_t chunk = 64;

  // Mamba-2's initialization: a = −U[1, 16], Δ at init log-uniform in
  // [dt_min, dt_max] through dt_bias = softplus⁻¹(Δ), D = 1; projections U(±1/√(H·P)).
  static ssd_mixer init(index_t heads, index_t head_dim, index_t state_size, std::uint64_t seed, index_t groups = 1,
                        double dt_min = 1e-3, double dt_max = 1e-1) {
    constexpr std::string_view where = "mixlens::ssd_mixer::init";
    detail::check_positive(where, "heads", heads);
    detail::check_positive(where, "head_dim", head_dim);
    detail::check_positive(where, "state_size", state_size);
    detail::check_positive(where, "groups", groups);
    if (heads % groups != 0) detail::fail(where, "groups", "a divisor of the " + std::to_string(heads) + " heads", groups);
    const index_t D = heads * head_dim;
    ssd_mixer m;
    m.w_b = matrix<T>(groups * state_size, D);
    m.w_c = matrix<T>(groups * state_size, D);
    m.w_dt = matrix<T>(heads, D);
    const double bound = 1.0 / std::sqrt(double(D));
    detail::uniform_fill(m.w_b, seed, bound);
    detail::uniform_fill(m.w_c, seed + 1, bound);
    detail::uniform_fill(m.w_dt, seed + 2, bound);
    detail::splitmix64 rng(seed + 3);
    for (index_t h = 0; h < heads; ++h) {
      const double dt = std::exp(std::log(dt_min) + rng.uniform() * (std::log(dt_max) - std::log(dt_min)));
      m.dt_bias.push_back(static_cast<T>(dt + std::log(-std::expm1(-dt))));
      m.a_log.push_back(static_cast<T>(std::log(1.0 + 15.0 * rng.uniform())));
      m.skip.push_back(T(1));
    }
    m.head_dim = head_dim;
    m.groups = groups;
    return m;
  }

  [[nodiscard]] index_t heads() const { return static_cast<index_t>(a_log.size()); }
  [[nodiscard]] index_t channels() const { return heads() * head_dim; }
  [[nodiscard]] index_t state_size() const { return groups > 0 ? w_b.extent(0) / groups : 0; }

  // Binds to x; options.skip folds D into the diagonal.
  [[nodiscard]] bound_ssd<T> bind(matrix_view<const T> x, ssd_bind_options options = {}) const {
    constexpr std::string_view where = "mixlens::ssd_mixer::bind";
    validate();
    detail::check_equal(where, "x", "channels (extent 0)", channels(), x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
    const index_t H = heads(), N = state_size(), G = groups, L = x.extent(1);
    ssd_storage<T> s;
    auto bp = detail::project(w_b.view(), {}, x, where, "w_b");
    auto cp = detail::project(w_c.view(), {}, x, where, "w_c");
    s.b = tensor<T, 3>(G, N, L);
    s.c = tensor<T, 3>(G, N, L);
    std::copy(bp.data(), bp.data() + bp.size(), s.b.data());
    std::copy(cp.data(), cp.data() + cp.size(), s.c.data());
    s.delta = detail::project(w_dt.view(), vector_view<const T>(dt_bias.data(), dt_bias.size()), x, where, "w_dt");
    for (index_t i = 0; i < s.delta.size(); ++i) s.delta.data()[i] = detail::softplus(s.delta.data()[i]);
    for (index_t h = 0; h < H; ++h) s.a.push_back(-std::exp(a_log[static_cast<std::size_t>(h)]));
    if (options.skip) s.skip = skip;
    const index_t P = head_dim, Q = chunk;
    bound_ssd<T> op(std::move(s), [P, Q](const ssd_storage<T>& st) {
      return ssd_operator<T>(st.delta.view(), vector_view<const T>(st.a.data(), st.a.size()), st.b.view(), st.c.view(), P,
                             vector_view<const T>(st.skip.data(), st.skip.size()), Q);
    });
    op->validate();
    return op;
  }

 private:
  void validate() const {
    constexpr std::string_view where = "mixlens::ssd_mixer";
    detail::check_positive(where, "a_log (heads)", heads());
    detail::check_positive(where, "head_dim", head_dim);
    detail::check_positive(where, "groups", groups);
    if (heads() % groups != 0) detail::fail(where, "groups", "a divisor of the " + std::to_string(heads()) + " heads", groups);
    if (w_b.extent(0) <= 0 || w_b.extent(0) % groups != 0)
      detail::fail(where, "w_b", "groups·N rows, divisible by " + std::to_string(groups), w_b.extent(0));
    detail::check_equal(where, "w_b", "columns (= heads·head_dim)", channels(), w_b.extent(1));
    detail::check_equal(where, "w_c", "rows", w_b.extent(0), w_c.extent(0));
    detail::check_equal(where, "w_c", "columns (= heads·head_dim)", channels(), w_c.extent(1));
    detail::check_equal(where, "w_dt", "rows (= heads)", heads(), w_dt.extent(0));
    detail::check_equal(where, "w_dt", "columns (= heads·head_dim)", channels(), w_dt.extent(1));
    detail::check_equal(where, "dt_bias", "size (= heads)", heads(), static_cast<index_t>(dt_bias.size()));
    detail::check_equal(where, "skip", "size (= heads)", heads(), static_cast<index_t>(skip.size()));
    detail::check_positive(where, "chunk", chunk);
  }
};

}  // namespace mixlens
