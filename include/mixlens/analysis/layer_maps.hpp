// Attention maps of a layer's operator, written once for every backend
// (mixlens/backend.hpp on the host, mixlens/gpu/backend.cuh on the device):
//  - aggregate_operator: the channel aggregate (L × L) of an operator's
//    diagonal blocks, materialized in chunks of channels so that the D × L × L
//    tensor need not exist at once, with the min, max and NaN count of the whole
//    tensor (for raw attention) and optionally a host copy of the tensor;
//  - raw_attention: that aggregate min–max normalized by the tensor's range;
//  - rollout_accumulator: ρ = rownorm(I + A_last) ⋯ rownorm(I + A_first);
//  - map_average: the mean of equally sized maps.
// The definitions follow the hidden-attention paper (Ali, Zimerman, Wolf 2024,
// §3.2–3.3); the host tensor functions in analysis/attention_maps.hpp are the
// same computations on host arrays.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

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

// The reduction over channels of the diagonal blocks of `op` into map (L × L)
// and, when minmax is not null, {min, max, NaN count} of every entry into
// minmax (3 values); host_copy (D × L × L, host memory) receives the tensor
// when it is not null. All pointers but host_copy are backend memory.
template <class Backend, class Op>
void aggregate_operator(const Backend& be, const Op& op, channel_reduction r, typename Backend::value_type* map,
                        typename Backend::value_type* minmax = nullptr, typename Backend::value_type* host_copy = nullptr,
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

// Throws mixlens::error naming the first NaN or infinity among the diagonal
// blocks of `op` when minmax (from aggregate_operator, backend memory) shows one:
// the maps would otherwise be NaN or, for min–max scans that skip NaN, zeros.
// Finding the position rematerializes the blocks, which happens only on failure.
template <class Backend, class Op>
void check_finite_blocks(const Backend& be, const Op& op, const typename Backend::value_type* minmax,
                         std::string_view where, std::size_t max_chunk_bytes = default_chunk_bytes) {
  using T = typename Backend::value_type;
  const auto mm = be.download(minmax, 3);
  if (mm[2] == T(0) && std::isfinite(mm[0]) && std::isfinite(mm[1])) return;
  const auto& v = view_of(op);
  const index_t D = v.out_channels(), L = v.length(), LL = L * L;
  const index_t chunk = chunk_channels(D, L, sizeof(T), max_chunk_bytes);
  auto block = be.alloc(chunk * LL);
  for (index_t d0 = 0; d0 < D; d0 += chunk) {
    const index_t count = std::min(chunk, D - d0);
    be.materialize_channels(v, d0, count, block.data());
    const auto host = be.download(block.data(), count * LL);
    for (index_t c = 0; c < count; ++c)
      if (const std::string at = mixlens::detail::find_non_finite(host.data() + c * LL, {L, L}); !at.empty())
        mixlens::detail::fail(where, "a", "finite values", at + " of channel " + std::to_string(d0 + c));
  }
  mixlens::detail::fail(where, "a", "finite values", "a non-finite value");
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

}  // namespace mixlens::analysis
