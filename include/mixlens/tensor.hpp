// Non-owning views (CCCL mdspan/span) and the small owning arrays that back them.
//
// Signals are (channels, length) row-major, matching Mamba's (batch, D, L) layout
// for one batch element: x(c, t) is channel c at time t.
#pragma once

#include <cuda/std/complex>
#include <cuda/std/mdspan>
#include <cuda/std/span>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"

namespace mixlens {

template <class T>
using complex = cuda::std::complex<T>;

template <class T>
using vector_view = cuda::std::span<T>;

template <class T, std::size_t Rank>
using tensor_view = cuda::std::mdspan<T, cuda::std::dextents<index_t, Rank>>;

// Row-major matrix view: signals (channels × length), mixing matrices (L × L).
template <class T>
using matrix_view = tensor_view<T, 2>;

// Owning, contiguous, row-major array of any rank; hands out views.
template <class T, std::size_t Rank>
class tensor {
 public:
  tensor() { extents_.fill(0); }

  template <class... Extents>
    requires(sizeof...(Extents) == Rank)
  explicit tensor(Extents... extents) : extents_{static_cast<index_t>(extents)...} {
    const index_t size = detail::checked_element_count("mixlens::tensor", "extents", extents_);
    if (static_cast<std::uint64_t>(size) > data_.max_size())
      detail::fail("mixlens::tensor", "extents", "at most " + std::to_string(data_.max_size()) + " elements", size);
    data_.assign(static_cast<std::size_t>(size), T{});
  }

  [[nodiscard]] index_t extent(std::size_t r) const { return extents_[r]; }
  [[nodiscard]] index_t size() const { return static_cast<index_t>(data_.size()); }
  [[nodiscard]] T* data() { return data_.data(); }
  [[nodiscard]] const T* data() const { return data_.data(); }

  template <class... Is>
  T& operator()(Is... is) { return view()(static_cast<index_t>(is)...); }
  template <class... Is>
  const T& operator()(Is... is) const { return view()(static_cast<index_t>(is)...); }

  [[nodiscard]] tensor_view<T, Rank> view() { return make(data_.data()); }
  [[nodiscard]] tensor_view<const T, Rank> view() const { return make(data_.data()); }
  operator tensor_view<T, Rank>() { return view(); }                // NOLINT: views are the API
  operator tensor_view<const T, Rank>() const { return view(); }    // NOLINT

 private:
  template <class P>
  tensor_view<P, Rank> make(P* p) const {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return tensor_view<P, Rank>(p, extents_[I]...);
    }(std::make_index_sequence<Rank>{});
  }

  std::array<index_t, Rank> extents_{};
  std::vector<T> data_;
};

template <class T>
using matrix = tensor<T, 2>;

// A view of no data: optional operands (no D skip, no gate) are empty views.
template <class View>
[[nodiscard]] MIXLENS_HD constexpr bool is_empty(const View& v) {
  return v.size() == 0;
}

}  // namespace mixlens
