// Gradient-based attribution on host tensors: the pieces the model recipes
// (models/mamba_attribution.hpp) combine, each usable alone.
//
//  - grad_input: Σ_h ∂target/∂e[t][h] · e[t][h], one score per position.
//  - token_gradient_weight: mamba-attr's per-token weight of a layer,
//    max_h max(g[t][h], 0), min–max normalized over the positions.
//  - mamba_attr_layer_map: mamba-attr's map of a layer from the channel mean of
//    max(α, 0) and the min and max of α over the layer, its columns weighted.
//  - attn_grad_layer_map: attn-grad's map of a layer, the channel mean of
//    max(Â, 0) with its columns weighted, min–max normalized over the layer.
//  - target_row_rollout: the target row of rownorm(I + M_last)···rownorm(I + M_start),
//    fed from the last layer to the first (the order the backward pass visits them),
//    keeping one row instead of an L × L product; full_rollout: the whole product.
// docs/attribution.md describes the recipes.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/detail/gemm.hpp"
#include "mixlens/error.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::analysis {

// score[t] = Σ_h grad[t][h]·input[t][h] (in double); grad and input (L × H).
template <class T>
[[nodiscard]] std::vector<double> grad_input(matrix_view<const T> grad, matrix_view<const T> input) {
  constexpr std::string_view where = "mixlens::analysis::grad_input";
  detail::check_equal(where, "input", "rows (extent 0)", grad.extent(0), input.extent(0));
  detail::check_equal(where, "input", "columns (extent 1)", grad.extent(1), input.extent(1));
  std::vector<double> score(static_cast<std::size_t>(grad.extent(0)), 0.0);
  for (index_t t = 0; t < grad.extent(0); ++t)
    for (index_t h = 0; h < grad.extent(1); ++h) score[static_cast<std::size_t>(t)] += double(grad(t, h)) * double(input(t, h));
  return score;
}

// (v − min v) / (max v − min v) in place; all zeros for a constant v. A NaN
// is refused: the weights would silently drop it.
inline void min_max_normalize(std::vector<double>& v, std::string_view where, std::string_view argument) {
  if (v.empty()) return;
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) detail::fail(where, argument, "finite values at " + std::to_string(i), v[i]);
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  const double min = *lo, range = *hi - *lo;
  for (auto& x : v) x = range > 0 ? (x - min) / range : 0.0;
}

// mamba-attr's token weight from the gradient g (L × H) of the target with
// respect to a layer's input: s[t] = max_h max(g[t][h], 0), min–max normalized over t.
template <class T>
[[nodiscard]] std::vector<double> token_gradient_weight(matrix_view<const T> grad) {
  std::vector<double> s(static_cast<std::size_t>(grad.extent(0)), 0.0);
  for (index_t t = 0; t < grad.extent(0); ++t)
    for (index_t h = 0; h < grad.extent(1); ++h)
      s[static_cast<std::size_t>(t)] = std::max(s[static_cast<std::size_t>(t)], std::max(double(grad(t, h)), 0.0));
  min_max_normalize(s, "mixlens::analysis::token_gradient_weight", "grad");
  return s;
}

// mamba-attr's map of one layer (L × L, in place over relu_mean): with
// relu_mean = E_d max(α_d, 0) and [lo, hi] the range of α over all channels,
// the clamped range is [max(lo, 0), max(hi, 0)] and
//   map[i][j] = (relu_mean[i][j] − max(lo, 0)) / (max(hi, 0) − max(lo, 0)) · weight[j]
// (the channel mean of the min–max normalized max(α, 0): normalization is affine,
// so it commutes with the mean). A layer with max(α, 0) constant gives zeros.
inline void mamba_attr_layer_map(std::vector<double>& relu_mean, double lo, double hi, const std::vector<double>& weight) {
  constexpr std::string_view where = "mixlens::analysis::mamba_attr_layer_map";
  const index_t L = static_cast<index_t>(weight.size());
  detail::check_equal(where, "relu_mean", "size", L * L, static_cast<index_t>(relu_mean.size()));
  if (!std::isfinite(lo) || !std::isfinite(hi)) detail::fail(where, "lo, hi", "a finite range of α", std::to_string(lo) + ", " + std::to_string(hi));
  const double a = std::max(lo, 0.0), range = std::max(hi, 0.0) - a;
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) {
      double& m = relu_mean[static_cast<std::size_t>(i * L + j)];
      m = (range > 0 ? (m - a) / range : 0.0) * weight[static_cast<std::size_t>(j)];
    }
}

