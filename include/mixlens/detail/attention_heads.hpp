// Helpers shared by the multi-head mixers (softmax and linear attention,
// retention, SSD): dense projections of a signal and the head layout checks.
//
// Head layout: a bound multi-head operator acts on values v with H·P channels,
// channel c belonging to head c / P. Every value channel of a head is mixed by
// the same L×L matrix, and channels never mix (the output projection W_o is not
// part of the operator, as Mamba's out_proj is not part of α).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::detail {

// out(r, t) = Σ_d w(r, d)·x(d, t) + bias(r), accumulated in double.
template <class T>
[[nodiscard]] matrix<T> project(matrix_view<const T> w, std::type_identity_t<vector_view<const T>> bias,
                                std::type_identity_t<matrix_view<const T>> x,
                                std::string_view where, std::string_view argument) {
  check_equal(where, argument, "columns (= input channels)", x.extent(0), w.extent(1));
  if (!bias.empty()) check_equal(where, argument, "bias size (= rows)", w.extent(0), static_cast<index_t>(bias.size()));
  const index_t R = w.extent(0), D = w.extent(1), L = x.extent(1);
  matrix<T> out(R, L);
  std::vector<double> acc(static_cast<std::size_t>(L));
  for (index_t r = 0; r < R; ++r) {
    const double b = bias.empty() ? 0.0 : double(bias[static_cast<std::size_t>(r)]);
    std::fill(acc.begin(), acc.end(), b);
    for (index_t d = 0; d < D; ++d) {
      const double wd = double(w(r, d));
      if (wd == 0) continue;
      for (index_t t = 0; t < L; ++t) acc[static_cast<std::size_t>(t)] += wd * double(x(d, t));
    }
    for (index_t t = 0; t < L; ++t) out(r, t) = static_cast<T>(acc[static_cast<std::size_t>(t)]);
  }
  return out;
}

// Reshapes a (H·E × L) projection into (H × E × L) per-head features.
template <class T>
[[nodiscard]] tensor<T, 3> split_heads(const matrix<T>& m, index_t heads) {
  const index_t E = m.extent(0) / heads, L = m.extent(1);
  tensor<T, 3> out(heads, E, L);
  std::copy(m.data(), m.data() + m.size(), out.data());
  return out;
}

// The checks of a (heads × features × L) query/key pair and the value width.
template <class T>
void check_heads(std::string_view where, tensor_view<const T, 3> q, tensor_view<const T, 3> k, index_t head_dim) {
  check_positive(where, "q (heads, extent 0)", q.extent(0));
  check_positive(where, "q (features, extent 1)", q.extent(1));
  check_positive(where, "q (length, extent 2)", q.extent(2));
  check_equal(where, "k", "heads (extent 0)", q.extent(0), k.extent(0));
  check_equal(where, "k", "features (extent 1)", q.extent(1), k.extent(1));
  check_equal(where, "k", "length (extent 2)", q.extent(2), k.extent(2));
  check_positive(where, "head_dim", head_dim);
}

// Checks of the multi-head mixers' parameter shapes: heads divide the rows.
inline void check_head_split(std::string_view where, std::string_view argument, index_t rows, index_t heads) {
  check_positive(where, "heads", heads);
  if (rows <= 0 || rows % heads != 0)
    fail(where, argument, "a positive row count divisible by the " + std::to_string(heads) + " heads", rows);
}

// What a bound query/key operator owns: per-head queries and keys (after any
// feature map or scaling the mixer applies).
template <class T>
struct qk_storage {
  tensor<T, 3> q, k;  // heads × features × L
};

// The query, key and value projections of an attention-like mixer (no biases):
// q = W_q x, k = W_k x, v = W_v x with x (model channels × L), H heads of key
// width E and value width P.
template <class T>
struct qkv_projections {
  matrix<T> w_q, w_k;  // (H·E) × D
  matrix<T> w_v;       // (H·P) × D
  index_t heads = 0;

  // Weights U(±1/√D), PyTorch nn.Linear's default range, from a seeded generator.
  static qkv_projections init(index_t model_channels, index_t heads, index_t key_size, index_t head_dim,
                              std::uint64_t seed) {
    constexpr std::string_view where = "mixlens::qkv_projections::init";
    check_positive(where, "model_channels", model_channels);
    check_positive(where, "heads", heads);
    check_positive(where, "key_size", key_size);
    check_positive(where, "head_dim", head_dim);
    qkv_projections p{matrix<T>(heads * key_size, model_channels), matrix<T>(heads * key_size, model_channels),
                      matrix<T>(heads * head_dim, model_channels), heads};
    const double bound = 1.0 / std::sqrt(double(model_channels));
    uniform_fill(p.w_q, seed, bound);
    uniform_fill(p.w_k, seed + 1, bound);
    uniform_fill(p.w_v, seed + 2, bound);
    return p;
  }

  [[nodiscard]] index_t model_channels() const { return w_q.extent(1); }
  [[nodiscard]] index_t key_size() const { return heads > 0 ? w_q.extent(0) / heads : 0; }
  [[nodiscard]] index_t head_dim() const { return heads > 0 ? w_v.extent(0) / heads : 0; }
  [[nodiscard]] index_t channels() const { return w_v.extent(0); }

  void validate(std::string_view where) const {
    check_head_split(where, "w_q", w_q.extent(0), heads);
    check_head_split(where, "w_v", w_v.extent(0), heads);
    check_positive(where, "w_q (model channels, columns)", w_q.extent(1));
    check_equal(where, "w_k", "rows", w_q.extent(0), w_k.extent(0));
    check_equal(where, "w_k", "columns", w_q.extent(1), w_k.extent(1));
    check_equal(where, "w_v", "columns", w_q.extent(1), w_v.extent(1));
  }

  void check_input(std::string_view where, matrix_view<const T> x) const {
    validate(where);
    check_equal(where, "x", "channels (extent 0)", model_channels(), x.extent(0));
    check_positive(where, "x (length, extent 1)", x.extent(1));
  }

  // The values v = W_v x (H·P × L) that the bound operator mixes.
  [[nodiscard]] matrix<T> values(matrix_view<const T> x, std::string_view where) const {
    check_input(where, x);
    return project(w_v.view(), {}, x, where, "w_v");
  }

  [[nodiscard]] qk_storage<T> queries_keys(matrix_view<const T> x, std::string_view where) const {
    check_input(where, x);
    return {split_heads(project(w_q.view(), {}, x, where, "w_q"), heads),
            split_heads(project(w_k.view(), {}, x, where, "w_k"), heads)};
  }
};

// ⟨q_i, k_j⟩ of head h in double: the score every attention-like operator is
// built on. MIXLENS_HD: host loops and the views' device rows share it.
template <class T>
[[nodiscard]] MIXLENS_HD double head_score(tensor_view<const T, 3> q, tensor_view<const T, 3> k, index_t h, index_t i,
                                           index_t j) {
  double s = 0;
  for (index_t e = 0; e < q.extent(1); ++e) s += double(q(h, e, i)) * double(k(h, e, j));
  return s;
}

// Zeroes an L×L block (the off-diagonal channel blocks of channel-separable operators).
template <class T>
void zero(matrix_view<T> m) {
  for (index_t t = 0; t < m.extent(0); ++t)
    for (index_t s = 0; s < m.extent(1); ++s) m(t, s) = T(0);
}

// Zeroes a row; MIXLENS_HD for the views' rows.
template <class T>
MIXLENS_HD void zero(vector_view<T> r) {
  for (std::size_t s = 0; s < r.size(); ++s) r[s] = T(0);
}

}  // namespace mixlens::detail
