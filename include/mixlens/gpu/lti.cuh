// mixlens::gpu LTI operators: S4D and S4 convolution kernels generated on the
// device, their application by the causal cuFFT convolution (FFT size 2L), and
// S5 applied by a parallel scan over its P complex states.
//
//   S4D  K[h][l] = 2·Re Σ_n (C B̄)_n·Ā_n^l, from the discretized modes (host,
//        double, s4d_mixer::discretize), Ā^l = exp(l·log Ā) in double on the device.
//   S4   the truncated generating function at the L roots of unity by Cauchy sums
//        with the Woodbury correction (the formula of s4_mixer::kernel; C̃ = C(I − Ā^L)
//        is formed on the host), then an inverse FFT (cuFFT, double).
//   S5   B̄u (a tiled kernel) → h_t = Λ̄ h_{t−1} + (B̄u)_t (linear_recurrence, any
//        policy) → y = f·Re(C̃h) + D⊙u (a tiled kernel).
// Kernels are written as fp32 (H × L, row-major, device memory).
#pragma once

#include <cuda_runtime.h>
#include <cufft.h>

#include <string>
#include <string_view>
#include <vector>

#include "mixlens/gpu/detail/lti_kernels.cuh"
#include "mixlens/gpu/error.cuh"
#include "mixlens/gpu/fft_conv.cuh"
#include "mixlens/gpu/scan.cuh"
#include "mixlens/ops/s4.hpp"
#include "mixlens/ops/s4d.hpp"
#include "mixlens/ops/s5.hpp"

namespace mixlens::gpu {

namespace detail {

inline void require_device_pointer(std::string_view where, std::string_view argument, const void* p) {
  if (!p) mixlens::detail::fail(where, argument, "a device pointer", "null");
}

inline double2 to_double2(const complex<double>& z) { return make_double2(z.real(), z.imag()); }

// Grid rows for per-channel kernels: at most 65535 (the kernels stride over the rest).
inline unsigned channel_grid(index_t channels) { return static_cast<unsigned>(channels < 65535 ? channels : 65535); }

inline void check_grid_x(std::string_view where, index_t blocks) {
  if (blocks > 0x7fffffff) mixlens::detail::fail(where, "length", "at most 2^31 - 1 blocks of work", blocks);
}

// Destroys a cuFFT plan on every exit path.
struct cufft_plan_guard {
  cufftHandle plan = 0;
  bool made = false;
  cufft_plan_guard() = default;
  cufft_plan_guard(const cufft_plan_guard&) = delete;
  cufft_plan_guard& operator=(const cufft_plan_guard&) = delete;
  ~cufft_plan_guard() {
    if (made) cufftDestroy(plan);
  }
};

}  // namespace detail

// ---- S4D -------------------------------------------------------------------------

// The discretized modes of an S4D layer on the device, uploaded once:
// log Ā_n and C_n·B̄_n per channel (double), and D (fp32, when the layer has it).
class device_s4d {
 public:
  static constexpr int threads = 128;  // lags per block row
  static constexpr int runs = 16;      // lags per thread (steps by Ā^threads)

  template <class T>
  explicit device_s4d(const s4d_mixer<T>& m) : channels_(m.channels()), modes_(m.a.extent(1)) {
    m.validate();
    std::vector<double2> log_a(static_cast<std::size_t>(channels_ * modes_)), coef(log_a.size());
    for (index_t h = 0; h < channels_; ++h)
      for (index_t n = 0; n < modes_; ++n) {
        const auto s = m.discretize(h, n);  // double, log Ā once per mode
        const auto i = static_cast<std::size_t>(h * modes_ + n);
        log_a[i] = detail::to_double2(s.log_a_bar);
        coef[i] = detail::to_double2(mixlens::detail::to_s4_complex(m.c(h, n)) * s.b_bar);
      }
    log_a_ = device_buffer<double2>(log_a);
    coef_ = device_buffer<double2>(coef);
    if (!m.skip.empty()) {
      std::vector<float> d(m.skip.begin(), m.skip.end());
      skip_ = device_buffer<float>(d);
    }
  }

