// Attention maps of a layer's operator, written once for every backend
// (mixlens/backend.hpp on the host, mixlens/gpu/backend.cuh on the device):
//  - aggregate_operator: the channel aggregate (L × L) of an operator's
//    diagonal blocks with the min, max and NaN count of the whole tensor (for
//    raw attention) and optionally a host copy of the tensor: straight from the
//    signals where the backend has it (the host's S6 aggregate: no D × L × L
//    tensor at all), else
//    materialized in chunks of channels (aggregate_materialized);
//    aggregate_bidirectional the same for a forward and a time-reversed
//    backward operator combined (Vision Mamba's blocks);
//  - aggregate_rows (aggregate_rows_bidirectional): selected rows (R × L) of
//    that aggregate straight from the operator's rows, O(D·R·L·N) for S6, no
//    L × L array at all; tensor_range (tensor_range_bidirectional): the min,
//    max and NaN count of the whole tensor without it, for raw attention rows;
//  - raw_attention: that aggregate min–max normalized by the tensor's range;
//  - rollout_accumulator: ρ = rownorm(I + A_last) ⋯ rownorm(I + A_first);
//  - map_average: the mean of equally sized maps;
//  - model_maps: the two maps of a model, layer by layer: raw attention
//    averaged over the layers and the rollout (mixlens-attn's raw.npy and
//    rollout.npy, models::attribute's raw and rollout); model_row_maps the
//    raw attention of selected rows (raw_rows.npy; rollout needs whole maps).
// The definitions follow the hidden-attention paper (Ali, Zimerman, Wolf 2024,
// §3.2–3.3); the host tensor functions in analysis/attention_maps.hpp are the
// same computations on host arrays.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/backend.hpp"
#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

// Channels per chunk so that one chunk of L × L matrices fits in `max_bytes`.
[[nodiscard]] inline index_t chunk_channels(index_t channels, index_t length, std::size_t element_bytes,
                                            std::size_t max_bytes) {
  const std::size_t per_channel = static_cast<std::size_t>(length * length) * element_bytes;
  return std::clamp<index_t>(static_cast<index_t>(max_bytes / per_channel), 1, channels);
}

inline constexpr std::size_t default_chunk_bytes = std::size_t(2) << 30;

// The reduction over channels of the diagonal blocks of `op` into map (L × L) and,
// when minmax is not null, {min, max, NaN count} of every entry into minmax (3
// values); host_copy (D × L × L, host memory) receives the tensor when it is not
// null. All pointers but host_copy are backend memory. The blocks are
// materialized in chunks of channels of at most max_chunk_bytes.
template <class Backend, class Op>
void aggregate_materialized(const Backend& be, const Op& op, channel_reduction r, typename Backend::value_type* map,
                            typename Backend::value_type* minmax = nullptr,
                            typename Backend::value_type* host_copy = nullptr,
                            std::size_t max_chunk_bytes = default_chunk_bytes) {
  using T = typename Backend::value_type;
  const auto& v = view_of(op);
  const index_t D = v.out_channels(), L = v.length(), LL = L * L;
  const index_t chunk = chunk_channels(D, L, sizeof(T), max_chunk_bytes);
  auto block = be.alloc(chunk * LL);
  auto acc = be.template alloc<double>(LL);
  be.fill_zero(acc.data(), LL);
  if (minmax) be.reset_min_max(minmax);
  for (index_t d0 = 0; d0 < D; d0 += chunk) {
    const index_t count = std::min(chunk, D - d0);
    be.materialize_channels(v, d0, count, block.data());
    be.aggregate(block.data(), count, LL, r, acc.data(), minmax);
    if (host_copy) be.copy_to_host(block.data(), count * LL, host_copy + d0 * LL);
  }
  be.mean(acc.data(), LL, double(D), map);
  be.synchronize();  // the chunk buffers go away
}

