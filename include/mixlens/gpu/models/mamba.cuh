// A Mamba language model and its hidden attention on the GPU (fp32):
//  - device_mamba_model: the weights of a loaded models::mamba_model<float>,
//    uploaded once;
//  - mamba_forward: embedding → [RMSNorm → in_proj → causal conv + bias → SiLU
//    → x_proj → dt_proj → softplus → selective scan + D·u → ⊙ SiLU(z) → out_proj
//    → + residual] × layers → RMSNorm → lm_head, the projections as cuBLAS
//    SGEMMs (full fp32, no TF32), the scan by gpu::selective_scan_forward; an
//    observer sees every layer's signals in device memory;
//  - device_attention: per layer the paper's α (gpu::hidden_attention) or the
//    unified form (conv, σ factor, D and gate folded in by a kernel on top of
//    α), its channel aggregate (L × L) and min / max computed on the device in
//    channel chunks, so that D × L × L reaches the host only when asked for;
//  - device_rollout, device_map_average, normalize_min_max, raw_attention_map:
//    the maps of models/attention_maps.hpp on the device.
// Every result matches the CPU functions of models/ (mamba_forward,
// layer_attention, aggregate_channels, raw_attention_layer, average_maps,
// attention_rollout, check_reconstruction). Needs nlohmann-json (through
// models/) and cuBLAS (mixlens::gpu links it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/gpu/alpha.cuh"
#include "mixlens/gpu/error.cuh"
#include "mixlens/gpu/s6.cuh"
#include "mixlens/models/attention_maps.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/mamba_model.hpp"

namespace mixlens::gpu {

// ---- cuBLAS ------------------------------------------------------------------

namespace detail {

inline void cublas_check(cublasStatus_t status, const char* expression, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  std::ostringstream os;
  os << "mixlens::gpu: " << expression << " failed at " << file << ':' << line << ": " << cublasGetStatusName(status)
     << " (" << cublasGetStatusString(status) << ')';
  throw cuda_error(os.str());
}

}  // namespace detail

#define MIXLENS_CUBLAS_CHECK(expression) \
  ::mixlens::gpu::detail::cublas_check((expression), #expression, __FILE__, __LINE__)

// An owning cuBLAS handle in plain fp32 math (no TF32: the results must match
// the CPU to fp32 accuracy); move-only.
class cublas_handle {
 public:
  cublas_handle() {
    MIXLENS_CUBLAS_CHECK(cublasCreate(&handle_));
    MIXLENS_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_PEDANTIC_MATH));
  }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  cublas_handle(cublas_handle&& o) noexcept : handle_(std::exchange(o.handle_, nullptr)) {}
  cublas_handle& operator=(cublas_handle&& o) noexcept {
    std::swap(handle_, o.handle_);
    return *this;
  }
  ~cublas_handle() {
    if (handle_) cublasDestroy(handle_);
  }
  [[nodiscard]] cublasHandle_t get() const { return handle_; }

  // C (m × n) = op(A) · op(B) + beta · C, column-major, on `stream`.
  void sgemm(cudaStream_t stream, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a,
             index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc) const {
    for (const index_t v : {m, n, k, lda, ldb, ldc})
      if (v > INT_MAX) mixlens::detail::fail("mixlens::gpu::cublas_handle::sgemm", "sizes", "below 2^31", v);
    const float one = 1.0f;
    MIXLENS_CUBLAS_CHECK(cublasSetStream(handle_, stream));
    MIXLENS_CUBLAS_CHECK(cublasSgemm(handle_, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &one, a,
                                     static_cast<int>(lda), b, static_cast<int>(ldb), &beta, c, static_cast<int>(ldc)));
  }

 private:
  cublasHandle_t handle_ = nullptr;
};

// A row-major (rows × cols) device array copied to the host.
[[nodiscard]] inline matrix<float> download_matrix(const float* device, index_t rows, index_t cols,
                                                   cudaStream_t stream = nullptr) {
  matrix<float> m(rows, cols);
  MIXLENS_CUDA_CHECK(cudaMemcpyAsync(m.data(), device, static_cast<std::size_t>(rows * cols) * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));
  return m;
}

// ---- kernels -------------------------------------------------------------------

namespace detail {

inline constexpr int mamba_threads = 256;

inline unsigned mamba_blocks(index_t work, int threads = mamba_threads) {
  return grid_size((work + threads - 1) / threads);
}

// Sum over a block of mamba_threads threads; every thread gets the total.
template <class V>
__device__ V block_sum(V v) {
  __shared__ V partial[mamba_threads / 32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  V total = 0;
  for (int w = 0; w < mamba_threads / 32; ++w) total += partial[w];
  return total;
}

// Float min / max through integer atomics: the order of non-negative floats is
// that of their bits as int, of negative floats the reverse order as unsigned.
__device__ inline void atomic_min_float(float* p, float v) {
  if (v == 0.0f) v = 0.0f;  // −0 would order below every negative value as int
  if (v >= 0.0f) atomicMin(reinterpret_cast<int*>(p), __float_as_int(v));
  else atomicMax(reinterpret_cast<unsigned*>(p), __float_as_uint(v));
}
__device__ inline void atomic_max_float(float* p, float v) {
  if (v == 0.0f) v = 0.0f;
  if (v >= 0.0f) atomicMax(reinterpret_cast<int*>(p), __float_as_int(v));
  else atomicMin(reinterpret_cast<unsigned*>(p), __float_as_uint(v));
}

__global__ void mamba_embed_kernel(const index_t* tokens, const float* embedding, float* h, index_t L, index_t H) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= L * H) return;
  h[k] = embedding[tokens[k / H] * H + k % H];
}