  [[nodiscard]] index_t channels() const { return channels_; }
  [[nodiscard]] index_t modes() const { return modes_; }  // N/2
  // D on the device (channels), or null when the layer has no skip term.
  [[nodiscard]] const float* skip() const { return skip_.size() > 0 ? skip_.data() : nullptr; }

  // K (channels × length) into out (device). Asynchronous on `stream`.
  void kernel(index_t length, float* out, cudaStream_t stream = nullptr) const {
    constexpr std::string_view where = "mixlens::gpu::device_s4d::kernel";
    mixlens::detail::check_positive(where, "length", length);
    detail::require_device_pointer(where, "out", out);
    const index_t blocks = (length + threads * runs - 1) / (threads * runs);
    detail::check_grid_x(where, blocks);
    const dim3 grid(static_cast<unsigned>(blocks), detail::channel_grid(channels_));
    detail::s4d_vandermonde_kernel<threads, runs>
        <<<grid, threads, 0, stream>>>(log_a_.data(), coef_.data(), channels_, modes_, length, out);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }

 private:
  index_t channels_, modes_;
  device_buffer<double2> log_a_, coef_;
  device_buffer<float> skip_;
};

// One-shot: uploads the modes, writes K (channels × length) to out, and waits for `stream`.
template <class T>
void s4d_kernel(const s4d_mixer<T>& m, index_t length, float* out, cudaStream_t stream = nullptr) {
  const device_s4d d(m);
  d.kernel(length, out, stream);
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));  // d's buffers are freed on return
}

// ---- S4 --------------------------------------------------------------------------

// The largest low rank the device S4 kernel is instantiated for (S4 uses 1 or 2).
inline constexpr index_t s4_max_rank = 4;