// The same results; without host_copy, straight from the operator's signals
// where the backend reduces its blocks while it forms them
// (be.aggregate_channels where be.aggregates_directly: S6's α on the host, its
// signed mean without the range on the device), so that no D × L × L tensor exists.
template <class Backend, class Op>
void aggregate_operator(const Backend& be, const Op& op, channel_reduction r, typename Backend::value_type* map,
                        typename Backend::value_type* minmax = nullptr, typename Backend::value_type* host_copy = nullptr,
                        std::size_t max_chunk_bytes = default_chunk_bytes) {
  const auto& v = view_of(op);
  if constexpr (requires(double* acc) {
                  be.aggregate_channels(v, r, acc, minmax);
                  { be.aggregates_directly(v, r, true) } -> std::convertible_to<bool>;
                }) {
    if (!host_copy && be.aggregates_directly(v, r, minmax != nullptr)) {
      const index_t LL = v.length() * v.length();
      auto acc = be.template alloc<double>(LL);
      be.fill_zero(acc.data(), LL);
      if (minmax) be.reset_min_max(minmax);
      be.aggregate_channels(v, r, acc.data(), minmax);
      be.mean(acc.data(), LL, double(v.out_channels()), map);
      be.synchronize();
      return;
    }
  }
  aggregate_materialized(be, op, r, map, minmax, host_copy, max_chunk_bytes);
}

}  // namespace mixlens::analysis

namespace mixlens::detail {

// The chunk loop of the bidirectional aggregates: per chunk of channels the
// forward entries (n per channel) and the backward ones, the backward ones
// reversed in runs of `reversed` values (J·M·J: a whole L × L block, or one row
// of L), the two summed and scaled, then reduced into map (n values) and
// minmax, and copied into host_copy (D × n) when it is not null.
template <class Backend, class FormForward, class FormBackward>
void aggregate_combined(const Backend& be, index_t D, index_t n, index_t reversed, index_t chunk,
                        typename Backend::value_type scale, channel_reduction r, typename Backend::value_type* map,
                        typename Backend::value_type* minmax, typename Backend::value_type* host_copy,
                        FormForward&& form_forward, FormBackward&& form_backward) {
  using T = typename Backend::value_type;
  auto block_f = be.alloc(chunk * n), block_b = be.alloc(chunk * n), sum = be.alloc(chunk * n);
  auto acc = be.template alloc<double>(n);
  be.fill_zero(acc.data(), n);
  if (minmax) be.reset_min_max(minmax);
  for (index_t d0 = 0; d0 < D; d0 += chunk) {
    const index_t count = std::min(chunk, D - d0), m = count * n;
    form_forward(d0, count, block_f.data());
    form_backward(d0, count, block_b.data());
    be.reverse_columns(block_b.data(), m / reversed, reversed, sum.data());
    be.axpy(sum.data(), block_f.data(), T(1), m);
    T* combined = sum.data();
    if (scale != T(1)) {  // scaled into the forward buffer, which is free now
      be.fill(block_f.data(), m, T(0));
      be.axpy(block_f.data(), sum.data(), scale, m);
      combined = block_f.data();
    }
    be.aggregate(combined, count, n, r, acc.data(), minmax);
    if (host_copy) be.copy_to_host(combined, m, host_copy + d0 * n);
  }
  be.mean(acc.data(), n, double(D), map);
  be.synchronize();
}

}  // namespace mixlens::detail