// One block per row of x (rows × H): x / sqrt(mean(x²) + eps) · weight.
__global__ void __launch_bounds__(mamba_threads)
    mamba_rms_norm_kernel(const float* x, const float* weight, float eps, float* out, index_t H) {
  const float* xr = x + static_cast<index_t>(blockIdx.x) * H;
  float* orow = out + static_cast<index_t>(blockIdx.x) * H;
  float ss = 0;
  for (index_t i = threadIdx.x; i < H; i += mamba_threads) ss += xr[i] * xr[i];
  const float scale = 1.0f / sqrtf(block_sum(ss) / static_cast<float>(H) + eps);
  for (index_t i = threadIdx.x; i < H; i += mamba_threads) orow[i] = xr[i] * scale * weight[i];
}

// data (rows × cols) += bias[row] (per_row) or bias[col].
__global__ void mamba_add_bias_kernel(float* data, const float* bias, index_t rows, index_t cols, bool per_row) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= rows * cols) return;
  data[k] += per_row ? bias[k / cols] : bias[k % cols];
}

// Depthwise causal conv (tap j multiplies x_{t−(K−1)+j}) + bias, then SiLU;
// also σ(pre-activation), the unified form's activation factor.
__global__ void mamba_conv_silu_kernel(const float* x, const float* w, const float* bias, float* u, float* sigma,
                                       index_t D, index_t L, index_t K) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= D * L) return;
  const index_t d = k / L, t = k % L;
  float acc = bias ? bias[d] : 0.0f;
  for (index_t j = 0; j < K; ++j) {
    const index_t src = t - (K - 1) + j;
    if (src >= 0) acc += w[d * K + j] * x[d * L + src];
  }
  const float s = 1.0f / (1.0f + expf(-acc));
  u[k] = acc * s;
  sigma[k] = s;
}

// Δ = softplus(dt + bias[d]) as PyTorch computes it (linear above 20).
__global__ void mamba_delta_kernel(float* dt, const float* bias, index_t D, index_t L) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= D * L) return;
  const float v = dt[k] + bias[k / L];
  dt[k] = v > 20.0f ? v : log1pf(expf(v));
}

// out = a ⊙ b elementwise (the conv bias's input σ·bias of the unified offset).
__global__ void mamba_bias_input_kernel(const float* sigma, const float* bias, float* out, index_t D, index_t L) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= D * L) return;
  out[k] = sigma[k] * bias[k / L];
}

// The unified form in place on a chunk of channels' α (count × L × L), one
// block per row t of one channel:
//   Â[t][s] = g_t · Σ_{lag < min(K, L), s+lag ≤ t} (α[t][s+lag] + D·[t = s+lag]) · σ_{s+lag} · w[K−1−lag].
// Columns advance in block-wide steps; entries a step reads beyond itself
// belong to the next step, which writes them only after the barrier.
__global__ void __launch_bounds__(mamba_threads)
    mamba_unify_kernel(float* alpha, const float* z, const float* sigma, const float* skip, const float* conv_w,
                       index_t L, index_t K) {
  const index_t row = blockIdx.x;  // local channel · L + t
  const index_t c = row / L, t = row % L;
  float* r = alpha + row * L;
  const float* sg = sigma + c * L;
  const float* w = conv_w + c * K;
  const float zt = z[c * L + t];
  const float gate = zt / (1.0f + expf(-zt));
  const float dskip = skip[c];
  const index_t taps = K < L ? K : L;
  for (index_t s0 = 0; s0 <= t; s0 += mamba_threads) {
    const index_t s = s0 + threadIdx.x;
    float acc = 0;
    if (s <= t)
      for (index_t lag = 0; lag < taps && s + lag <= t; ++lag) {
        const index_t j = s + lag;
        acc += (r[j] + (j == t ? dskip : 0.0f)) * sg[j] * w[K - 1 - lag];
      }
    __syncthreads();
    if (s <= t) r[s] = acc * gate;
    __syncthreads();
  }
}

