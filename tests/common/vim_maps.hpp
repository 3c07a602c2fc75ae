// The combined maps of a Vision Mamba layer computed on a backend
// (analysis::aggregate_bidirectional, in chunks of two channels so that the
// chunk loop runs) against the host's combined matrices (vim_layer_attention in
// the block's own combination): the D × L × L copy, the channel mean and the
// tensor's min and max. Shared by the host and the device tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/models/vim_attention.hpp"

namespace mixlens::testing {

// max |got − want| / max |want| (NaN propagates).
template <class A, class B>
double relative_difference(const A* got, const B* want, std::size_t n) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = std::abs(double(got[i]) - double(want[i]));
    if (std::isnan(d) || d > diff) diff = d;
    scale = std::max(scale, std::abs(double(want[i])));
  }
  return diff / (scale > 0 ? scale : 1);
}

// The worst relative error of the three results; `s` in the backend's memory,
// `host` the same signals in host memory.
template <class Backend, class T = typename Backend::value_type>
double combined_map_error(const Backend& be, const models::vim_layer_signals<T>& s,
                          const models::vim_layer_signals<T>& host, models::attention_form form) {
  const index_t D = s.channels(), L = s.length(), LL = L * L;
  auto map = be.alloc(LL), minmax = be.alloc(3);
  std::vector<T> copy(static_cast<std::size_t>(D * LL));
  const std::size_t two_channels = 2 * 3 * static_cast<std::size_t>(LL) * sizeof(T);
  const auto run = [&](const auto& f, const auto& b) {
    analysis::aggregate_bidirectional(be, f, b, s.scale, channel_reduction::mean, map.data(), minmax.data(), copy.data(),
                                      two_channels);
  };
  if (form == models::attention_form::paper) run(s.forward.ssm(), s.backward.ssm());
  else run(models::unified_operator(be, s.forward, {.offset = false}), models::unified_operator(be, s.backward, {.offset = false}));
  const auto want = models::vim_layer_attention(host, form);
  const matrix<T> want_mean = analysis::aggregate_channels(tensor_view<const T, 3>(want.view()));
  const auto got_mean = be.download(map.data(), LL), got_minmax = be.download(minmax.data(), 3);
  const auto [lo, hi] = std::minmax_element(want.data(), want.data() + want.size());
  const T want_minmax[2] = {*lo, *hi};
  return std::max({relative_difference(copy.data(), want.data(), copy.size()),
                   relative_difference(got_mean.data(), want_mean.data(), got_mean.size()),
                   relative_difference(got_minmax.data(), want_minmax, 2), double(got_minmax[2])});  // NaN count
}

}  // namespace mixlens::testing