namespace detail {

template <int Rank>
void launch_s4_cauchy(const double2* lambda, const double2* xs, const double2* ys, const double* dt, index_t channels,
                      index_t modes, index_t length, double2* freq, cudaStream_t stream) {
  constexpr int threads = 128;
  const index_t blocks = (length / 2 + 1 + threads - 1) / threads;
  check_grid_x("mixlens::gpu::s4_kernel", blocks);
  const dim3 grid(static_cast<unsigned>(blocks), channel_grid(channels));
  s4_cauchy_kernel<Rank, threads><<<grid, threads, 0, stream>>>(lambda, xs, ys, dt, channels, modes, length, freq);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

// K (channels × length) of an S4 layer into out (device): the Cauchy/Woodbury
// evaluation at the roots of unity and the inverse FFT on the device, C̃ = C(I − Ā^L)
// on the host (O(L·N·r) per channel, as s4_mixer::kernel). Waits for `stream`.
template <class T>
void s4_kernel(const s4_mixer<T>& m, index_t length, float* out, cudaStream_t stream = nullptr) {
  constexpr std::string_view where = "mixlens::gpu::s4_kernel";
  m.validate();
  mixlens::detail::check_positive(where, "length", length);
  detail::require_device_pointer(where, "out", out);
  const index_t R = m.rank();
  if (R > s4_max_rank)
    mixlens::detail::fail(where, "rank", "a rank of at most " + std::to_string(s4_max_rank), R);
  const index_t H = m.channels(), half = m.lambda.extent(1), F = R + 1, L = length, bins = L / 2 + 1;

  // Host: per channel Λ, Δ, and the Cauchy factors x = (C̃, conj Q_r), y = (B, P_r).
  std::vector<double2> lambda(static_cast<std::size_t>(H * half)), xs(static_cast<std::size_t>(H * F * half)),
      ys(xs.size());
  std::vector<double> dt(static_cast<std::size_t>(H));
  for (index_t h = 0; h < H; ++h) {
    mixlens::detail::s4_channel ch;
    ch.half = half;
    ch.rank = R;
    ch.dt = m.dt(h);
    for (index_t n = 0; n < half; ++n) {
      ch.lambda.push_back(mixlens::detail::to_s4_complex(m.lambda(h, n)));
      ch.b.push_back(mixlens::detail::to_s4_complex(m.b(h, n)));
      ch.c.push_back(mixlens::detail::to_s4_complex(m.c(h, n)));
    }
    for (index_t r = 0; r < R; ++r)
      for (index_t n = 0; n < half; ++n) {
        ch.p.push_back(mixlens::detail::to_s4_complex(m.p(r, h, n)));
        ch.q.push_back(mixlens::detail::to_s4_complex(m.q(r, h, n)));
      }
    const auto c_power = ch.c_times_a_bar_power(L);  // C Ā^L
    dt[static_cast<std::size_t>(h)] = ch.dt;
    for (index_t n = 0; n < half; ++n) {
      const auto i = static_cast<std::size_t>(n);
      lambda[static_cast<std::size_t>(h * half + n)] = detail::to_double2(ch.lambda[i]);
      xs[static_cast<std::size_t>((h * F) * half + n)] = detail::to_double2(ch.c[i] - c_power[i]);
      ys[static_cast<std::size_t>((h * F) * half + n)] = detail::to_double2(ch.b[i]);
      for (index_t r = 0; r < R; ++r) {
        xs[static_cast<std::size_t>((h * F + 1 + r) * half + n)] = detail::to_double2(cuda::std::conj(ch.q_at(r, n)));
        ys[static_cast<std::size_t>((h * F + 1 + r) * half + n)] = detail::to_double2(ch.p_at(r, n));
      }
    }
  }
  const device_buffer<double2> d_lambda(lambda), d_xs(xs), d_ys(ys);
  const device_buffer<double> d_dt(dt);
  device_buffer<double2> freq(H * bins);

  switch (R) {
    case 1: detail::launch_s4_cauchy<1>(d_lambda.data(), d_xs.data(), d_ys.data(), d_dt.data(), H, half, L, freq.data(), stream); break;
    case 2: detail::launch_s4_cauchy<2>(d_lambda.data(), d_xs.data(), d_ys.data(), d_dt.data(), H, half, L, freq.data(), stream); break;
    case 3: detail::launch_s4_cauchy<3>(d_lambda.data(), d_xs.data(), d_ys.data(), d_dt.data(), H, half, L, freq.data(), stream); break;
    default: detail::launch_s4_cauchy<4>(d_lambda.data(), d_xs.data(), d_ys.data(), d_dt.data(), H, half, L, freq.data(), stream); break;
  }

  if (L == 1) {
    detail::first_bin_kernel<<<detail::elementwise_grid(H), 256, 0, stream>>>(freq.data(), out, H);
    MIXLENS_CUDA_CHECK_LAUNCH();
  } else {
    // The spectrum is Hermitian (bins j and L − j conjugate), so a C2R transform
    // of L/2 + 1 bins gives K; cuFFT leaves it unnormalized.
    device_buffer<double> real(H * L);
    detail::cufft_plan_guard plan;
    int n = static_cast<int>(L);
    detail::cufft_check(cufftPlanMany(&plan.plan, 1, &n, nullptr, 1, 0, nullptr, 1, 0, CUFFT_Z2D, static_cast<int>(H)),
                        "cufftPlanMany (S4 kernel)");
    plan.made = true;
    detail::cufft_check(cufftSetStream(plan.plan, stream), "cufftSetStream");
    detail::cufft_check(cufftExecZ2D(plan.plan, reinterpret_cast<cufftDoubleComplex*>(freq.data()), real.data()),
                        "cufftExecZ2D (S4 kernel)");
    detail::scale_to_float_kernel<<<detail::elementwise_grid(H * L), 256, 0, stream>>>(real.data(), out, H * L,
                                                                                       1.0 / static_cast<double>(L));
    MIXLENS_CUDA_CHECK_LAUNCH();
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));  // before the plan and `real` go
  }
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// ---- LTI apply -------------------------------------------------------------------

// y = K ∗ x + D⊙x per channel for x, y (batch, channels, length) and K (channels,
// length), all device memory; skip (channels) may be null. One-shot: builds a
// causal_fft_conv (FFT size 2L), runs it and waits for `stream`. For repeated
// use hold a causal_fft_conv: set_filter(K) once, then apply(x, y, skip).
inline void lti_apply(const float* kernel, const float* skip, const float* x, float* y, index_t batch,
                      index_t channels, index_t length, cudaStream_t stream = nullptr) {
  constexpr std::string_view where = "mixlens::gpu::lti_apply";
  detail::require_device_pointer(where, "kernel", kernel);
  detail::require_device_pointer(where, "x", x);
  detail::require_device_pointer(where, "y", y);
  causal_fft_conv conv(batch, channels, length);
  conv.set_filter(kernel, stream);
  conv.apply(x, y, skip, nullptr, stream);
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));  // conv's buffers are freed on return
}