namespace mixlens::analysis {

// aggregate_operator for a bidirectional layer (Vision Mamba): per channel the
// combined matrix scale · (M_f + J·M_b·J), M_b being the backward operator's
// block in its own, flipped time and J the exchange matrix. J·M·J of an L × L
// block is the block read backwards as one array of L² values, so each chunk of
// backward blocks is reversed whole, per channel.
template <class Backend, class Forward, class Backward>
void aggregate_bidirectional(const Backend& be, const Forward& forward, const Backward& backward,
                             typename Backend::value_type scale, channel_reduction r,
                             typename Backend::value_type* map, typename Backend::value_type* minmax = nullptr,
                             typename Backend::value_type* host_copy = nullptr,
                             std::size_t max_chunk_bytes = default_chunk_bytes) {
  using T = typename Backend::value_type;
  constexpr std::string_view where = "mixlens::analysis::aggregate_bidirectional";
  const auto &f = view_of(forward), &b = view_of(backward);
  const index_t D = f.out_channels(), L = f.length(), LL = L * L;
  mixlens::detail::check_equal(where, "backward", "channels (those of the forward operator)", D, b.out_channels());
  mixlens::detail::check_equal(where, "backward", "length (that of the forward operator)", L, b.length());
  const index_t chunk = chunk_channels(D, L, 3 * sizeof(T), max_chunk_bytes);  // three buffers of blocks
  mixlens::detail::aggregate_combined(
      be, D, LL, LL, chunk, scale, r, map, minmax, host_copy,
      [&](index_t d0, index_t count, T* out) { be.materialize_channels(f, d0, count, out); },
      [&](index_t d0, index_t count, T* out) { be.materialize_channels(b, d0, count, out); });
}

// The positions of selected rows, checked: at least one, each in [0, length).
inline void check_positions(std::string_view where, std::span<const index_t> positions, index_t length) {
  if (positions.empty()) mixlens::detail::fail(where, "positions", "at least one row", "none");
  for (const index_t t : positions)
    if (t < 0 || t >= length)
      mixlens::detail::fail(where, "positions", "rows in [0, " + std::to_string(length) + ")", t);
}

// Rows `positions` (host memory, R of them, each in [0, L)) of the channel
// aggregate of op's diagonal blocks into map_rows (R × L, backend memory), from
// the operator's rows alone: op.row per channel and position — O(D·R·L·N) for
// S6 — in chunks of channels of at most max_chunk_bytes of rows, never an L × L
// array. minmax (not null) receives {min, max, NaN count} over those rows of
// every block (the zeros right of the diagonal included), host_copy (D × R × L,
// host memory) the rows themselves. Row k of map_rows equals row positions[k] of
// aggregate_operator's map.
template <class Backend, class Op>
void aggregate_rows(const Backend& be, const Op& op, std::span<const index_t> positions, channel_reduction r,
                    typename Backend::value_type* map_rows, typename Backend::value_type* minmax = nullptr,
                    typename Backend::value_type* host_copy = nullptr,
                    std::size_t max_chunk_bytes = default_chunk_bytes) {
  using T = typename Backend::value_type;
  const auto& v = view_of(op);
  const index_t D = v.out_channels(), L = v.length(), R = static_cast<index_t>(positions.size()), n = R * L;
  check_positions("mixlens::analysis::aggregate_rows", positions, L);
  const index_t chunk = std::clamp<index_t>(static_cast<index_t>(max_chunk_bytes / (std::size_t(n) * sizeof(T))), 1, D);
  auto block = be.alloc(chunk * n);
  auto acc = be.template alloc<double>(n);
  be.fill_zero(acc.data(), n);
  if (minmax) be.reset_min_max(minmax);
  for (index_t d0 = 0; d0 < D; d0 += chunk) {
    const index_t count = std::min(chunk, D - d0);
    be.rows_channels(v, d0, count, positions, block.data());
    be.aggregate(block.data(), count, n, r, acc.data(), minmax);
    if (host_copy) be.copy_to_host(block.data(), count * n, host_copy + d0 * n);
  }
  be.mean(acc.data(), n, double(D), map_rows);
  be.synchronize();
}

// aggregate_rows of a bidirectional layer's combined matrices
// scale · (M_f + J·M_b·J) (aggregate_bidirectional): row t of J·M_b·J is row
// L − 1 − t of the backward block, reversed.
template <class Backend, class Forward, class Backward>
void aggregate_rows_bidirectional(const Backend& be, const Forward& forward, const Backward& backward,
                                  typename Backend::value_type scale, std::span<const index_t> positions,
                                  channel_reduction r, typename Backend::value_type* map_rows,
                                  typename Backend::value_type* minmax = nullptr,
                                  typename Backend::value_type* host_copy = nullptr,
                                  std::size_t max_chunk_bytes = default_chunk_bytes) {
  using T = typename Backend::value_type;
  constexpr std::string_view where = "mixlens::analysis::aggregate_rows_bidirectional";
  const auto &f = view_of(forward), &b = view_of(backward);
  const index_t D = f.out_channels(), L = f.length(), R = static_cast<index_t>(positions.size()), n = R * L;
  mixlens::detail::check_equal(where, "backward", "channels (those of the forward operator)", D, b.out_channels());
  mixlens::detail::check_equal(where, "backward", "length (that of the forward operator)", L, b.length());
  check_positions(where, positions, L);
  std::vector<index_t> mirrored(positions.begin(), positions.end());
  for (index_t& t : mirrored) t = L - 1 - t;
  const index_t chunk =
      std::clamp<index_t>(static_cast<index_t>(max_chunk_bytes / (3 * std::size_t(n) * sizeof(T))), 1, D);
  mixlens::detail::aggregate_combined(
      be, D, n, L, chunk, scale, r, map_rows, minmax, host_copy,
      [&](index_t d0, index_t count, T* out) { be.rows_channels(f, d0, count, positions, out); },
      [&](index_t d0, index_t count, T* out) { be.rows_channels(b, d0, count, std::span<const index_t>(mirrored), out); });
}

// {min, max, NaN count} of every entry of op's diagonal blocks (the zeros above
// the diagonal included: what aggregate_operator's minmax holds, the range raw
// attention normalizes by) into minmax (3 values, backend memory), without the
// D × L × L tensor. The time is that of the whole maps, O(D·L²·N) for S6: every
// entry is formed once. Memory: on the host for S6 one row tile per thread
// (be.range_channels); otherwise one chunk of blocks of at most max_chunk_bytes.
template <class Backend, class Op>
void tensor_range(const Backend& be, const Op& op, typename Backend::value_type* minmax,
                  std::size_t max_chunk_bytes = default_chunk_bytes) {
  using T = typename Backend::value_type;
  const auto& v = view_of(op);
  be.reset_min_max(minmax);
  if constexpr (requires { be.range_channels(v, minmax); }) {
    be.range_channels(v, minmax);
  } else {
    const index_t D = v.out_channels(), L = v.length(), LL = L * L;
    const index_t chunk = chunk_channels(D, L, sizeof(T), max_chunk_bytes);
    auto block = be.alloc(chunk * LL);
    for (index_t d0 = 0; d0 < D; d0 += chunk) {
      const index_t count = std::min(chunk, D - d0);
      be.materialize_channels(v, d0, count, block.data());
      be.accumulate_min_max(block.data(), count * LL, minmax);
    }
  }
  be.synchronize();
}

// tensor_range of a bidirectional layer's combined matrices: the pass of
// aggregate_bidirectional (its L × L map discarded; three chunks of blocks).
template <class Backend, class Forward, class Backward>
void tensor_range_bidirectional(const Backend& be, const Forward& forward, const Backward& backward,
                                typename Backend::value_type scale, typename Backend::value_type* minmax,
                                std::size_t max_chunk_bytes = default_chunk_bytes) {
  const index_t L = view_of(forward).length();
  auto map = be.alloc(L * L);
  aggregate_bidirectional(be, forward, backward, scale, channel_reduction::mean, map.data(), minmax, nullptr,
                          max_chunk_bytes);
}

}  // namespace mixlens::analysis

