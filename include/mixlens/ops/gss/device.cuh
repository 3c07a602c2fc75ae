// GSS on the device: apply is the DSS convolution with the gate fused into its
// epilogue (gpu::detail::lti_apply: cuFFT for long fp32 kernels, direct
// otherwise), y = g ⊙ (K ∗ v + D·v). materialize and rows stay generic (a row
// is the gate times a copy of the kernel).
#pragma once

#include <cuda_runtime.h>

#include "mixlens/gpu/operator.cuh"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/gss.hpp"

namespace mixlens::gpu {

template <class T>
struct device_path<gss_operator<T>> {
  static void apply(const gss_operator<T>& op, matrix_view<const T> v, matrix_view<T> y, cudaStream_t stream) {
    detail::lti_apply(op.mixer, v.data_handle(), y.data_handle(), op.gate.data_handle(), stream);
  }
};

}  // namespace mixlens::gpu