// Channel aggregation of a chunk (count × L × L) into acc (L × L, double, +=),
// with the running min and max of every value (minmax[0], minmax[1]).
template <int Reduction>
__global__ void __launch_bounds__(mamba_threads)
    mamba_aggregate_kernel(const float* alpha, index_t count, index_t LL, double* acc, float* minmax) {
  const index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  float lo = INFINITY, hi = -INFINITY;
  if (e < LL) {
    double sum = 0;
    for (index_t c = 0; c < count; ++c) {
      const float v = __ldcs(alpha + c * LL + e);  // read once: keep it out of L2's way
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
      sum += Reduction == 0 ? double(v) : Reduction == 1 ? fabs(double(v)) : fmax(double(v), 0.0);
    }
    acc[e] += sum;
  }
  if (minmax) {
    for (int o = 16; o > 0; o /= 2) {
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (threadIdx.x % 32 == 0 && lo <= hi) {
      atomic_min_float(minmax, lo);
      atomic_max_float(minmax + 1, hi);
    }
  }
}

__global__ void mamba_mean_kernel(const double* acc, float* out, index_t n, double count) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < n) out[k] = static_cast<float>(acc[k] / count);
}

__global__ void mamba_minmax_init_kernel(float* minmax) {
  minmax[0] = INFINITY;
  minmax[1] = -INFINITY;
}

__global__ void __launch_bounds__(mamba_threads) mamba_minmax_kernel(const float* data, index_t n, float* minmax) {
  float lo = INFINITY, hi = -INFINITY;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<index_t>(gridDim.x) * blockDim.x) {
    lo = fminf(lo, data[k]);
    hi = fmaxf(hi, data[k]);
  }
  for (int o = 16; o > 0; o /= 2) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  if (threadIdx.x % 32 == 0 && lo <= hi) {
    atomic_min_float(minmax, lo);
    atomic_max_float(minmax + 1, hi);
  }
}

// out = (in − min) / (max − min), or 0 for a constant input (as the CPU
// normalize_min_max, in the input's precision).
__global__ void mamba_normalize_kernel(const float* in, float* out, index_t n, const float* minmax) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  const float lo = minmax[0], range = minmax[1] - minmax[0];
  out[k] = range > 0.0f ? (in[k] - lo) / range : 0.0f;
}

// raw = (mean − min) / (max − min) in double, min / max over the whole tensor.
__global__ void mamba_raw_kernel(const float* mean, const float* minmax, float* out, index_t n) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  const double lo = minmax[0], range = double(minmax[1]) - double(minmax[0]);
  out[k] = range > 0 ? static_cast<float>((double(mean[k]) - lo) / range) : 0.0f;
}

__global__ void mamba_identity_kernel(float* m, index_t L) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < L * L) m[k] = k / L == k % L ? 1.0f : 0.0f;
}

__global__ void mamba_axpy_kernel(float* y, const float* x, float scale, index_t n, bool multiply) {
  const index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n) return;
  y[k] = multiply ? y[k] * scale : y[k] + x[k];
}

// Rollout step: aug = I + map with each row divided by its sum (sum in double;
// a zero-sum row is left as it is). One block per row.
__global__ void __launch_bounds__(mamba_threads) mamba_rownorm_kernel(const float* map, float* aug, index_t L) {
  const index_t i = blockIdx.x;
  double sum = 0;
  for (index_t j = threadIdx.x; j < L; j += mamba_threads) {
    const float v = map[i * L + j] + (i == j ? 1.0f : 0.0f);
    aug[i * L + j] = v;
    sum += v;
  }
  sum = block_sum(sum);
  if (sum != 0)
    for (index_t j = threadIdx.x; j < L; j += mamba_threads)
      aug[i * L + j] = static_cast<float>(aug[i * L + j] / sum);
}

// Reconstruction of the layer output from a chunk of materialized matrices
// (count × L × L), one block per (channel, t), in double:
//   out[d][t] = (Σ_{j≤t} M[t][j]·v[j] + skip_d·v[t]) · SiLU(z[d][t]) + offset[d][t],
// skip, z and offset optional.
__global__ void __launch_bounds__(mamba_threads)
    mamba_reconstruct_kernel(const float* m, const float* v, const float* skip, const float* z, const float* offset,
                             double* out, index_t L) {
  const index_t row = blockIdx.x, c = row / L, t = row % L;
  const float* mr = m + row * L;
  const float* vr = v + c * L;
  double acc = 0;
  for (index_t j = threadIdx.x; j <= t; j += mamba_threads) acc += double(mr[j]) * double(vr[j]);
  acc = block_sum(acc);
  if (threadIdx.x != 0) return;
  if (skip) acc += double(skip[c]) * double(vr[t]);
  if (z) {
    const double zt = z[c * L + t];
    acc *= zt / (1.0 + std::exp(-zt));
  }
  if (offset) acc += offset[c * L + t];
  out[row] = acc;
}

}  // namespace detail

// ---- the model on the device ------------------------------------------------------

struct device_mamba_layer {
  device_buffer<float> norm, in_proj, in_proj_bias, conv_weight, conv_bias, x_proj, dt_proj, dt_bias, a, skip,
      out_proj, out_proj_bias;
};