// (in mixlens::detail: an analysis::detail would hide mixlens::detail from the
// analysis headers)
namespace mixlens::detail {

// "NaN at [i][j] of channel d" for the first non-finite entry among the
// diagonal blocks of `op`, or "" when all are finite.
template <class Backend, class Op>
[[nodiscard]] std::string first_non_finite_block(const Backend& be, const Op& op, std::size_t max_chunk_bytes) {
  using T = typename Backend::value_type;
  const auto& v = view_of(op);
  const index_t D = v.out_channels(), L = v.length(), LL = L * L;
  const index_t chunk = analysis::chunk_channels(D, L, sizeof(T), max_chunk_bytes);
  auto block = be.alloc(chunk * LL);
  for (index_t d0 = 0; d0 < D; d0 += chunk) {
    const index_t count = std::min(chunk, D - d0);
    be.materialize_channels(v, d0, count, block.data());
    const auto host = be.download(block.data(), count * LL);
    for (index_t c = 0; c < count; ++c)
      if (const std::string at = find_non_finite(host.data() + c * LL, {L, L}); !at.empty())
        return at + " of channel " + std::to_string(d0 + c);
  }
  return {};
}

template <class Backend>
[[nodiscard]] bool finite_min_max(const Backend& be, const typename Backend::value_type* minmax) {
  using T = typename Backend::value_type;
  const auto mm = be.download(minmax, 3);
  return mm[2] == T(0) && std::isfinite(mm[0]) && std::isfinite(mm[1]);
}

}  // namespace mixlens::detail

