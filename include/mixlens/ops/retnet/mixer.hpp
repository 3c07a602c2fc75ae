// The retnet mixer: parameters, init and bind (the view is ops/retnet/operator.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/retnet/operator.hpp"

namespace mixlens {

// RetNet's per-head decays γ_h = 1 − 2^{−5−h}, h = 0 … H−1.
template <class T>
[[nodiscard]] std::vector<T> retnet_gammas(index_t heads) {
  detail::check_positive("mixlens::retnet_gammas", "heads", heads);
  std::vector<T> g(static_cast<std::size_t>(heads));
  for (index_t h = 0; h < heads; ++h) g[static_cast<std::size_t>(h)] = static_cast<T>(1.0 - std::exp2(-5.0 - double(h)));
  return g;
}

// Multi-scale retention with projections q = W_q x, k = W_k x / √E, v = W_v x.
template <class T>
class retnet_mixer {
 public:
  using value_type = T;

  detail::qkv_projections<T> proj;
  std::vector<T> gamma;  // per head

  static retnet_mixer init(index_t model_channels, index_t heads, index_t key_size, index_t head_dim,
                              std::uint64_t seed) {
    return {detail::qkv_projections<T>::init(model_channels, heads, key_size, head_dim, seed), retnet_gammas<T>(heads)};
  }

  [[nodiscard]] index_t model_channels() const { return proj.model_channels(); }
  [[nodiscard]] index_t heads() const { return proj.heads; }
  [[nodiscard]] index_t channels() const { return proj.channels(); }

  [[nodiscard]] matrix<T> values(matrix_view<const T> x) const {
    return proj.values(x, "mixlens::retnet_mixer::values");
  }

  [[nodiscard]] bound_retnet<T> bind(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::retnet_mixer::bind";
    auto qk = proj.queries_keys(x, where);
    detail::check_equal(where, "gamma", "size (= heads)", heads(), static_cast<index_t>(gamma.size()));
    const T scale = T(1) / std::sqrt(T(proj.key_size()));
    for (index_t i = 0; i < qk.k.size(); ++i) qk.k.data()[i] *= scale;
    const index_t P = proj.head_dim();
    bound_retnet<T> op(retnet_storage<T>{std::move(qk), gamma}, [P](const retnet_storage<T>& s) {
      return retnet_operator<T>(s.qk.q.view(), s.qk.k.view(), vector_view<const T>(s.gamma.data(), s.gamma.size()), P);
    });
    op->validate();
    return op;
  }
};

}  // namespace mixlens