// The weights of a Mamba model in device memory (A stored as −exp(A_log)), and
// a cuBLAS handle. Not for concurrent use from several host threads.
class device_mamba_model {
 public:
  explicit device_mamba_model(const models::mamba_model<float>& m) : config_(m.config), vocab_(m.vocab_size()) {
    const auto up = [](const auto& host) {
      device_buffer<float> b(static_cast<index_t>(host.size()));
      if (b.size() > 0) b.upload(host.data());
      return b;
    };
    embedding_ = up(m.embedding);
    if (m.lm_head.size()) lm_head_ = up(m.lm_head);
    norm_f_ = up(m.norm_f);
    for (const auto& l : m.layers) {
      device_mamba_layer d;
      d.norm = up(l.norm);
      d.in_proj = up(l.in_proj);
      d.in_proj_bias = up(l.in_proj_bias);
      d.conv_weight = up(l.conv_weight);
      d.conv_bias = up(l.conv_bias);
      d.x_proj = up(l.ssm.x_proj);
      d.dt_proj = up(l.ssm.dt_proj);
      d.dt_bias = up(l.ssm.dt_bias);
      std::vector<float> a(static_cast<std::size_t>(l.ssm.a_log.size()));
      for (std::size_t i = 0; i < a.size(); ++i) a[i] = -std::exp(l.ssm.a_log.data()[i]);
      d.a = up(a);
      d.skip = up(l.ssm.skip);
      d.out_proj = up(l.out_proj);
      d.out_proj_bias = up(l.out_proj_bias);
      layers_.push_back(std::move(d));
    }
  }

  [[nodiscard]] const models::mamba_config& config() const { return config_; }
  [[nodiscard]] index_t vocab_size() const { return vocab_; }
  [[nodiscard]] index_t num_layers() const { return static_cast<index_t>(layers_.size()); }
  [[nodiscard]] const device_mamba_layer& layer(index_t k) const { return layers_[static_cast<std::size_t>(k)]; }
  [[nodiscard]] const float* embedding() const { return embedding_.data(); }
  [[nodiscard]] const float* output_embedding() const { return lm_head_.size() ? lm_head_.data() : embedding_.data(); }
  [[nodiscard]] const float* norm_f() const { return norm_f_.data(); }
  [[nodiscard]] const cublas_handle& blas() const { return blas_; }

 private:
  models::mamba_config config_;
  index_t vocab_ = 0;
  device_buffer<float> embedding_, lm_head_, norm_f_;
  std::vector<device_mamba_layer> layers_;
  cublas_handle blas_;
};

// One layer's signals in device memory, channel-major (D × L) like the CPU's
// models::mamba_layer_signals, valid during the observer call (the buffers are
// reused by the next layer, in stream order). Enqueue work on `stream`.
struct device_mamba_layer_signals {
  index_t layer = 0, channels = 0, length = 0, state_size = 0, conv_kernel = 0;
  const float* x = nullptr;           // in_proj halves
  const float* z = nullptr;
  const float* u = nullptr;           // SiLU(conv1d(x) + bias)
  const float* activation = nullptr;  // σ(conv1d(x) + bias)
  const float* delta = nullptr;       // after softplus
  const float* a = nullptr;           // (D × N)
  const float* b = nullptr;           // (N × L)
  const float* c = nullptr;           // (N × L)
  const float* y = nullptr;           // (S6(u) + D·u) ⊙ SiLU(z)
  const float* skip = nullptr;        // (D)
  const float* conv_weight = nullptr; // (D × K)
  const float* conv_bias = nullptr;   // (D) or null
  cudaStream_t stream = nullptr;

  // α's inputs for channels [d0, d0 + count).
  [[nodiscard]] hidden_attention_params<float> attention_params(index_t d0, index_t count) const {
    hidden_attention_params<float> p;
    p.batch = 1, p.channels = count, p.length = length, p.state_size = state_size, p.groups = 1;
    p.delta = delta + d0 * length;
    p.a = a + d0 * state_size;
    p.b = b;
    p.c = c;
    return p;
  }
};

