// The CUDA side of mixlens._core (device.hpp): Model and mixlens.hf on the
// device backend, with the same bodies as on the host (attention.hpp,
// models::attribute, models::faithfulness_of_methods).
#include <cuda_runtime.h>

#include <string>
#include <utility>
#include <variant>

#include "device.hpp"
#include "device_memory.cuh"
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/gpu/models/vim.cuh"
#include "mixlens/models/vim_attribution.hpp"
#include "mixlens/models/mamba_batch.hpp"

namespace mixlens::python::cuda {
namespace {

// The device backend whose copies of a layer's matrices (the aggregates'
// host_copy) go to device memory: Model.attention's alpha stays on the GPU.
struct resident_backend : gpu::device_backend {
  void copy_to_host(const float* data, index_t n, float* out) const { copy(data, n, out); }
};

}  // namespace
}  // namespace mixlens::python::cuda

template <>
constexpr bool mixlens::python::copies_stay_on_backend<mixlens::python::cuda::resident_backend> = true;

namespace mixlens::python::cuda {
namespace {

template <class T>
attention_data<T> held_data(attention_data<T> d) {
  hold(d.logits), hold(d.raw), hold(d.rollout);
  for (auto& [k, a] : d.maps) hold(a);
  for (auto& [k, a] : d.alpha) hold(a);
  return d;
}

}  // namespace

class model {
 public:
  using weights = std::variant<gpu::device_mamba_weights, gpu::device_mamba2_weights>;
  model(weights w, int device) : weights_(std::move(w)), device_(device) {}

  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit([&](const auto& w) -> decltype(auto) { return f(w.view()); }, weights_);
  }
  [[nodiscard]] int device() const { return device_; }

 private:
  weights weights_;
  int device_;
};

namespace {
__global__ void probe_kernel() {}
}  // namespace

bool available(int device, std::string* reason) {
  if (!gpu::device_available(reason)) return false;
  int count = 0;
  MIXLENS_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    if (reason) *reason = "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " present)";
    return false;
  }
  // The extension's kernels were compiled for some architectures (CMAKE_CUDA_ARCHITECTURES): ask for one that runs here.
  const device_guard on(device);
  cudaFuncAttributes attributes{};
  if (const cudaError_t e = cudaFuncGetAttributes(&attributes, probe_kernel); e != cudaSuccess) {
    (void)cudaGetLastError();
    cudaDeviceProp prop{};
    MIXLENS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    if (reason)
      *reason = std::string("the extension's kernels do not run on ") + prop.name + " (compute capability " +
                std::to_string(prop.major) + "." + std::to_string(prop.minor) + "): " + cudaGetErrorString(e) +
                "; reinstall with -C cmake.define.CMAKE_CUDA_ARCHITECTURES=<its architecture>";
    return false;
  }
  return true;
}

std::shared_ptr<const model> upload(const models::language_model<float>& m, int device) {
  const device_guard on(device);
  return std::visit([&](const auto& family) { return std::make_shared<const model>(gpu::to_device(family), device); }, m);
}

result_array<float> forward(const model& m, std::span<const index_t> tokens) {
  const device_guard on(m.device());
  return m.visit([&](const auto& w) {
    const gpu::device_backend be;
    auto logits = models::mamba_forward(be, w, tokens, [](const auto&) {});
    be.synchronize();
    auto r = keep_result(std::move(logits), {tokens.size(), static_cast<std::size_t>(w.vocab_size())}, m.device());
    hold(r);
    return r;
  });
}

attention_data<float> attention(const model& m, std::span<const index_t> tokens, const std::vector<index_t>& layers,
                                const std::vector<index_t>& save, models::attention_form form,
                                channel_reduction reduction, row_selection rows) {
  const device_guard on(m.device());
  return m.visit([&](const auto& w) {
    const resident_backend be;
    return held_data(run_attention(be, w, m.device(), tokens, layers, save, form, reduction, std::move(rows)));
  });
}

models::attribution_result attribute(const model& m, std::span<const index_t> tokens, models::attribution_method method,
                                     models::gradient_target target, const models::attribute_options& options) {
  const device_guard on(m.device());
  return m.visit([&](const auto& w) { return models::attribute(gpu::device_backend{}, w, tokens, method, target, options); });
}