namespace mixlens::analysis {

// Throws mixlens::error naming the first NaN or infinity among the diagonal
// blocks of `op` when minmax (from aggregate_operator, backend memory) shows one:
// the maps would otherwise be NaN or, for min–max scans that skip NaN, zeros.
// Finding the position rematerializes the blocks, which happens only on failure.
template <class Backend, class Op>
void check_finite_blocks(const Backend& be, const Op& op, const typename Backend::value_type* minmax,
                         std::string_view where, std::size_t max_chunk_bytes = default_chunk_bytes) {
  if (mixlens::detail::finite_min_max(be, minmax)) return;
  const std::string at = mixlens::detail::first_non_finite_block(be, op, max_chunk_bytes);
  mixlens::detail::fail(where, "a", "finite values", at.empty() ? std::string("a non-finite value") : at);
}

// The same for aggregate_bidirectional's minmax: names the branch whose block
// holds the first non-finite value, or the combination when both are finite.
template <class Backend, class Forward, class Backward>
void check_finite_blocks(const Backend& be, const Forward& forward, const Backward& backward,
                         const typename Backend::value_type* minmax, std::string_view where,
                         std::size_t max_chunk_bytes = default_chunk_bytes) {
  if (mixlens::detail::finite_min_max(be, minmax)) return;
  std::string at = mixlens::detail::first_non_finite_block(be, forward, max_chunk_bytes);
  if (!at.empty()) at += " of the forward branch";
  else if (at = mixlens::detail::first_non_finite_block(be, backward, max_chunk_bytes); !at.empty())
    at += " of the backward branch (in its own time)";
  else
    at = "a non-finite sum of the two branches";
  mixlens::detail::fail(where, "a", "finite values", at);
}

// raw (L × L) = (mean − min) / (max − min), min and max over the layer's whole
// tensor (minmax from aggregate_operator); NaN everywhere when it held a NaN.
template <class Backend>
void raw_attention(const Backend& be, const typename Backend::value_type* mean,
                   const typename Backend::value_type* minmax, index_t length, typename Backend::value_type* out) {
  be.normalize(mean, minmax, out, length * length);
}

// Attention rollout accumulated layer by layer: add() each layer's map from the
// start layer on, in order; result() is rownorm(I + A_last) ⋯ rownorm(I + A_first),
// later layers multiplying on the left (Abnar & Zuidema 2020, as the paper uses
// it). A row whose sum is zero (possible with signed maps) is left unnormalized.
template <class Backend>
class rollout_accumulator {
 public:
  using value_type = typename Backend::value_type;

  rollout_accumulator(const Backend& be, index_t length)
      : be_(&be), length_(checked(length)), rho_(be.alloc(length * length)), next_(be.alloc(length * length)),
        aug_(be.alloc(length * length)) {
    reset();
  }

  [[nodiscard]] index_t length() const { return length_; }
  [[nodiscard]] index_t layers() const { return layers_; }

  void reset() {
    be_->identity(rho_.data(), length_);
    layers_ = 0;
  }

  // layer_map: L × L in the backend's memory.
  void add(const value_type* layer_map) {
    const index_t L = length_;
    be_->rownorm_identity(layer_map, aug_.data(), L);
    be_->gemm(false, false, L, L, L, aug_.data(), rho_.data(), value_type(0), next_.data());  // aug · ρ
    std::swap(rho_, next_);
    ++layers_;
  }

  [[nodiscard]] const value_type* result() const { return rho_.data(); }

