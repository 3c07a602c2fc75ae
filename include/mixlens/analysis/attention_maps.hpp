// Turning per-layer hidden-attention tensors (D × L × L) into maps (L × L), as
// the hidden-attention paper does (Ali, Zimerman, Wolf 2024, §3.2–3.3):
//  - channel aggregation: the mean over channels of the signed values (the
//    paper's default), of |·|, or of ReLU(·);
//  - min–max normalization to [0, 1];
//  - raw attention: per layer, the whole tensor min–max normalized, then the
//    channel mean; averaged over the chosen layers;
//  - attention rollout: ρ = Ã_last ⋯ Ã_first with Ã = rownorm(I + E_d α), later
//    layers multiplying on the left (Abnar & Zuidema 2020, as the paper uses it);
//  - bidirectional combination (Vision Mamba): the forward matrix plus the
//    backward scan's matrix flipped back into forward time, summed, averaged or
//    spliced around a CLS position.
// Rows are output positions (queries), columns input positions (keys).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::analysis {


// The (L × L) map of a (D × L × L) attention tensor.
template <class T>
[[nodiscard]] matrix<T> aggregate_channels(tensor_view<const T, 3> a, channel_reduction r = channel_reduction::mean) {
  constexpr std::string_view where = "mixlens::analysis::aggregate_channels";
  mixlens::detail::check_positive(where, "a (channels, extent 0)", a.extent(0));
  mixlens::detail::check_square(where, "a", a.extent(1), a.extent(1), a.extent(2));
  const index_t D = a.extent(0), L = a.extent(1), LL = L * L;
  const host_backend<T> be;
  std::vector<double> acc(static_cast<std::size_t>(LL), 0.0);
  be.aggregate(a.data_handle(), D, LL, r, acc.data(), nullptr);
  matrix<T> out(L, L);
  be.mean(acc.data(), LL, double(D), out.data());
  return out;
}

}  // namespace mixlens::analysis

namespace mixlens::detail {
// The normalization proper, on values already known to be finite.
template <class T>
void normalize_min_max_finite(T* data, index_t n) {
  if (n <= 0) return;
  const auto [lo, hi] = std::minmax_element(data, data + n);
  const T min = *lo, range = *hi - *lo;
  for (index_t i = 0; i < n; ++i) data[i] = range > T(0) ? (data[i] - min) / range : T(0);
}
}  // namespace mixlens::detail

namespace mixlens::analysis {

// Min–max normalization of all entries to [0, 1] (in place); a constant input
// becomes all zeros. Throws mixlens::error naming the first NaN or infinity
// (and leaves the data unchanged): min / max scans skip NaN, and one NaN would
// otherwise turn the whole map into zeros without notice.
template <class T>
void normalize_min_max(T* data, index_t n) {
  mixlens::detail::check_finite("mixlens::analysis::normalize_min_max", "data", data, {n});
  mixlens::detail::normalize_min_max_finite(data, n);
}
template <class T>
void normalize_min_max(matrix_view<T> m) {
  mixlens::detail::check_finite("mixlens::analysis::normalize_min_max", "m", m.data_handle(), {m.extent(0), m.extent(1)});
  mixlens::detail::normalize_min_max_finite(m.data_handle(), m.extent(0) * m.extent(1));
}

// One layer's contribution to the raw-attention map: the whole tensor min–max
// normalized (as one), then averaged over channels. Leaves `a` unchanged.
// Throws mixlens::error naming the first NaN or infinity of `a` (else the min /
// max would skip it and the map come out all zeros).
template <class T>
[[nodiscard]] matrix<T> raw_attention_layer(tensor_view<const T, 3> a) {
  constexpr std::string_view where = "mixlens::analysis::raw_attention_layer";
  const index_t D = a.extent(0), L = a.extent(1);
  if (D <= 0 || L <= 0) mixlens::detail::fail(where, "a", "a non-empty tensor", "empty");
  const T* p = a.data_handle();
  mixlens::detail::check_finite(where, "a", p, {D, L, a.extent(2)});
  const host_backend<T> be;
  T minmax[3];
  be.min_max(p, D * L * L, minmax);
  matrix<T> mean = aggregate_channels(a), out(L, L);
  raw_attention(be, mean.data(), minmax, L, out.data());
  return out;
}

// The average of equally sized (L × L) maps (raw attention over the chosen layers).
template <class T>
[[nodiscard]] matrix<T> average_maps(const std::vector<matrix<T>>& maps) {
  constexpr std::string_view where = "mixlens::analysis::average_maps";
  if (maps.empty()) mixlens::detail::fail(where, "maps", "at least one map", 0);
  const index_t L = maps.front().extent(0);
  matrix<T> out(L, L);
  for (std::size_t k = 0; k < maps.size(); ++k) {
    mixlens::detail::check_square(where, "maps[" + std::to_string(k) + "]", L, maps[k].extent(0), maps[k].extent(1));
    for (index_t i = 0; i < L * L; ++i) out.data()[i] += maps[k].data()[i];
  }
  for (index_t i = 0; i < L * L; ++i) out.data()[i] /= static_cast<T>(maps.size());
  return out;
}

// Attention rollout of host maps (analysis/layer_maps.hpp's rollout_accumulator
// on the host backend): add() the channel-aggregated map of each layer from the
// start layer on, in order; result() is rownorm(I + A_last) ⋯ rownorm(I + A_first).
template <class T>
class attention_rollout {
 public:
  explicit attention_rollout(index_t length) : acc_(backend, length) {}

