// What the extension's two CUDA translation units (device.cu, device_operators.cu)
// share: the current device for a scope, and device results handed to Python.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <utility>

#include "mixlens/gpu/error.cuh"
#include "results.hpp"

namespace mixlens::python::cuda {

// Makes `device` current for the guard's lifetime.
class device_guard {
 public:
  explicit device_guard(int device) {
    MIXLENS_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) MIXLENS_CUDA_CHECK(cudaSetDevice(device));
  }
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;
  ~device_guard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

// A device result whose memory is freed with its own device current, whichever
// is current when Python lets it go.
template <class T>
void hold(result_array<T>& r) {
  if (!r || r.device < 0) return;
  auto owner = std::make_shared<std::pair<int, std::shared_ptr<const T>>>(r.device, std::move(r.values));
  const T* data = owner->second.get();
  r.values = std::shared_ptr<const T>(data, [owner](const T*) {
    int current = 0;
    cudaGetDevice(&current);
    cudaSetDevice(owner->first);
    owner->second.reset();
    cudaSetDevice(current);
  });
}

}  // namespace mixlens::python::cuda
