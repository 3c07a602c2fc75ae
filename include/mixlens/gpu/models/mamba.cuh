// Mamba, Falcon-Mamba and Mamba-2 language models on the GPU (fp32): the host
// model's weights uploaded once (the same mamba_weights / mamba2_weights views
// over device memory), and the forward pass,
// hidden attention, maps and self-test that models/mamba_forward.hpp and
// analysis/layer_maps.hpp write once for every backend, run on
// gpu::device_backend (cuBLAS products, the fused scan, the tiled α).
// Needs nlohmann-json (through models/) and cuBLAS (mixlens::gpu links it).
#pragma once

#include <span>

#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/gpu/backend.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/models/mamba_forward.hpp"
#include "mixlens/models/mamba2_model.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::gpu {

using device_mamba_weights = bound<models::mamba_weights<float>, device_storage>;

// The model's weights in device memory (A as −exp(A_log), conv taps by lag).
[[nodiscard]] inline device_mamba_weights to_device(const models::mamba_model<float>& m) {
  return to_device(models::host_weights(m).view());
}

using device_mamba2_weights = bound<models::mamba2_weights<float>, device_storage>;

// A Mamba-2 model's weights in device memory (A as −exp(A_log), conv taps by lag).
[[nodiscard]] inline device_mamba2_weights to_device(const models::mamba2_model<float>& m) {
  return to_device(models::host_weights(m).view());
}

// The logits (L × V, row-major) in device memory; `observe` sees every layer's
// signals (device views, valid during the call).
template <class Observer>
[[nodiscard]] device_backend::array<float> mamba_forward(const device_backend& be, const device_mamba_weights& w,
                                                 std::span<const index_t> tokens, Observer&& observe) {
  return models::mamba_forward(be, w.view(), tokens, observe);
}

[[nodiscard]] inline device_backend::array<float> mamba_forward(const device_backend& be, const device_mamba_weights& w,
                                                        std::span<const index_t> tokens) {
  return mamba_forward(be, w, tokens, [](const models::mamba_layer_signals<float>&) {});
}

}  // namespace mixlens::gpu
