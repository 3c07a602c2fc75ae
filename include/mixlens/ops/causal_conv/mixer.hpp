// The causal_conv mixer: parameters, init and bind (the view is ops/causal_conv/operator.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "mixlens/detail/fft.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv/operator.hpp"

namespace mixlens {

// A short depthwise convolution as a mixer (Mamba's and Hyena's conv1d without
// the bias): taps (channels × K) by lag, PyTorch's Conv1d default
// initialization U(±1/√K); bind gives the convolution at the input's length.
template <class T>
class short_conv_mixer {
 public:
  using value_type = T;

  static short_conv_mixer init(index_t channels, index_t taps, std::uint64_t seed) {
    constexpr std::string_view where = "mixlens::short_conv_mixer::init";
    detail::check_positive(where, "channels", channels);
    detail::check_positive(where, "taps", taps);
    short_conv_mixer m;
    m.taps = matrix<T>(channels, taps);
    detail::uniform_fill(m.taps, seed, 1.0 / std::sqrt(double(taps)));
    return m;
  }

  [[nodiscard]] bound_lti<T, short_conv_kind> bind(matrix_view<const T> x) const {
    constexpr std::string_view where = "mixlens::short_conv_mixer::bind";
    detail::check_equal(where, "x", "channels (extent 0)", taps.extent(0), x.extent(0));
    detail::check_positive(where, "x (length, extent 1)", x.extent(1));
    return make_bound_lti<short_conv_kind>(taps, {}, x.extent(1));
  }

  matrix<T> taps;  // channels × K, tap k multiplies x_{t−k}
};

}  // namespace mixlens
