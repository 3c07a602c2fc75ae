// mixlens::gpu::causal_fft_conv: per-channel causal convolution y = k ∗ u on the
// GPU with cuFFT (FFT size 2L: never circular), for LTI operators (S4, S4D, DSS
// kernels) and Hyena's long filters, with Hyena's skip term (bias·u) and an
// optional gate fused into the epilogue. A plan object owns the cuFFT plans and
// the padded buffers, so repeated calls allocate nothing.
#pragma once

#include <cufft.h>

#include <string>
#include <string_view>

#include "mixlens/gpu/detail/fft_conv_kernels.cuh"
#include "mixlens/gpu/error.cuh"

namespace mixlens::gpu {

namespace detail {
inline void cufft_check(cufftResult status, const char* what) {
  if (status != CUFFT_SUCCESS)
    throw cuda_error(std::string("mixlens::gpu: ") + what + " failed with cuFFT status " + std::to_string(int(status)));
}
inline unsigned elementwise_grid(index_t total) {
  const index_t blocks = (total + 255) / 256;
  return static_cast<unsigned>(blocks < 132 * 32 ? blocks : 132 * 32);
}
}  // namespace detail

class causal_fft_conv {
 public:
  // Signals u, y are (batch, channels, length); filters k are (channels, length).
  causal_fft_conv(index_t batch, index_t channels, index_t length)
      : batch_(batch), channels_(channels), length_(length), n_(2 * length), bins_(length + 1) {
    constexpr std::string_view where = "mixlens::gpu::causal_fft_conv";
    mixlens::detail::check_positive(where, "batch", batch);
    mixlens::detail::check_positive(where, "channels", channels);
    mixlens::detail::check_positive(where, "length", length);
    const index_t rows = batch * channels;
    signal_ = device_buffer<float>(rows * n_);
    filter_ = device_buffer<float>(channels * n_);
    signal_f_ = device_buffer<cufftComplex>(rows * bins_);
    filter_f_ = device_buffer<cufftComplex>(channels * bins_);
    int n = static_cast<int>(n_);
    const int bins = static_cast<int>(bins_);
    detail::cufft_check(cufftPlanMany(&forward_, 1, &n, nullptr, 1, n, nullptr, 1, bins, CUFFT_R2C, static_cast<int>(rows)),
                        "cufftPlanMany (signal)");
    detail::cufft_check(
        cufftPlanMany(&filter_forward_, 1, &n, nullptr, 1, n, nullptr, 1, bins, CUFFT_R2C, static_cast<int>(channels)),
        "cufftPlanMany (filter)");
    detail::cufft_check(cufftPlanMany(&inverse_, 1, &n, nullptr, 1, bins, nullptr, 1, n, CUFFT_C2R, static_cast<int>(rows)),
                        "cufftPlanMany (inverse)");
  }
  causal_fft_conv(const causal_fft_conv&) = delete;
  causal_fft_conv& operator=(const causal_fft_conv&) = delete;
  ~causal_fft_conv() {
    cufftDestroy(forward_);
    cufftDestroy(filter_forward_);
    cufftDestroy(inverse_);
  }

  // Transforms the filters (channels, length); call again when they change.
  void set_filter(const float* k, cudaStream_t stream = nullptr) {
    if (!k) mixlens::detail::fail("mixlens::gpu::causal_fft_conv::set_filter", "k", "a device pointer", "null");
    detail::pad_rows_kernel<<<detail::elementwise_grid(channels_ * n_), 256, 0, stream>>>(k, filter_.data(), channels_,
                                                                                         length_, n_);
    MIXLENS_CUDA_CHECK_LAUNCH();
    detail::cufft_check(cufftSetStream(filter_forward_, stream), "cufftSetStream");
    detail::cufft_check(cufftExecR2C(filter_forward_, filter_.data(), filter_f_.data()), "cufftExecR2C (filter)");
  }

  // y = (k ∗ u + bias·u) ⊙ gate; bias (channels) and gate (batch, channels,
  // length) may be null. u and y may not alias.
  void apply(const float* u, float* y, const float* bias = nullptr, const float* gate = nullptr,
             cudaStream_t stream = nullptr) {
    constexpr std::string_view where = "mixlens::gpu::causal_fft_conv::apply";
    if (!u) mixlens::detail::fail(where, "u", "a device pointer", "null");
    if (!y) mixlens::detail::fail(where, "y", "a device pointer", "null");
    const index_t rows = batch_ * channels_;
    detail::pad_rows_kernel<<<detail::elementwise_grid(rows * n_), 256, 0, stream>>>(u, signal_.data(), rows, length_, n_);
    MIXLENS_CUDA_CHECK_LAUNCH();
    detail::cufft_check(cufftSetStream(forward_, stream), "cufftSetStream");
    detail::cufft_check(cufftExecR2C(forward_, signal_.data(), signal_f_.data()), "cufftExecR2C (signal)");
    detail::spectral_product_kernel<<<detail::elementwise_grid(rows * bins_), 256, 0, stream>>>(
        signal_f_.data(), filter_f_.data(), rows, channels_, bins_, 1.0f / static_cast<float>(n_));
    MIXLENS_CUDA_CHECK_LAUNCH();
    detail::cufft_check(cufftSetStream(inverse_, stream), "cufftSetStream");
    detail::cufft_check(cufftExecC2R(inverse_, signal_f_.data(), signal_.data()), "cufftExecC2R");
    detail::conv_epilogue_kernel<<<detail::elementwise_grid(rows * length_), 256, 0, stream>>>(
        signal_.data(), u, bias, gate, y, rows, channels_, length_, n_);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }

  [[nodiscard]] index_t fft_size() const { return n_; }

 private:
  index_t batch_, channels_, length_, n_, bins_;
  device_buffer<float> signal_, filter_;
  device_buffer<cufftComplex> signal_f_, filter_f_;
  cufftHandle forward_ = 0, filter_forward_ = 0, inverse_ = 0;
};

}  // namespace mixlens::gpu