// ---- S5 --------------------------------------------------------------------------

namespace detail {

// decay(r, t) = Λ̄_{r mod states}: the scan's multipliers for rows = batch·states.
inline void s5_fill_decay(const complex<float>* lambda_bar, complex<float>* decay, index_t rows, index_t states,
                          index_t length, cudaStream_t stream) {
  s5_fill_decay_kernel<<<elementwise_grid(rows * length), 256, 0, stream>>>(lambda_bar, decay, rows, states, length);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// The S5 apply over device data, shared by device_s5 and the operator's
// device_path (ops/s5/device.cuh): bu = B̄·x, h_t = Λ̄ h_{t−1} + bu_t (decay from
// s5_fill_decay), y = f·Re(C̃·h) + D⊙x. x, y (batch, channels, length); decay, bu,
// h (batch·states × length); skip may be null. Asynchronous on `stream`.
template <class Policy>
void s5_scan_apply(std::string_view where, const complex<float>* b_bar, const complex<float>* c_tilde,
                   const float* skip, const complex<float>* decay, complex<float>* bu, complex<float>* h, const float* x,
                   float* y, index_t states, index_t channels, index_t length, index_t batch, float f, Policy policy,
                   cudaStream_t stream) {
  const index_t rows = batch * states;
  const index_t tiles = (length + s5_cols - 1) / s5_cols;
  check_grid_x(where, tiles);
  const dim3 in_grid(static_cast<unsigned>(tiles), static_cast<unsigned>((states + s5_rows - 1) / s5_rows),
                     static_cast<unsigned>(batch));
  s5_input_kernel<float><<<in_grid, s5_threads, 0, stream>>>(b_bar, x, bu, states, channels, length);
  MIXLENS_CUDA_CHECK_LAUNCH();
  linear_recurrence(matrix_view<const complex<float>>(decay, rows, length),
                    matrix_view<const complex<float>>(bu, rows, length), matrix_view<complex<float>>(h, rows, length),
                    policy, stream);
  const dim3 out_grid(static_cast<unsigned>(tiles), static_cast<unsigned>((channels + s5_rows - 1) / s5_rows),
                      static_cast<unsigned>(batch));
  s5_output_kernel<float><<<out_grid, s5_threads, 0, stream>>>(c_tilde, h, skip, x, y, states, channels, length, f);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

// A bound S5 operator on the device: Λ̄, B̄, C̃, D uploaded once (fp32), with the
// scan workspace for `batch` sequences of the operator's length. Not copyable.
class device_s5 {
 public:
  template <class T>
  explicit device_s5(const s5_operator<T>& op, index_t batch = 1)
      : states_(op.states()), channels_(op.in_channels()), length_(op.length()), batch_(batch),
        f_(op.conj_sym ? 2.0f : 1.0f) {
    constexpr std::string_view where = "mixlens::gpu::device_s5";
    mixlens::detail::check_positive(where, "op (length)", length_);
    mixlens::detail::check_positive(where, "op (states)", states_);
    mixlens::detail::check_positive(where, "batch", batch);
    if (batch > 65535) mixlens::detail::fail(where, "batch", "at most 65535", batch);
    if (!op.causal())
      mixlens::detail::fail(where, "op", "a causal S5 (gpu::apply runs a bidirectional one)",
                            "a bidirectional S5 (c_backward set)");
    op.validate();
    auto narrow = [](const complex<T>& z) { return complex<float>(static_cast<float>(z.real()), static_cast<float>(z.imag())); };
    std::vector<complex<float>> lambda(static_cast<std::size_t>(states_)), b(static_cast<std::size_t>(states_ * channels_)),
        c(b.size());
    for (index_t p = 0; p < states_; ++p) {
      lambda[static_cast<std::size_t>(p)] = narrow(op.lambda_bar[static_cast<std::size_t>(p)]);
      for (index_t h = 0; h < channels_; ++h) {
        b[static_cast<std::size_t>(p * channels_ + h)] = narrow(op.b_bar(p, h));
        c[static_cast<std::size_t>(h * states_ + p)] = narrow(op.c_tilde(h, p));
      }
    }
    lambda_bar_ = device_buffer<complex<float>>(lambda);
    b_bar_ = device_buffer<complex<float>>(b);
    c_tilde_ = device_buffer<complex<float>>(c);
    if (!op.skip.empty()) {
      std::vector<float> d(op.skip.size());
      for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(op.skip[i]);
      skip_ = device_buffer<float>(d);
    }
    const index_t rows = batch_ * states_;
    decay_ = device_buffer<complex<float>>(rows * length_);
    bu_ = device_buffer<complex<float>>(rows * length_);
    h_ = device_buffer<complex<float>>(rows * length_);
    detail::s5_fill_decay(lambda_bar_.data(), decay_.data(), rows, states_, length_, nullptr);
    MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
  }

  [[nodiscard]] index_t states() const { return states_; }
  [[nodiscard]] index_t channels() const { return channels_; }
  [[nodiscard]] index_t length() const { return length_; }
  [[nodiscard]] index_t batch() const { return batch_; }

  // y = M·x for x, y (batch, channels, length) in device memory; may not alias.
  // Asynchronous on `stream`; the object must outlive the work.
  template <class Policy = block_policy>
  void apply(const float* x, float* y, Policy policy = {}, cudaStream_t stream = nullptr) {
    constexpr std::string_view where = "mixlens::gpu::device_s5::apply";
    detail::require_device_pointer(where, "x", x);
    detail::require_device_pointer(where, "y", y);
    detail::s5_scan_apply(where, b_bar_.data(), c_tilde_.data(), skip_.size() > 0 ? skip_.data() : nullptr,
                          decay_.data(), bu_.data(), h_.data(), x, y, states_, channels_, length_, batch_, f_, policy,
                          stream);
  }

  // The states h (batch·states × length, complex) of the last apply: for tests.
  [[nodiscard]] const complex<float>* states_data() const { return h_.data(); }

 private:
  index_t states_, channels_, length_, batch_;
  float f_;
  device_buffer<complex<float>> lambda_bar_, b_bar_, c_tilde_, decay_, bu_, h_;
  device_buffer<float> skip_;
};

// One-shot: uploads op, applies it to x (channels × length, device) into y, waits for `stream`.
template <class T>
void s5_apply(const s5_operator<T>& op, const float* x, float* y, cudaStream_t stream = nullptr) {
  device_s5 d(op);
  d.apply(x, y, block_policy{}, stream);
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));  // d's buffers are freed on return
}

}  // namespace mixlens::gpu
