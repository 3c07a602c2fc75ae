// The softmax_attention mixer: parameters, init and bind (the view is ops/softmax_attention/operator.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>
#include <cuda/std/limits>

#include "mixlens/detail/attention_heads.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/softmax_attention/operator.hpp"

namespace mixlens {

// Multi-head causal softmax attention with its projections q = W_q x, k = W_k x,
// v = W_v x (x: model channels × L). bind(x) freezes the weights the input
// induces; the bound operator mixes values (normally values(x)).
template <class T>
class softmax_attention_mixer {
 public:
  using value_type = T;

  detail::qkv_projections<T> proj;

  static softmax_attention_mixer init(index_t model_channels, index_t heads, index_t key_size, index_t head_dim,
                                      std::uint64_t seed) {
    return {detail::qkv_projections<T>::init(model_channels, heads, key_size, head_dim, seed)};
  }

  [[nodiscard]] index_t model_channels() const { return proj.model_channels(); }
  [[nodiscard]] index_t heads() const { return proj.heads; }
  [[nodiscard]] index_t channels() const { return proj.channels(); }

  [[nodiscard]] matrix<T> values(matrix_view<const T> x) const {
    return proj.values(x, "mixlens::softmax_attention_mixer::values");
  }

  [[nodiscard]] bound_softmax_attention<T> bind(matrix_view<const T> x) const {
    const index_t P = proj.head_dim();
    return bound_softmax_attention<T>(proj.queries_keys(x, "mixlens::softmax_attention_mixer::bind"),
                                      [P](const detail::qk_storage<T>& s) {
                                        return softmax_attention_operator<T>(s.q.view(), s.k.view(), P);
                                      });
  }
};

}  // namespace mixlens
