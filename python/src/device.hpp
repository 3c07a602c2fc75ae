// The CUDA side of the extension (device.cu; built where CMake finds nvcc, and
// then MIXLENS_PYTHON_CUDA is defined): Model's and mixlens.hf's computations on
// the device backend, behind an interface that knows neither nanobind nor CUDA's
// headers, so that the bindings stay host code. Every call runs on the device
// the model was uploaded to, on its default stream, and returns when its
// results are complete; the GIL is the caller's business.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "attention.hpp"
#include "mixlens/models/attribute.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/vim_model.hpp"

namespace mixlens::python::cuda {

// Whether device `device` can run the library's kernels (a driver, a device of
// compute capability 9.0, the index in range); else false and the reason.
[[nodiscard]] bool available(int device, std::string* reason);

// A float32 language model's weights in device memory.
class model;

[[nodiscard]] std::shared_ptr<const model> upload(const models::language_model<float>& m, int device);

// Logits (L × V) on the device.
[[nodiscard]] result_array<float> forward(const model& m, std::span<const index_t> tokens);

[[nodiscard]] attention_data<float> attention(const model& m, std::span<const index_t> tokens,
                                              const std::vector<index_t>& layers, const std::vector<index_t>& save,
                                              models::attention_form form, channel_reduction reduction,
                                              row_selection rows);

[[nodiscard]] models::attribution_result attribute(const model& m, std::span<const index_t> tokens,
                                                   models::attribution_method method, models::gradient_target target,
                                                   const models::attribute_options& options);

[[nodiscard]] gradients_data<float> gradients(const model& m, std::span<const index_t> tokens,
                                              models::gradient_target target, const models::gradient_options& options);

// mixlens-eval --device cuda on one sequence: the batched evaluator, at most
// max_tokens token ids per pass, TF32 products for the perturbed sequences with tf32.
[[nodiscard]] std::vector<models::method_faithfulness> faithfulness(
    const model& m, std::span<const index_t> tokens, std::span<const models::attribution_method> methods,
    models::gradient_target target, const models::faithfulness_run_options& run, index_t max_tokens, bool tf32);

// mixlens.hf on a CUDA model: the captured pointers and the logits (L × V) are
// device memory of the model's device; the logits are copied.
[[nodiscard]] attention_data<float> attention_from_projections(const model& m, index_t L,
                                                               const std::vector<captured_layer<float>>& captured,
                                                               const std::vector<index_t>& layers,
                                                               const std::vector<index_t>& save,
                                                               models::attention_form form, channel_reduction reduction,
                                                               const float* logits, std::vector<double>& deviation);

// A float32 Vision Mamba classifier's weights in device memory, and its
// forward pass, maps and attributions there (the image: host memory).
class vision_model;

[[nodiscard]] std::shared_ptr<const vision_model> upload(const models::vim_model<float>& m, int device);

[[nodiscard]] result_array<float> forward(const vision_model& m, tensor_view<const float, 3> image);

[[nodiscard]] attention_data<float> attention(const vision_model& m, tensor_view<const float, 3> image,
                                              const std::vector<index_t>& layers, const std::vector<index_t>& save,
                                              models::attention_form form, channel_reduction reduction,
                                              row_selection rows);

[[nodiscard]] models::attribution_result attribute(const vision_model& m, tensor_view<const float, 3> image,
                                                   models::attribution_method method, index_t target_class,
                                                   const models::attribute_options& options);

[[nodiscard]] gradients_data<float> gradients(const vision_model& m, tensor_view<const float, 3> image,
                                              index_t target_class, const models::gradient_options& options);

// Host values copied into device memory of `device` (small results: the attribution scores).
[[nodiscard]] result_array<float> to_device(std::span<const float> values, std::vector<std::size_t> shape, int device);

}  // namespace mixlens::python::cuda