// Runs the language model on `tokens` (host) and returns the logits (L × V,
// row-major) in device memory; `observe(const device_mamba_layer_signals&)` is
// called after each layer. Asynchronous on `stream` except for the allocations.
template <class Observer>
[[nodiscard]] device_buffer<float> mamba_forward(const device_mamba_model& m, std::span<const index_t> tokens,
                                                 Observer&& observe, cudaStream_t stream = nullptr) {
  using detail::mamba_blocks;
  using detail::mamba_threads;
  const models::mamba_config& cfg = m.config();
  if (tokens.empty()) throw error("tokens: no tokens (expected at least one)");
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= m.vocab_size())
      throw error("tokens: token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                  " is outside the vocabulary [0, " + std::to_string(m.vocab_size()) + ")");
  const index_t L = static_cast<index_t>(tokens.size()), H = cfg.hidden_size, D = cfg.intermediate_size,
                N = cfg.state_size, R = cfg.time_step_rank, P = R + 2 * N, K = cfg.conv_kernel, V = m.vocab_size();
  const cublas_handle& blas = m.blas();

  device_buffer<index_t> tok(L);
  MIXLENS_CUDA_CHECK(cudaMemcpyAsync(tok.data(), tokens.data(), tok.bytes(), cudaMemcpyHostToDevice, stream));
  device_buffer<float> h(L * H), hn(L * H), xz(2 * D * L), u(D * L), sigma(D * L), proj(P * L), delta(D * L),
      y(D * L), logits(L * V);

  detail::mamba_embed_kernel<<<mamba_blocks(L * H), mamba_threads, 0, stream>>>(tok.data(), m.embedding(), h.data(), L, H);
  MIXLENS_CUDA_CHECK_LAUNCH();
  for (index_t k = 0; k < m.num_layers(); ++k) {
    const device_mamba_layer& w = m.layer(k);
    detail::mamba_rms_norm_kernel<<<detail::grid_size(L), mamba_threads, 0, stream>>>(h.data(), w.norm.data(),
                                                                               static_cast<float>(cfg.norm_eps), hn.data(), H);
    MIXLENS_CUDA_CHECK_LAUNCH();
    // Row-major (rows × cols) is column-major (cols × rows): xz (2D × L) = W_in · hnᵀ.
    blas.sgemm(stream, true, false, L, 2 * D, H, hn.data(), H, w.in_proj.data(), H, 0.0f, xz.data(), L);
    if (w.in_proj_bias.size()) {
      detail::mamba_add_bias_kernel<<<mamba_blocks(2 * D * L), mamba_threads, 0, stream>>>(xz.data(), w.in_proj_bias.data(),
                                                                                          2 * D, L, true);
      MIXLENS_CUDA_CHECK_LAUNCH();
    }
    const float* x = xz.data();
    const float* z = xz.data() + D * L;
    detail::mamba_conv_silu_kernel<<<mamba_blocks(D * L), mamba_threads, 0, stream>>>(
        x, w.conv_weight.data(), w.conv_bias.size() ? w.conv_bias.data() : nullptr, u.data(), sigma.data(), D, L, K);
    MIXLENS_CUDA_CHECK_LAUNCH();
    // proj (P × L) = W_x · u: rows [0, R) δ, [R, R+N) B, [R+N, R+2N) C.
    blas.sgemm(stream, false, false, L, P, D, u.data(), L, w.x_proj.data(), D, 0.0f, proj.data(), L);
    // Δ (D × L) = softplus(W_dt · δ + bias).
    blas.sgemm(stream, false, false, L, D, R, proj.data(), L, w.dt_proj.data(), R, 0.0f, delta.data(), L);
    detail::mamba_delta_kernel<<<mamba_blocks(D * L), mamba_threads, 0, stream>>>(delta.data(), w.dt_bias.data(), D, L);
    MIXLENS_CUDA_CHECK_LAUNCH();

    selective_scan_params<float, float> sp;
    sp.batch = 1, sp.channels = D, sp.length = L, sp.state_size = N, sp.groups = 1;
    sp.u = u.data();
    sp.delta = delta.data();
    sp.a = w.a.data();
    sp.b = proj.data() + R * L;
    sp.c = proj.data() + (R + N) * L;
    sp.skip = w.skip.data();
    sp.z = z;
    sp.z_silu = true;
    sp.y = y.data();
    selective_scan_forward(sp, stream);

    // h (L × H) += y ᵀ· W_outᵀ, then the bias.
    blas.sgemm(stream, true, true, H, L, D, w.out_proj.data(), D, y.data(), L, 1.0f, h.data(), H);
    if (w.out_proj_bias.size()) {
      detail::mamba_add_bias_kernel<<<mamba_blocks(L * H), mamba_threads, 0, stream>>>(h.data(), w.out_proj_bias.data(),
                                                                                      L, H, false);
      MIXLENS_CUDA_CHECK_LAUNCH();
    }

    device_mamba_layer_signals s;
    s.layer = k, s.channels = D, s.length = L, s.state_size = N, s.conv_kernel = K;
    s.x = x, s.z = z, s.u = u.data(), s.activation = sigma.data(), s.delta = delta.data(), s.a = w.a.data();
    s.b = sp.b, s.c = sp.c, s.y = y.data(), s.skip = w.skip.data(), s.conv_weight = w.conv_weight.data();
    s.conv_bias = w.conv_bias.size() ? w.conv_bias.data() : nullptr;
    s.stream = stream;
    observe(static_cast<const device_mamba_layer_signals&>(s));
  }
  detail::mamba_rms_norm_kernel<<<detail::grid_size(L), mamba_threads, 0, stream>>>(h.data(), m.norm_f(),
                                                                             static_cast<float>(cfg.norm_eps), hn.data(), H);
  MIXLENS_CUDA_CHECK_LAUNCH();
  blas.sgemm(stream, true, false, V, L, H, m.output_embedding(), H, hn.data(), H, 0.0f, logits.data(), V);
  // The workspaces are freed on return: let the stream finish with them first.
  MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream));
  return logits;
}

