// CUDA error handling and a minimal owning device buffer for the GPU backend.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"

namespace mixlens::gpu {

// A failed CUDA runtime or library call: not bad user input, so not mixlens::error.
class cuda_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline void cuda_check(cudaError_t status, const char* expression, const char* file, int line) {
  if (status == cudaSuccess) return;
  std::ostringstream os;
  os << "mixlens::gpu: " << expression << " failed at " << file << ':' << line << ": "
     << cudaGetErrorName(status) << " (" << cudaGetErrorString(status) << ')';
  throw cuda_error(os.str());
}

}  // namespace detail

#define MIXLENS_CUDA_CHECK(expression) \
  ::mixlens::gpu::detail::cuda_check((expression), #expression, __FILE__, __LINE__)

// Checks the launch that just happened (configuration errors surface here; faults
// inside the kernel surface at the next synchronizing call).
#define MIXLENS_CUDA_CHECK_LAUNCH() MIXLENS_CUDA_CHECK(cudaPeekAtLastError())

// Owning, uninitialized device array; move-only. Host copies go through
// upload/download so tests and benchmarks stay short.
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(index_t size) : size_(size) {
    if (size < 0) mixlens::detail::fail("mixlens::gpu::device_buffer", "size", "a non-negative size", size);
    if (size > 0) MIXLENS_CUDA_CHECK(cudaMalloc(&data_, bytes()));
  }
  explicit device_buffer(const std::vector<T>& host) : device_buffer(static_cast<index_t>(host.size())) {
    upload(host.data());
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  device_buffer& operator=(device_buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~device_buffer() {
    if (data_) cudaFree(data_);  // no throw from a destructor
  }

  [[nodiscard]] T* data() const { return data_; }
  [[nodiscard]] index_t size() const { return size_; }
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(size_) * sizeof(T); }

  void upload(const T* host) { MIXLENS_CUDA_CHECK(cudaMemcpy(data_, host, bytes(), cudaMemcpyHostToDevice)); }
  void download(T* host) const { MIXLENS_CUDA_CHECK(cudaMemcpy(host, data_, bytes(), cudaMemcpyDeviceToHost)); }
  [[nodiscard]] std::vector<T> to_host() const {
    std::vector<T> host(static_cast<std::size_t>(size_));
    if (size_ > 0) download(host.data());
    return host;
  }
  // Byte pattern fill: tests poison outputs (0xff is a NaN in every float type).
  void fill_bytes(int value) {
    if (size_ > 0) MIXLENS_CUDA_CHECK(cudaMemset(data_, value, bytes()));
  }

 private:
  T* data_ = nullptr;
  index_t size_ = 0;
};

// True when a CUDA device is usable; `reason` says why not otherwise.
inline bool device_available(std::string* reason = nullptr) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    if (reason)
      *reason = status != cudaSuccess ? std::string("no usable CUDA device: ") + cudaGetErrorString(status)
                                      : std::string("no CUDA device present");
    (void)cudaGetLastError();  // clear the sticky-free error state
    return false;
  }
  return true;
}

}  // namespace mixlens::gpu