  [[nodiscard]] index_t length() const { return acc_.length(); }
  [[nodiscard]] index_t layers() const { return acc_.layers(); }

  void add(matrix_view<const T> layer_map) {
    const index_t L = length();
    mixlens::detail::check_square("mixlens::analysis::attention_rollout::add", "layer_map", L, layer_map.extent(0),
                                  layer_map.extent(1));
    matrix<T> dense(L, L);  // contiguous, whatever the view's strides
    for (index_t i = 0; i < L; ++i)
      for (index_t j = 0; j < L; ++j) dense(i, j) = layer_map(i, j);
    acc_.add(dense.data());
  }

  [[nodiscard]] matrix<T> result() const {
    matrix<T> rho(length(), length());
    std::copy_n(acc_.result(), rho.size(), rho.data());
    return rho;
  }

 private:
  static constexpr host_backend<T> backend{};
  rollout_accumulator<host_backend<T>> acc_;
};

// Rollout of a list of per-layer maps from `start_layer` on.
template <class T>
[[nodiscard]] matrix<T> rollout(const std::vector<matrix<T>>& maps, index_t start_layer = 0) {
  constexpr std::string_view where = "mixlens::analysis::rollout";
  if (maps.empty()) mixlens::detail::fail(where, "maps", "at least one map", 0);
  if (start_layer < 0 || start_layer >= static_cast<index_t>(maps.size()))
    mixlens::detail::fail(where, "start_layer", "a layer in [0, " + std::to_string(maps.size()) + ")", start_layer);
  attention_rollout<T> r(maps.front().extent(0));
  for (std::size_t k = static_cast<std::size_t>(start_layer); k < maps.size(); ++k) r.add(maps[k].view());
  return r.result();
}

enum class bidirectional_mode {
  sum,     // F + flip(B): the whole bidirectional operator (forward and backward scans summed)
  mean,    // (F + flip(B)) / 2: for blocks that average the two directions
  splice,  // columns ≤ cls from F, columns > cls from flip(B), as the Vision
           // Mamba explanation code reads the CLS token's row
};

// Combines a forward map F with a backward map B given in the backward scan's own
// (reversed) time: flip(B)[i][j] = B[L−1−i][L−1−j].
template <class T>
[[nodiscard]] matrix<T> combine_bidirectional(matrix_view<const T> forward, matrix_view<const T> backward,
                                              bidirectional_mode mode = bidirectional_mode::sum, index_t cls = -1) {
  constexpr std::string_view where = "mixlens::analysis::combine_bidirectional";
  const index_t L = forward.extent(0);
  mixlens::detail::check_positive(where, "forward (rows)", L);
  mixlens::detail::check_square(where, "forward", L, forward.extent(0), forward.extent(1));
  mixlens::detail::check_square(where, "backward", L, backward.extent(0), backward.extent(1));
  if (mode == bidirectional_mode::splice && (cls < 0 || cls >= L))
    mixlens::detail::fail(where, "cls", "a position in [0, " + std::to_string(L) + ") for splice", cls);
  matrix<T> out(L, L);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < L; ++j) {
      const T f = forward(i, j), b = backward(L - 1 - i, L - 1 - j);
      switch (mode) {
        case bidirectional_mode::sum: out(i, j) = f + b; break;
        case bidirectional_mode::mean: out(i, j) = (f + b) / T(2); break;
        case bidirectional_mode::splice: out(i, j) = j <= cls ? f : b; break;
      }
    }
  return out;
}

}  // namespace mixlens::analysis
