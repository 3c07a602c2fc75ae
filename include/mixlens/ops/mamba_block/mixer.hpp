// The mamba_block mixer: parameters, init and bind (the view is ops/mamba_block/operator.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>
#include <type_traits>

#include "mixlens/backend.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/mamba_block/operator.hpp"
#include "mixlens/ops/s6.hpp"

namespace mixlens {

// Binds a Mamba block to the two halves of its in_proj output: x (D × L) and z
// (D × L). `conv_weight` is PyTorch's Conv1d weight (D × K, padding K − 1, so tap
// k multiplies x_{t−(K−1)+k}); `conv_bias` is (D) or empty.
template <class T, class State>
[[nodiscard]] bound_mamba_block<T, State> bind_mamba_block(const s6_mixer<T, State>& mixer, std::type_identity_t<matrix_view<const T>> conv_weight,
                 std::type_identity_t<vector_view<const T>> conv_bias, std::type_identity_t<matrix_view<const T>> x,
                 std::type_identity_t<matrix_view<const T>> z) {
  constexpr std::string_view where = "mixlens::bind_mamba_block";
  const index_t D = mixer.channels(), K = conv_weight.extent(1), L = x.extent(1);
  detail::check_equal(where, "conv_weight", "channels (extent 0)", D, conv_weight.extent(0));
  detail::check_positive(where, "conv_weight (taps, extent 1)", K);
  if (!conv_bias.empty()) detail::check_equal(where, "conv_bias", "size", D, static_cast<index_t>(conv_bias.size()));
  detail::check_equal(where, "x", "channels (extent 0)", D, x.extent(0));
  detail::check_positive(where, "x (length, extent 1)", L);

  matrix<T> kernel(D, std::min(K, L));  // taps beyond L never reach an output
  for (index_t d = 0; d < D; ++d)
    for (index_t lag = 0; lag < kernel.extent(1); ++lag) kernel(d, lag) = conv_weight(d, K - 1 - lag);
  const causal_conv_operator<T, mamba_conv_kind> conv(kernel.view(), {}, L);

  matrix<T> pre(D, L), u(D, L), activation(D, L), bias_input(D, L);
  conv.apply(x, pre.view());
  for (index_t d = 0; d < D; ++d)
    for (index_t t = 0; t < L; ++t) {
      const T bias = conv_bias.empty() ? T(0) : conv_bias[static_cast<std::size_t>(d)];
      pre(d, t) += bias;
      activation(d, t) = detail::sigmoid(pre(d, t));
      u(d, t) = pre(d, t) * activation(d, t);  // SiLU
      bias_input(d, t) = activation(d, t) * bias;
    }
  auto ssm = mixer.bind(u.view(), s6_fold{.skip = true, .gate = true}, z);
  matrix<T> offset(D, L);
  ssm->apply(bias_input.view(), offset.view());

  mamba_block_storage<T, State> s{std::move(ssm), std::move(kernel), std::move(activation), std::move(offset)};
  bound_mamba_block<T, State> op(std::move(s), [L](const mamba_block_storage<T, State>& st) {
    return mamba_block_operator<T, State>{st.ssm.view(),
                                          causal_conv_operator<T, mamba_conv_kind>(st.kernel.view(), {}, L),
                                          st.activation.view(), st.offset.view()};
  });
  op->validate();
  return op;
}

// A whole Mamba mixer block as a mixer: in_proj (2D × D_model, no bias) splits
// the input into x and z, then bind_mamba_block; the bound operator acts on x
// (the in_proj output) as the unified form does. Mamba's initialization for the
// S6 part (s6_mixer::init), PyTorch's defaults U(±1/√fan_in) for in_proj and the
// conv (K = 4) with its bias.
template <class T>
class mamba_block_mixer {
 public:
  using value_type = T;

  static mamba_block_mixer init(index_t model_channels, index_t channels, index_t state_size, std::uint64_t seed,
                                index_t conv_kernel = 4) {
    constexpr std::string_view where = "mixlens::mamba_block_mixer::init";
    detail::check_positive(where, "model_channels", model_channels);
    detail::check_positive(where, "conv_kernel", conv_kernel);
    mamba_block_mixer m;
    m.ssm = s6_mixer<T>::init(channels, state_size, (channels + 15) / 16, seed);
    m.in_proj = matrix<T>(2 * channels, model_channels);
    detail::uniform_fill(m.in_proj, seed + 11, 1.0 / std::sqrt(double(model_channels)));
    m.conv_weight = matrix<T>(channels, conv_kernel);
    detail::uniform_fill(m.conv_weight, seed + 12, 1.0 / std::sqrt(double(conv_kernel)));
    matrix<T> bias(1, channels);
    detail::uniform_fill(bias, seed + 13, 1.0 / std::sqrt(double(conv_kernel)));
    m.conv_bias.assign(bias.data(), bias.data() + channels);
    return m;
  }

  [[nodiscard]] bound_mamba_block<T> bind(matrix_view<const T> input) const {
    constexpr std::string_view where = "mixlens::mamba_block_mixer::bind";
    const index_t D = ssm.channels(), M = in_proj.extent(1), L = input.extent(1);
    detail::check_equal(where, "input", "channels (extent 0)", M, input.extent(0));
    detail::check_positive(where, "input (length, extent 1)", L);
    matrix<T> xz(2 * D, L);  // the model code's projection: x rows [0, D), z rows [D, 2D)
    host_backend<T>{}.gemm(false, false, 2 * D, L, M, in_proj.data(), input.data_handle(), T(0), xz.data());
    return bind_mamba_block(ssm, conv_weight.view(), vector_view<const T>(conv_bias.data(), conv_bias.size()),
                            matrix_view<const T>(xz.data(), D, L), matrix_view<const T>(xz.data() + D * L, D, L));
  }

  s6_mixer<T> ssm;
  matrix<T> in_proj;          // (2D × D_model): rows [0, D) give x, [D, 2D) give z
  matrix<T> conv_weight;      // (D × K), PyTorch's layout
  std::vector<T> conv_bias;   // (D)
};

}  // namespace mixlens