[[nodiscard]] inline device_buffer<float> mamba_forward(const device_mamba_model& m, std::span<const index_t> tokens,
                                                        cudaStream_t stream = nullptr) {
  return mamba_forward(m, tokens, [](const device_mamba_layer_signals&) {}, stream);
}

// ---- maps ----------------------------------------------------------------------

// min and max of n device values into minmax (device, 2 floats).
inline void min_max(const float* data, index_t n, float* minmax, cudaStream_t stream = nullptr) {
  detail::mamba_minmax_init_kernel<<<1, 1, 0, stream>>>(minmax);
  MIXLENS_CUDA_CHECK_LAUNCH();
  const index_t blocks = std::min<index_t>((n + detail::mamba_threads - 1) / detail::mamba_threads, 4096);
  detail::mamba_minmax_kernel<<<detail::grid_size(std::max<index_t>(blocks, 1)), detail::mamba_threads, 0, stream>>>(
      data, n, minmax);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// Min–max normalization to [0, 1] in place (constant input → zeros), as
// models::normalize_min_max.
inline void normalize_min_max(float* data, index_t n, cudaStream_t stream = nullptr) {
  if (n <= 0) return;
  detail::stream_workspace mm(2 * sizeof(float), stream);
  auto* minmax = static_cast<float*>(mm.get());
  min_max(data, n, minmax, stream);
  detail::mamba_normalize_kernel<<<detail::mamba_blocks(n), detail::mamba_threads, 0, stream>>>(data, data, n, minmax);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// One layer's raw-attention map from its channel mean and the min / max of its
// whole tensor (device pointers), as models::raw_attention_layer.
inline void raw_attention_map(const float* mean, const float* minmax, index_t length, float* out,
                              cudaStream_t stream = nullptr) {
  const index_t n = length * length;
  detail::mamba_raw_kernel<<<detail::mamba_blocks(n), detail::mamba_threads, 0, stream>>>(mean, minmax, out, n);
  MIXLENS_CUDA_CHECK_LAUNCH();
}

// The average of equally sized L × L maps, as models::average_maps (float sum in
// order, divided at the end).
class device_map_average {
 public:
  explicit device_map_average(index_t length, cudaStream_t stream = nullptr)
      : length_(length), stream_(stream), sum_(length * length) {
    mixlens::detail::check_positive("mixlens::gpu::device_map_average", "length", length);
    reset();
  }
  void reset() {
    MIXLENS_CUDA_CHECK(cudaMemsetAsync(sum_.data(), 0, sum_.bytes(), stream_));
    count_ = 0;
  }
  void add(const float* map) {
    const index_t n = length_ * length_;
    detail::mamba_axpy_kernel<<<detail::mamba_blocks(n), detail::mamba_threads, 0, stream_>>>(sum_.data(), map, 1.0f, n,
                                                                                           false);
    MIXLENS_CUDA_CHECK_LAUNCH();
    ++count_;
  }
  [[nodiscard]] index_t count() const { return count_; }
  // The average so far (host, L × L).
  [[nodiscard]] matrix<float> to_host() {
    if (count_ == 0) mixlens::detail::fail("mixlens::gpu::device_map_average", "maps", "at least one map", 0);
    device_buffer<float> avg(length_ * length_);
    MIXLENS_CUDA_CHECK(cudaMemcpyAsync(avg.data(), sum_.data(), sum_.bytes(), cudaMemcpyDeviceToDevice, stream_));
    const index_t n = length_ * length_;
    detail::mamba_axpy_kernel<<<detail::mamba_blocks(n), detail::mamba_threads, 0, stream_>>>(
        avg.data(), nullptr, 1.0f / static_cast<float>(count_), n, true);
    MIXLENS_CUDA_CHECK_LAUNCH();
    return download_matrix(avg.data(), length_, length_, stream_);
  }

 private:
  index_t length_;
  cudaStream_t stream_;
  device_buffer<float> sum_;
  index_t count_ = 0;
};

// Attention rollout on the device, as models::attention_rollout: add() each
// layer's channel-aggregated map (device, L × L) in order; result() is
// rownorm(I + A_last) ⋯ rownorm(I + A_first), the products by cuBLAS SGEMM.
class device_rollout {
 public:
  explicit device_rollout(index_t length, cudaStream_t stream = nullptr)
      : length_(length), stream_(stream), rho_(length * length), next_(length * length), aug_(length * length) {
    mixlens::detail::check_positive("mixlens::gpu::device_rollout", "length", length);
    reset();
  }
  [[nodiscard]] index_t length() const { return length_; }

  // Back to the identity, no layers (the buffers are kept).
  void reset() {
    const index_t n = length_ * length_;
    detail::mamba_identity_kernel<<<detail::mamba_blocks(n), detail::mamba_threads, 0, stream_>>>(rho_.data(), length_);
    MIXLENS_CUDA_CHECK_LAUNCH();
    layers_ = 0;
  }
  [[nodiscard]] index_t layers() const { return layers_; }

  void add(const float* layer_map) {
    const index_t L = length_;
    detail::mamba_rownorm_kernel<<<detail::grid_size(L), detail::mamba_threads, 0, stream_>>>(layer_map, aug_.data(), L);
    MIXLENS_CUDA_CHECK_LAUNCH();
    // Row-major next = aug · ρ is column-major nextᵀ = ρᵀ · augᵀ.
    blas_.sgemm(stream_, false, false, L, L, L, rho_.data(), L, aug_.data(), L, 0.0f, next_.data(), L);
    std::swap(rho_, next_);
    ++layers_;
  }
  [[nodiscard]] const float* result() const { return rho_.data(); }
  [[nodiscard]] matrix<float> to_host() const { return download_matrix(rho_.data(), length_, length_, stream_); }

 private:
  index_t length_;
  cudaStream_t stream_;
  device_buffer<float> rho_, next_, aug_;
  cublas_handle blas_;
  index_t layers_ = 0;
};

// ---- per-layer attention -----------------------------------------------------------

// Per-layer hidden attention with a reused workspace. The full tensor
// (D × L × L) is formed in chunks of channels of at most `max_chunk_bytes`, so
// that device memory stays bounded for long inputs.
class device_attention {
 public:
  static constexpr std::size_t default_chunk_bytes = std::size_t(2) << 30;

  explicit device_attention(std::size_t max_chunk_bytes = default_chunk_bytes) : max_chunk_bytes_(max_chunk_bytes) {}

  // Channels per chunk for a layer of length L.
  [[nodiscard]] index_t chunk_channels(const device_mamba_layer_signals& s) const {
    const std::size_t per_channel = static_cast<std::size_t>(s.length * s.length) * sizeof(float);
    return std::clamp<index_t>(static_cast<index_t>(max_chunk_bytes_ / per_channel), 1, s.channels);
  }

  // The matrices of channels [d0, d0 + count) in `form` into out (device,
  // count × L × L).
  void compute(const device_mamba_layer_signals& s, models::attention_form form, index_t d0, index_t count,
               float* out) const {
    constexpr std::string_view where = "mixlens::gpu::device_attention::compute";
    if (d0 < 0 || count <= 0 || d0 + count > s.channels)
      mixlens::detail::fail(where, "channels", "a range inside [0, " + std::to_string(s.channels) + ")",
                            std::to_string(d0) + " + " + std::to_string(count));
    hidden_attention(s.attention_params(d0, count), out, s.stream);
    if (form == models::attention_form::unified) {
      detail::mamba_unify_kernel<<<detail::grid_size(count * s.length), detail::mamba_threads, 0, s.stream>>>(
          out, s.z + d0 * s.length, s.activation + d0 * s.length, s.skip + d0, s.conv_weight + d0 * s.conv_kernel,
          s.length, s.conv_kernel);
      MIXLENS_CUDA_CHECK_LAUNCH();
    }
  }

  // The whole tensor (device, D × L × L).
  void compute(const device_mamba_layer_signals& s, models::attention_form form, float* out) const {
    compute(s, form, 0, s.channels, out);
  }

  // The channel aggregate (device map, L × L) and, when minmax is not null, the
  // min and max over the whole tensor (device, 2 floats); the tensor is copied to
  // host_alpha (D × L × L, host) when that is not null.
  void aggregate(const device_mamba_layer_signals& s, models::attention_form form, models::channel_reduction r,
                 float* map, float* minmax = nullptr, float* host_alpha = nullptr) {
    const index_t D = s.channels, L = s.length, LL = L * L, chunk = chunk_channels(s);
    reserve(chunk * LL, LL);
    MIXLENS_CUDA_CHECK(cudaMemsetAsync(acc_.data(), 0, static_cast<std::size_t>(LL) * sizeof(double), s.stream));
    if (minmax) {
      detail::mamba_minmax_init_kernel<<<1, 1, 0, s.stream>>>(minmax);
      MIXLENS_CUDA_CHECK_LAUNCH();
    }
    for (index_t d0 = 0; d0 < D; d0 += chunk) {
      const index_t count = std::min(chunk, D - d0);
      compute(s, form, d0, count, alpha_.data());
      const unsigned blocks = detail::mamba_blocks(LL);
      switch (r) {
        case models::channel_reduction::mean:
          detail::mamba_aggregate_kernel<0><<<blocks, detail::mamba_threads, 0, s.stream>>>(alpha_.data(), count, LL,
                                                                                          acc_.data(), minmax);
          break;
        case models::channel_reduction::abs_mean:
          detail::mamba_aggregate_kernel<1><<<blocks, detail::mamba_threads, 0, s.stream>>>(alpha_.data(), count, LL,
                                                                                          acc_.data(), minmax);
          break;
        case models::channel_reduction::relu_mean:
          detail::mamba_aggregate_kernel<2><<<blocks, detail::mamba_threads, 0, s.stream>>>(alpha_.data(), count, LL,
                                                                                          acc_.data(), minmax);
          break;
      }
      MIXLENS_CUDA_CHECK_LAUNCH();
      if (host_alpha)
        MIXLENS_CUDA_CHECK(cudaMemcpyAsync(host_alpha + d0 * LL, alpha_.data(),
                                           static_cast<std::size_t>(count * LL) * sizeof(float),
                                           cudaMemcpyDeviceToHost, s.stream));
    }
    detail::mamba_mean_kernel<<<detail::mamba_blocks(LL), detail::mamba_threads, 0, s.stream>>>(acc_.data(), map, LL,
                                                                                             double(D));
    MIXLENS_CUDA_CHECK_LAUNCH();
    if (host_alpha) MIXLENS_CUDA_CHECK(cudaStreamSynchronize(s.stream));  // pageable copies may still be staged
  }

  // The self-test of models::check_reconstruction on the device: how well the
  // materialized matrices reproduce the layer output y, as max |error| / max |y|:
  // (α·u + D·u) ⊙ SiLU(z), and Â·x + offset with the conv bias's offset.
  [[nodiscard]] models::reconstruction_error check_reconstruction(const device_mamba_layer_signals& s) {
    const index_t D = s.channels, L = s.length, LL = L * L, chunk = chunk_channels(s);
    reserve(chunk * LL, 0);
    device_buffer<double> paper(D * L), unified(D * L);
    device_buffer<float> offset, bias_in;
    if (s.conv_bias) {  // offset = S6 (+D, gate) applied to σ ⊙ bias
      offset = device_buffer<float>(D * L);
      bias_in = device_buffer<float>(D * L);
      detail::mamba_bias_input_kernel<<<detail::mamba_blocks(D * L), detail::mamba_threads, 0, s.stream>>>(
          s.activation, s.conv_bias, bias_in.data(), D, L);
      MIXLENS_CUDA_CHECK_LAUNCH();
      selective_scan_params<float, float> sp;
      sp.batch = 1, sp.channels = D, sp.length = L, sp.state_size = s.state_size, sp.groups = 1;
      sp.u = bias_in.data(), sp.delta = s.delta, sp.a = s.a, sp.b = s.b, sp.c = s.c, sp.skip = s.skip, sp.z = s.z;
      sp.y = offset.data();
      selective_scan_forward(sp, s.stream);
    }
    for (index_t d0 = 0; d0 < D; d0 += chunk) {
      const index_t count = std::min(chunk, D - d0);
      const unsigned rows = detail::grid_size(count * L);
      compute(s, models::attention_form::paper, d0, count, alpha_.data());
      detail::mamba_reconstruct_kernel<<<rows, detail::mamba_threads, 0, s.stream>>>(
          alpha_.data(), s.u + d0 * L, s.skip + d0, s.z + d0 * L, nullptr, paper.data() + d0 * L, L);
      MIXLENS_CUDA_CHECK_LAUNCH();
      detail::mamba_unify_kernel<<<rows, detail::mamba_threads, 0, s.stream>>>(
          alpha_.data(), s.z + d0 * L, s.activation + d0 * L, s.skip + d0, s.conv_weight + d0 * s.conv_kernel, L,
          s.conv_kernel);
      MIXLENS_CUDA_CHECK_LAUNCH();
      detail::mamba_reconstruct_kernel<<<rows, detail::mamba_threads, 0, s.stream>>>(
          alpha_.data(), s.x + d0 * L, nullptr, nullptr, offset.size() ? offset.data() + d0 * L : nullptr,
          unified.data() + d0 * L, L);
      MIXLENS_CUDA_CHECK_LAUNCH();
    }
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    std::vector<float> y(static_cast<std::size_t>(D * L));
    MIXLENS_CUDA_CHECK(cudaMemcpy(y.data(), s.y, y.size() * sizeof(float), cudaMemcpyDeviceToHost));
    const auto p = paper.to_host(), q = unified.to_host();
    double scale = 0, ep = 0, eu = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      scale = std::max(scale, std::abs(double(y[i])));
      ep = std::max(ep, std::abs(p[i] - double(y[i])));
      eu = std::max(eu, std::abs(q[i] - double(y[i])));
    }
    if (scale == 0) scale = 1;
    return {ep / scale, eu / scale};
  }

 private:
  void reserve(index_t alpha_size, index_t acc_size) {
    if (alpha_.size() < alpha_size) {
      alpha_ = device_buffer<float>();  // free first: the two need not fit together
      alpha_ = device_buffer<float>(alpha_size);
    }
    if (acc_.size() < acc_size) acc_ = device_buffer<double>(acc_size);
  }

  std::size_t max_chunk_bytes_;
  device_buffer<float> alpha_;
  device_buffer<double> acc_;
};

}  // namespace mixlens::gpu
