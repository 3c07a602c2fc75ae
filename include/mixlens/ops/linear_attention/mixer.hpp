// The linear_attention mixer: parameters, init and bind (the view is ops/linear_attention/operator.hpp).
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
#include "mixlens/ops/linear_attention/operator.hpp"

namespace mixlens {

namespace detail {
// φ(z) = elu(z) + 1: z + 1 for z > 0, exp(z) otherwise (always positive).
template <class T>
[[nodiscard]] T elu_plus_one(T z) {
  return z > T(0) ? z + T(1) : std::exp(z);
}
}  // namespace detail

// What init fixes beyond the shapes: whether rows are divided by n_i (Katharopoulos
// et al.'s form) or left as the plain sums.
struct linear_attention_options {
  bool normalized = true;
};

// Linear attention with projections q = W_q x, k = W_k x, v = W_v x and the
// feature map elu + 1.
template <class T>
class linear_attention_mixer {
 public:
  using value_type = T;

  detail::qkv_projections<T> proj;
  bool normalized = true;

  static linear_attention_mixer init(index_t model_channels, index_t heads, index_t key_size, index_t head_dim,
                                     std::uint64_t seed, const linear_attention_options& options = {}) {
    return {detail::qkv_projections<T>::init(model_channels, heads, key_size, head_dim, seed), options.normalized};
  }

  [[nodiscard]] index_t model_channels() const { return proj.model_channels(); }
  [[nodiscard]] index_t heads() const { return proj.heads; }
  [[nodiscard]] index_t channels() const { return proj.channels(); }

  [[nodiscard]] matrix<T> values(matrix_view<const T> x) const {
    return proj.values(x, "mixlens::linear_attention_mixer::values");
  }

  [[nodiscard]] bound_linear_attention<T> bind(matrix_view<const T> x) const {
    auto s = proj.queries_keys(x, "mixlens::linear_attention_mixer::bind");
    for (index_t i = 0; i < s.q.size(); ++i) s.q.data()[i] = detail::elu_plus_one(s.q.data()[i]);
    for (index_t i = 0; i < s.k.size(); ++i) s.k.data()[i] = detail::elu_plus_one(s.k.data()[i]);
    const index_t P = proj.head_dim();
    const bool norm = normalized;
    bound_linear_attention<T> op(std::move(s), [P, norm](const detail::qk_storage<T>& st) {
      return linear_attention_operator<T>(st.q.view(), st.k.view(), P, norm);
    });
    op->validate();
    return op;
  }
};

}  // namespace mixlens