namespace {

// Every device array of `d` held (device_memory.cuh's hold).
gradients_data<float> held_gradients(gradients_data<float> d) {
  hold(d.embedding);
  for (auto& layer : d.layers)
    for (auto& [name, a] : layer) hold(a);
  return d;
}

}  // namespace

gradients_data<float> gradients(const model& m, std::span<const index_t> tokens, models::gradient_target target,
                                const models::gradient_options& options) {
  const device_guard on(m.device());
  return m.visit([&](const auto& w) {
    return held_gradients(run_gradients(gpu::device_backend{}, w, m.device(), tokens, target, options));
  });
}

std::vector<models::method_faithfulness> faithfulness(const model& m, std::span<const index_t> tokens,
                                                      std::span<const models::attribution_method> methods,
                                                      models::gradient_target target,
                                                      const models::faithfulness_run_options& run, index_t max_tokens,
                                                      bool tf32) {
  const device_guard on(m.device());
  return m.visit([&](const auto& w) {
    using gpu::gemm_precision;
    const gpu::device_backend be, perturbed(nullptr, tf32 ? gemm_precision::tf32 : gemm_precision::fp32);
    const models::batch_target_evaluator evaluator(perturbed, w, 128, max_tokens);
    return models::faithfulness_of_methods(be, w, tokens, methods, target, run, evaluator);
  });
}

attention_data<float> attention_from_projections(const model& m, index_t L, const std::vector<captured_layer<float>>& captured,
                                                 const std::vector<index_t>& layers, const std::vector<index_t>& save,
                                                 models::attention_form form, channel_reduction reduction,
                                                 const float* logits, std::vector<double>& deviation) {
  const device_guard on(m.device());
  return m.visit([&](const auto& w) {
    const resident_backend be;
    auto own_logits = be.alloc(L * w.vocab_size());
    be.copy(logits, L * w.vocab_size(), own_logits.data());
    return held_data(run_attention_from_projections(be, w, m.device(), L, captured, layers, save, form, reduction,
                                                    std::move(own_logits), deviation));
  });
}

class vision_model {
 public:
  vision_model(gpu::device_vim_weights w, int device) : weights_(std::move(w)), device_(device) {}
  [[nodiscard]] const models::vim_weights<float>& weights() const { return weights_.view(); }
  [[nodiscard]] int device() const { return device_; }

 private:
  gpu::device_vim_weights weights_;
  int device_;
};

std::shared_ptr<const vision_model> upload(const models::vim_model<float>& m, int device) {
  const device_guard on(device);
  return std::make_shared<const vision_model>(gpu::to_device(m), device);
}

result_array<float> forward(const vision_model& m, tensor_view<const float, 3> image) {
  const device_guard on(m.device());
  const gpu::device_backend be;
  auto logits = models::vim_forward(be, m.weights(), image, [](const auto&) {});
  be.synchronize();
  auto r = keep_result(std::move(logits), {static_cast<std::size_t>(m.weights().config.num_classes)}, m.device());
  hold(r);
  return r;
}

attention_data<float> attention(const vision_model& m, tensor_view<const float, 3> image,
                                const std::vector<index_t>& layers, const std::vector<index_t>& save,
                                models::attention_form form, channel_reduction reduction, row_selection rows) {
  const device_guard on(m.device());
  const resident_backend be;
  return held_data(run_vim_attention(be, m.weights(), m.device(), image, layers, save, form, reduction, std::move(rows)));
}

models::attribution_result attribute(const vision_model& m, tensor_view<const float, 3> image,
                                     models::attribution_method method, index_t target_class,
                                     const models::attribute_options& options) {
  const device_guard on(m.device());
  return models::attribute(gpu::device_backend{}, m.weights(), image, method, target_class, options);
}

gradients_data<float> gradients(const vision_model& m, tensor_view<const float, 3> image, index_t target_class,
                                const models::gradient_options& options) {
  const device_guard on(m.device());
  return held_gradients(
      run_vim_gradients(gpu::device_backend{}, m.weights(), m.device(), image, target_class, options));
}

result_array<float> to_device(std::span<const float> values, std::vector<std::size_t> shape, int device) {
  const device_guard on(device);
  const gpu::device_backend be;
  auto r = keep_result(be.upload(values), std::move(shape), device);
  hold(r);
  return r;
}

}  // namespace mixlens::python::cuda
