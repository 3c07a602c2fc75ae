// Vision Mamba (hustvl/Vim) classifiers on the GPU (fp32): the host model's
// weights uploaded once (the same vim_weights views over device memory) and the
// forward pass that models/vim_forward.hpp writes once for every backend, run
// on gpu::device_backend (cuBLAS products, the fused scan of each branch). The
// hidden attention of a layer's device signals: the branch operators
// (s.forward.ssm(), s.backward.ssm()) through analysis::aggregate_operator on
// the device, or gpu::to_host(s) for the host functions of models/vim_attention.hpp.
// Needs nlohmann-json (through models/) and cuBLAS (mixlens::gpu links it).
#pragma once

#include "mixlens/gpu/backend.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/models/vim_forward.hpp"
#include "mixlens/models/vim_model.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::gpu {

using device_vim_weights = bound<models::vim_weights<float>, device_storage>;

// The model's weights in device memory (each branch's A as −exp(A_log), conv
// taps by lag).
[[nodiscard]] inline device_vim_weights to_device(const models::vim_model<float>& m) {
  return to_device(models::host_weights(m).view());
}

// The logits (num_classes) in device memory for `image` (H × W × C, host
// memory, normalized); `observe` sees every layer's signals (device views,
// valid during the call).
template <class Observer>
[[nodiscard]] device_backend::array<float> vim_forward(const device_backend& be, const device_vim_weights& w,
                                                       tensor_view<const float, 3> image, Observer&& observe) {
  return models::vim_forward(be, w.view(), image, observe);
}

[[nodiscard]] inline device_backend::array<float> vim_forward(const device_backend& be, const device_vim_weights& w,
                                                              tensor_view<const float, 3> image) {
  return vim_forward(be, w, image, [](const models::vim_layer_signals<float>&) {});
}

}  // namespace mixlens::gpu