// attn-grad's map of one layer (L × L, in place over relu_mean = E_d max(Â_d, 0)):
// map[i][j] = relu_mean[i][j] · weight[j], then min–max normalized over all L²
// entries (zeros for a constant map).
inline void attn_grad_layer_map(std::vector<double>& relu_mean, const std::vector<double>& weight) {
  constexpr std::string_view where = "mixlens::analysis::attn_grad_layer_map";
  const index_t L = static_cast<index_t>(weight.size());
  detail::check_equal(where, "relu_mean", "size", L * L, static_cast<index_t>(relu_mean.size()));
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) relu_mean[static_cast<std::size_t>(i * L + j)] *= weight[static_cast<std::size_t>(j)];
  min_max_normalize(relu_mean, where, "relu_mean");
}

}  // namespace mixlens::analysis

namespace mixlens::detail {

// Row i of rownorm(I + map) into aug (L): the row divided by its sum, as
// rollout_accumulator (a zero-sum row stays).
inline void rownorm_identity_row(const std::vector<double>& map, index_t i, index_t L, double* aug) {
  double sum = 0;
  for (index_t j = 0; j < L; ++j) sum += aug[j] = map[static_cast<std::size_t>(i * L + j)] + (i == j ? 1.0 : 0.0);
  if (sum != 0)
    for (index_t j = 0; j < L; ++j) aug[j] /= sum;
}

inline void check_map(std::string_view where, index_t L, const std::vector<double>& map) {
  check_equal(where, "map", "size", L * L, static_cast<index_t>(map.size()));
}

}  // namespace mixlens::detail

namespace mixlens::analysis {

// The row `target` of rownorm(I + M_last) ··· rownorm(I + M_first), the maps
// given from the last layer to the first: r ← r · rownorm(I + M).
class target_row_rollout {
 public:
  target_row_rollout(index_t length, index_t target) : length_(length), row_(static_cast<std::size_t>(checked(length, target)), 0.0) {
    row_[static_cast<std::size_t>(target)] = 1.0;
  }

  // map: L × L, row-major.
  void add_earlier(const std::vector<double>& map) {
    const index_t L = length_;
    detail::check_map("mixlens::analysis::target_row_rollout::add_earlier", L, map);
    std::vector<double> next(static_cast<std::size_t>(L), 0.0), aug(static_cast<std::size_t>(L));
    for (index_t i = 0; i < L; ++i) {
      const double ri = row_[static_cast<std::size_t>(i)];
      if (ri == 0) continue;
      detail::rownorm_identity_row(map, i, L, aug.data());
      for (index_t j = 0; j < L; ++j) next[static_cast<std::size_t>(j)] += ri * aug[static_cast<std::size_t>(j)];
    }
    row_ = std::move(next);
    ++layers_;
  }

  [[nodiscard]] const std::vector<double>& row() const { return row_; }
  [[nodiscard]] index_t layers() const { return layers_; }

 private:
  static index_t checked(index_t length, index_t target) {
    detail::check_positive("mixlens::analysis::target_row_rollout", "length", length);
    if (target < 0 || target >= length)
      detail::fail("mixlens::analysis::target_row_rollout", "target", "a row in [0, " + std::to_string(length) + ")", target);
    return length;
  }

  index_t length_;
  std::vector<double> row_;
  index_t layers_ = 0;
};

// The whole product rownorm(I + M_last) ··· rownorm(I + M_first) (L × L,
// row-major), the maps given from the last layer to the first: R ← R · rownorm(I + M),
// from R = I; an L × L × L product per layer (through a BLAS where there is one).
class full_rollout {
 public:
  explicit full_rollout(index_t length) : length_(checked(length)), r_(static_cast<std::size_t>(length * length), 0.0) {
    for (index_t i = 0; i < length; ++i) r_[static_cast<std::size_t>(i * length + i)] = 1.0;
  }

  void add_earlier(const std::vector<double>& map) {
    const index_t L = length_;
    detail::check_map("mixlens::analysis::full_rollout::add_earlier", L, map);
    std::vector<double> aug(static_cast<std::size_t>(L * L)), next(aug.size());
    for (index_t i = 0; i < L; ++i) detail::rownorm_identity_row(map, i, L, aug.data() + i * L);
    mixlens::detail::gemm(false, false, L, L, L, r_.data(), L, aug.data(), L, 0.0, next.data(), L);
    r_ = std::move(next);
  }

  [[nodiscard]] const std::vector<double>& matrix() const { return r_; }

 private:
  static index_t checked(index_t length) {
    detail::check_positive("mixlens::analysis::full_rollout", "length", length);
    return length;
  }
  index_t length_;
  std::vector<double> r_;
};

}  // namespace mixlens::analysis