 private:
  static index_t checked(index_t length) {  // before anything is allocated
    mixlens::detail::check_positive("mixlens::analysis::rollout_accumulator", "length", length);
    return length;
  }

  const Backend* be_;
  index_t length_;
  typename Backend::template array<value_type> rho_, next_, aug_;
  index_t layers_ = 0;
};

// The mean of equally sized maps, summed in order and divided at the end.
template <class Backend>
class map_average {
 public:
  using value_type = typename Backend::value_type;

  map_average(const Backend& be, index_t size) : be_(&be), size_(checked(size)), sum_(be.alloc(size)) { reset(); }
  void reset() {
    be_->fill(sum_.data(), size_, value_type(0));
    count_ = 0;
  }
  void add(const value_type* map) {
    be_->axpy(sum_.data(), map, value_type(1), size_);
    ++count_;
  }
  [[nodiscard]] index_t count() const { return count_; }
  // The average so far into out (backend memory).
  void result(value_type* out) const {
    if (count_ == 0) mixlens::detail::fail("mixlens::analysis::map_average", "maps", "at least one map", 0);
    be_->fill(out, size_, value_type(0));
    be_->axpy(out, sum_.data(), value_type(1) / static_cast<value_type>(count_), size_);
  }

 private:
  static index_t checked(index_t size) {
    mixlens::detail::check_positive("mixlens::analysis::map_average", "size", size);
    return size;
  }

  const Backend* be_;
  index_t size_;
  typename Backend::template array<value_type> sum_;
  index_t count_ = 0;
};

// The maps of a model over its analysed layers: add() each layer's channel
// aggregate (L × L) and the min / max / NaN count of its tensor (from
// aggregate_operator, checked finite with check_finite_blocks), in layer order;
// raw() is the mean over the layers of their raw attention, rollout() the
// rollout of the aggregates. Backend memory throughout.
template <class Backend>
class model_maps {
 public:
  using value_type = typename Backend::value_type;

  model_maps(const Backend& be, index_t length)
      : be_(&be), length_(length), rollout_(be, length), raw_average_(be, length * length), raw_(be.alloc(length * length)) {}

  [[nodiscard]] index_t length() const { return length_; }
  [[nodiscard]] index_t layers() const { return raw_average_.count(); }

  void add(const value_type* map, const value_type* minmax) {
    raw_attention(*be_, map, minmax, length_, raw_.data());
    raw_average_.add(raw_.data());
    rollout_.add(map);
  }

  // The mean raw attention into out (L × L, backend memory); at least one layer.
  void raw(value_type* out) const { raw_average_.result(out); }
  [[nodiscard]] const value_type* rollout() const { return rollout_.result(); }

 private:
  const Backend* be_;
  index_t length_;
  rollout_accumulator<Backend> rollout_;
  map_average<Backend> raw_average_;
  typename Backend::template array<value_type> raw_;  // one layer's raw map
};

// The raw attention of selected rows over a model's analysed layers: add() each
// layer's rows of its channel aggregate (R × L, aggregate_rows) and a range
// (tensor_range: raw() is then exactly those rows of model_maps::raw; or the
// rows' own range from aggregate_rows, a different normalization), in layer
// order. The rollout has no such form: every layer's whole map enters each row.
template <class Backend>
class model_row_maps {
 public:
  using value_type = typename Backend::value_type;

  model_row_maps(const Backend& be, index_t rows, index_t length)
      : be_(&be), size_(rows * length), raw_average_(be, rows * length), raw_(be.alloc(rows * length)) {}

  [[nodiscard]] index_t layers() const { return raw_average_.count(); }

  void add(const value_type* map_rows, const value_type* minmax) {
    be_->normalize(map_rows, minmax, raw_.data(), size_);
    raw_average_.add(raw_.data());
  }

  // The mean raw rows into out (R × L, backend memory); at least one layer.
  void raw(value_type* out) const { raw_average_.result(out); }

 private:
  const Backend* be_;
  index_t size_;
  map_average<Backend> raw_average_;
  typename Backend::template array<value_type> raw_;
};

}  // namespace mixlens::analysis
