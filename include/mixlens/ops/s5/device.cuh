// S5 on the device: apply of an fp32 view by the parallel scan of gpu/lti.cuh
// (B̄·x, the scan over Λ̄, f·Re(C̃·h) + D⊙x), the code path device_s5 runs, over
// the view's own device data with stream-ordered workspaces; a bidirectional
// view adds the same scan over the reversed input, read by C̃←. Double views and
// materialize / rows take the generic path (a row is O(t·P) by running powers).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "mixlens/gpu/lti.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/gpu/scan.cuh"
#include "mixlens/ops/s5.hpp"

namespace mixlens::gpu {

template <>
struct device_path<s5_operator<float>> {
  static void apply(const s5_operator<float>& op, matrix_view<const float> x, matrix_view<float> y,
                    cudaStream_t stream) {
    const index_t P = op.states(), H = op.in_channels(), L = op.length();
    const std::size_t bytes = static_cast<std::size_t>(P * L) * sizeof(complex<float>);
    detail::stream_workspace decay(bytes, stream), bu(bytes, stream), h(bytes, stream);
    auto* pd = static_cast<complex<float>*>(decay.get());
    detail::s5_fill_decay(op.lambda_bar.data(), pd, P, P, L, stream);
    // One scan direction: its C̃ and skip (null for none) applied to x into y.
    auto scan = [&](const complex<float>* c, const float* skip, const float* in, float* out) {
      detail::s5_scan_apply("mixlens::gpu::apply (S5)", op.b_bar.data_handle(), c, skip, pd,
                            static_cast<complex<float>*>(bu.get()), static_cast<complex<float>*>(h.get()), in, out, P,
                            H, L, 1, op.conj_sym ? 2.0f : 1.0f, block_policy{}, stream);
    };
    scan(op.c_tilde.data_handle(), op.skip.empty() ? nullptr : op.skip.data(), x.data_handle(), y.data_handle());
    if (!op.causal())  // the reverse scan: the same scan over the reversed input
      detail::add_time_reversed(
          x.data_handle(), y.data_handle(), H, L,
          [&](const float* xr, float* yr) { scan(op.c_backward.data_handle(), nullptr, xr, yr); }, stream);
  }
};

}  // namespace mixlens::gpu
