// The device backend of the model code (fp32): the members of
// mixlens::host_backend over device memory, asynchronous on one stream, the
// products by cuBLAS SGEMM (full fp32, no TF32), operators through
// gpu::apply / gpu::materialize_channels. The forward pass and the maps are
// written once against either backend (models/mamba_forward.hpp,
// analysis/attention_maps.hpp).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cmath>
#include <limits>
#include <span>
#include <sstream>
#include <utility>
#include <vector>

#include "mixlens/detail/math.hpp"
#include "mixlens/gpu/detail/min_max.cuh"
#include "mixlens/gpu/error.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/gpu/s6_backward.cuh"
#include "mixlens/backend.hpp"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/mamba_block/device.cuh"
#include "mixlens/ops/s6/backward.hpp"
#include "mixlens/ops/s6/device.cuh"
#include "mixlens/ops/ssd/device.cuh"

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

// How cuBLAS multiplies: fp32 exactly as the CPU (the default everywhere: the
// results must match the host to fp32 accuracy), or TF32 tensor cores (10-bit
// mantissa products, fp32 sums; about 1e-3 relative), which only a caller that
// asks for it gets (mixlens-eval --tf32).
enum class gemm_precision { fp32, tf32 };

// An owning cuBLAS handle in the given precision; move-only.
class cublas_handle {
 public:
  explicit cublas_handle(gemm_precision precision = gemm_precision::fp32) {
    MIXLENS_CUBLAS_CHECK(cublasCreate(&handle_));
    MIXLENS_CUBLAS_CHECK(cublasSetMathMode(
        handle_, precision == gemm_precision::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH));
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

  // Row-major C (m × n) = op(A)·op(B) + beta·C with op(A) (m × k), op(B) (k × n),
  // A stored (k × m) when trans_a, B (n × k) when trans_b: column-major
  // Cᵀ = op(B)ᵀ·op(A)ᵀ for cuBLAS.
  void gemm(cudaStream_t stream, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a,
            const float* b, float beta, float* c) const {
    for (const index_t v : {m, n, k})
      if (v > INT_MAX) mixlens::detail::fail("mixlens::gpu::cublas_handle::gemm", "sizes", "below 2^31", v);
    const float one = 1.0f;
    MIXLENS_CUBLAS_CHECK(cublasSetStream(handle_, stream));
    MIXLENS_CUBLAS_CHECK(cublasSgemm(handle_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &one, b,
                                     static_cast<int>(trans_b ? k : n), a, static_cast<int>(trans_a ? m : k), &beta, c,
                                     static_cast<int>(n)));
  }
  // `count` such products on a + i·stride_a, b + i·stride_b, c + i·stride_c.
  void gemm_batched(cudaStream_t stream, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a,
                    index_t stride_a, const float* b, index_t stride_b, float beta, float* c, index_t stride_c,
                    index_t count) const {
    for (const index_t v : {m, n, k, count})
      if (v > INT_MAX) mixlens::detail::fail("mixlens::gpu::cublas_handle::gemm_batched", "sizes", "below 2^31", v);
    if (count == 0) return;
    const float one = 1.0f;
    MIXLENS_CUBLAS_CHECK(cublasSetStream(handle_, stream));
    MIXLENS_CUBLAS_CHECK(cublasSgemmStridedBatched(
        handle_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n),
        static_cast<int>(m), static_cast<int>(k), &one, b, static_cast<int>(trans_b ? k : n), stride_b, a,
        static_cast<int>(trans_a ? m : k), stride_a, &beta, c, static_cast<int>(n), stride_c, static_cast<int>(count)));
  }

 private:
  cublasHandle_t handle_ = nullptr;
};

// ---- kernels -------------------------------------------------------------------

namespace detail {

inline constexpr int model_threads = 256;

inline unsigned model_blocks(index_t work) {
  const index_t blocks = (work + model_threads - 1) / model_threads;
  return grid_size(blocks < 65535 * 64 ? (blocks > 0 ? blocks : 1) : 65535 * 64);  // threads stride over the rest
}

#define MIXLENS_GRID_STRIDE(k, n) \
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < (n); k += index_t(gridDim.x) * blockDim.x)

static __global__ void embed_kernel(const index_t* tokens, const float* embedding, float* h, index_t L, index_t H) {
  MIXLENS_GRID_STRIDE(k, L * H) h[k] = embedding[tokens[k / H] * H + k % H];
}

// One block per row of x (rows × H): x / sqrt(mean(x²) + eps) · weight.
static __global__ void __launch_bounds__(model_threads)
    rms_norm_kernel(const float* x, index_t H, const float* weight, float eps, float* out) {
  __shared__ float partial[model_threads / 32];
  const float* xr = x + static_cast<index_t>(blockIdx.x) * H;
  float* orow = out + static_cast<index_t>(blockIdx.x) * H;
  float ss = 0;
  for (index_t i = threadIdx.x; i < H; i += model_threads) ss += xr[i] * xr[i];
  for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < model_threads / 32; ++w) total += partial[w];
  const float scale = 1.0f / sqrtf(total / static_cast<float>(H) + eps);
  for (index_t i = threadIdx.x; i < H; i += model_threads) orow[i] = xr[i] * scale * weight[i];
}

static __global__ void add_column_bias_kernel(float* data, const float* bias, index_t rows, index_t cols) {
  MIXLENS_GRID_STRIDE(k, rows * cols) data[k] += bias[k % cols];
}

static __global__ void add_row_bias_kernel(float* data, const float* bias, index_t rows, index_t cols) {
  MIXLENS_GRID_STRIDE(k, rows * cols) data[k] += bias[k / cols];
}

// u = SiLU(u + bias), σ = σ(u + bias) (sigma may be null), in place over the conv output.
static __global__ void bias_silu_kernel(float* u, const float* bias, float* sigma, index_t D, index_t L) {
  MIXLENS_GRID_STRIDE(k, D * L) {
    const float p = u[k] + (bias ? bias[k / L] : 0.0f);
    const float s = mixlens::detail::sigmoid(p);
    if (sigma) sigma[k] = s;
    u[k] = p * s;
  }
}

static __global__ void softplus_bias_kernel(float* dt, const float* bias, index_t D, index_t L, float lo, float hi) {
  MIXLENS_GRID_STRIDE(k, D * L) dt[k] = mixlens::detail::clamp_keep_nan(mixlens::detail::softplus(dt[k] + bias[k / L]), lo, hi);
}

// One thread per (group, position) of the channel-major x (C × L): consecutive
// threads read consecutive positions. The sum of squares in double.
static __global__ void gated_rms_norm_kernel(const float* x, const float* z, index_t C, index_t L, index_t group,
                                      const float* weight, float eps, float* out, float* factor) {
  MIXLENS_GRID_STRIDE(k, (C / group) * L) {
    const index_t c0 = (k / L) * group, t = k % L;
    double ss = 0;
    for (index_t c = c0; c < c0 + group; ++c) {
      const double v = double(x[c * L + t]) * (z ? double(mixlens::detail::silu(z[c * L + t])) : 1.0);
      ss += v * v;
    }
    const double r = 1.0 / sqrt(ss / double(group) + double(eps));
    for (index_t c = c0; c < c0 + group; ++c) {
      const float f = static_cast<float>((z ? double(mixlens::detail::silu(z[c * L + t])) : 1.0) * r *
                                         (weight ? double(weight[c]) : 1.0));
      if (factor) factor[c * L + t] = f;
      out[c * L + t] = x[c * L + t] * f;
    }
  }
}

static __global__ void silu_kernel(const float* z, float* gate, index_t n) {
  MIXLENS_GRID_STRIDE(k, n) gate[k] = mixlens::detail::silu(z[k]);
}

static __global__ void scale_rows_kernel(const float* sigma, const float* bias, float* out, index_t D, index_t L) {
  MIXLENS_GRID_STRIDE(k, D * L) out[k] = sigma[k] * bias[k / L];
}

static __global__ void fill_kernel(float* data, index_t n, float value) {
  MIXLENS_GRID_STRIDE(k, n) data[k] = value;
}

static __global__ void identity_kernel(float* m, index_t L) {
  MIXLENS_GRID_STRIDE(k, L * L) m[k] = k / L == k % L ? 1.0f : 0.0f;
}

static __global__ void axpy_kernel(float* y, const float* x, float scale, index_t n) {
  MIXLENS_GRID_STRIDE(k, n) y[k] += scale * x[k];
}

static __global__ void scale_kernel(float* y, float factor, index_t n) {
  MIXLENS_GRID_STRIDE(k, n) y[k] *= factor;
}

static __global__ void mean_kernel(const double* acc, index_t n, double count, float* out) {
  MIXLENS_GRID_STRIDE(k, n) out[k] = static_cast<float>(acc[k] / count);
}

static __global__ void reset_min_max_kernel(float* minmax) {
  minmax[0] = INFINITY;
  minmax[1] = -INFINITY;
  minmax[2] = 0.0f;
}

// Channel aggregation of `count` matrices (count × LL) into acc (LL, double, +=),
// with min, max and NaN count into minmax when it is not null.
template <int Reduction>
__global__ void aggregate_kernel(const float* m, index_t count, index_t LL, double* acc, float* minmax) {
  const index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x;
  float lo = INFINITY, hi = -INFINITY, nans = 0;
  if (e < LL) {
    double sum = 0;
    for (index_t c = 0; c < count; ++c) {
      const float v = __ldcs(m + c * LL + e);  // read once: keep it out of L2's way
      if (isnan(v)) nans += 1;
      lo = fminf(lo, v);
      hi = fmaxf(hi, v);
      sum += Reduction == 0 ? double(v) : Reduction == 1 ? fabs(double(v)) : (v > 0 ? double(v) : 0.0 * double(v));
    }
    acc[e] += sum;
  }
  if (minmax) merge_min_max(minmax, lo, hi, nans);
}

static __global__ void min_max_kernel(const float* data, index_t n, float* minmax) {
  float lo = INFINITY, hi = -INFINITY, nans = 0;
  MIXLENS_GRID_STRIDE(k, n) {
    const float v = data[k];
    if (isnan(v)) nans += 1;
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  merge_min_max(minmax, lo, hi, nans);
}

// Row positions[k] of the diagonal block of channel d0 + c into out + (c·R + k)·L,
// one thread per (channel, row).
template <class View>
__global__ void rows_channels_kernel(View v, index_t d0, index_t count, const index_t* positions, index_t R, float* out) {
  const index_t L = v.length();
  for (index_t k = blockIdx.x * index_t(blockDim.x) + threadIdx.x; k < count * R; k += index_t(gridDim.x) * blockDim.x) {
    const index_t d = d0 + k / R;
    v.row(d, d, positions[k % R], vector_view<float>(out + k * L, static_cast<std::size_t>(L)));
  }
}

// out = (in − min) / (max − min) in double; 0 for a constant input; NaN when
// the input held a NaN.
static __global__ void normalize_kernel(const float* in, const float* minmax, float* out, index_t n) {
  const double lo = minmax[0], range = double(minmax[1]) - lo;
  const bool nan = minmax[2] > 0;
  MIXLENS_GRID_STRIDE(k, n) out[k] = nan ? NAN : range > 0 ? static_cast<float>((double(in[k]) - lo) / range) : 0.0f;
}

// Rollout step: aug = I + map with each row divided by its sum (sum in double;
// a zero-sum row is left as it is). One block per row.
static __global__ void __launch_bounds__(model_threads) rownorm_identity_kernel(const float* map, float* aug, index_t L) {
  __shared__ double partial[model_threads / 32];
  const index_t i = blockIdx.x;
  double sum = 0;
  for (index_t j = threadIdx.x; j < L; j += model_threads) {
    const float v = map[i * L + j] + (i == j ? 1.0f : 0.0f);
    aug[i * L + j] = v;
    sum += v;
  }
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < model_threads / 32; ++w) total += partial[w];
  if (total != 0)
    for (index_t j = threadIdx.x; j < L; j += model_threads) aug[i * L + j] = static_cast<float>(aug[i * L + j] / total);
}

// out[c][t] = (Σ_{j≤t} M_k[t][j]·v[c][j] + skip_k·v[c][t])·gate[c][t] + offset[c][t],
// k = c / per_matrix, in double, one block per (c, t); skip, gate and offset may be null.
static __global__ void __launch_bounds__(model_threads)
    reconstruct_kernel(const float* m, const float* v, const float* skip, const float* gate, const float* offset,
                       index_t L, double* out, index_t per_matrix) {
  __shared__ double partial[model_threads / 32];
  const index_t row = blockIdx.x, c = row / L, t = row % L, k = c / per_matrix;
  const float* mr = m + (k * L + t) * L;
  const float* vr = v + c * L;
  double acc = 0;
  for (index_t j = threadIdx.x; j <= t; j += model_threads) acc += double(mr[j]) * double(vr[j]);
  for (int o = 16; o > 0; o /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total = 0;
  for (int w = 0; w < model_threads / 32; ++w) total += partial[w];
  if (skip) total += double(skip[k]) * double(vr[t]);
  if (gate) total *= gate[c * L + t];
  if (offset) total += offset[c * L + t];
  out[row] = total;
}

// ---- the backward pass (models/mamba_backward.hpp) ----------------------------

// One block per row: dx = (or +=) r·w·dy − x·r³·mean(w·dy·x), both sums in double
// (the second term dropped with detach_scale).
static __global__ void __launch_bounds__(model_threads)
    rms_norm_backward_kernel(const float* x, index_t H, const float* weight, float eps, const float* dy, float* dx,
                             bool accumulate, bool detach_scale) {
  __shared__ double partial[2][model_threads / 32];
  const index_t row = blockIdx.x;
  const float *xr = x + row * H, *gr = dy + row * H;
  double ss = 0, dot = 0;
  for (index_t i = threadIdx.x; i < H; i += model_threads) {
    ss += double(xr[i]) * double(xr[i]);
    dot += double(gr[i]) * double(weight[i]) * double(xr[i]);
  }
  for (int o = 16; o > 0; o /= 2) {
    ss += __shfl_xor_sync(0xffffffffu, ss, o);
    dot += __shfl_xor_sync(0xffffffffu, dot, o);
  }
  if (threadIdx.x % 32 == 0) partial[0][threadIdx.x / 32] = ss, partial[1][threadIdx.x / 32] = dot;
  __syncthreads();
  double total = 0, total_dot = 0;
  for (int w = 0; w < model_threads / 32; ++w) total += partial[0][w], total_dot += partial[1][w];
  const double scale = 1.0 / sqrt(total / double(H) + double(eps)),
               k = detach_scale ? 0.0 : scale * scale * scale * total_dot / double(H);
  for (index_t i = threadIdx.x; i < H; i += model_threads) {
    const float v = static_cast<float>(scale * double(weight[i]) * double(gr[i]) - k * double(xr[i]));
    dx[row * H + i] = accumulate ? dx[row * H + i] + v : v;
  }
}

// One thread per (group, position), as gated_rms_norm_kernel: grad = ∂out on entry, ∂x on return.
static __global__ void group_rms_norm_backward_kernel(const float* x, index_t C, index_t L, index_t group, float eps,
                                               float* grad, bool detach_scale) {
  MIXLENS_GRID_STRIDE(k, (C / group) * L) {
    const index_t c0 = (k / L) * group, t = k % L;
    double ss = 0, dot = 0;
    for (index_t c = c0; c < c0 + group; ++c) {
      ss += double(x[c * L + t]) * double(x[c * L + t]);
      dot += double(grad[c * L + t]) * double(x[c * L + t]);
    }
    const double scale = 1.0 / sqrt(ss / double(group) + double(eps)),
                 f = detach_scale ? 0.0 : scale * scale * scale * dot / double(group);
    for (index_t c = c0; c < c0 + group; ++c)
      grad[c * L + t] = static_cast<float>(scale * double(grad[c * L + t]) - f * double(x[c * L + t]));
  }
}

// du *= SiLU'(p) = σ + u·(1 − σ), or σ with detach_sigmoid.
static __global__ void silu_grad_from_output_kernel(const float* u, const float* sigma, float* du, index_t n,
                                             bool detach_sigmoid) {
  MIXLENS_GRID_STRIDE(k, n) du[k] *= detach_sigmoid ? sigma[k] : sigma[k] + u[k] * (1.0f - sigma[k]);
}

// dx[d][s] = Σ_k taps[d][k]·dp[d][s + k]: the causal conv transposed.
static __global__ void conv_transpose_kernel(const float* taps, index_t K, const float* dp, float* dx, index_t D, index_t L) {
  MIXLENS_GRID_STRIDE(i, D * L) {
    const index_t d = i / L, s = i % L;
    float acc = 0;
    for (index_t k = 0; k < K && s + k < L; ++k) acc += taps[d * K + k] * dp[i + k];
    dx[i] = acc;
  }
}

static __global__ void softplus_backward_kernel(const float* delta, float* grad, index_t n, float lo, float hi) {
  MIXLENS_GRID_STRIDE(k, n) grad[k] = mixlens::detail::clamp_binds(delta[k], lo, hi) ? 0.0f : grad[k] * -expm1f(-delta[k]);
}

static __global__ void silu_backward_kernel(const float* z, float* grad, index_t n, bool detach_sigmoid) {
  MIXLENS_GRID_STRIDE(k, n) {
    const float s = mixlens::detail::sigmoid(z[k]);
    grad[k] *= detach_sigmoid ? s : s * (1.0f + z[k] * (1.0f - s));
  }
}

#undef MIXLENS_GRID_STRIDE

}  // namespace detail

// Device memory from the stream-ordered pool: the per-layer buffers of the
// forward pass and the maps come and go every layer, and the pool serves them
// again without a cudaMalloc each time. Move-only.
template <class T>
class stream_array {
 public:
  stream_array() = default;
  stream_array(index_t size, cudaStream_t stream) : size_(size), stream_(stream) {
    if (size < 0) mixlens::detail::fail("mixlens::gpu::stream_array", "size", "a non-negative size", size);
    if (size > 0) MIXLENS_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&data_), bytes(), stream));
  }
  stream_array(const stream_array&) = delete;
  stream_array& operator=(const stream_array&) = delete;
  stream_array(stream_array&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), stream_(o.stream_) {}
  stream_array& operator=(stream_array&& o) noexcept {
    std::swap(data_, o.data_), std::swap(size_, o.size_), std::swap(stream_, o.stream_);
    return *this;
  }
  ~stream_array() {
    if (data_) cudaFreeAsync(data_, stream_);
  }
  [[nodiscard]] T* data() const { return data_; }
  [[nodiscard]] index_t size() const { return size_; }
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(size_) * sizeof(T); }

 private:
  T* data_ = nullptr;
  index_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

// The backend itself: holds the stream and a cuBLAS handle. Not for concurrent
// use from several host threads. It keeps freed pool memory of the current
// device cached (release threshold: unlimited), so that layer after layer
// reuses the same blocks.
class device_backend {
 public:
  using value_type = float;
  static constexpr bool on_host = false;
  template <class U>
  using array = stream_array<U>;

  explicit device_backend(cudaStream_t stream = nullptr, gemm_precision precision = gemm_precision::fp32)
      : stream_(stream), blas_(precision) {
    int device = 0;
    cudaMemPool_t pool;
    MIXLENS_CUDA_CHECK(cudaGetDevice(&device));
    MIXLENS_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    std::uint64_t keep = UINT64_MAX;
    MIXLENS_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }

  [[nodiscard]] cudaStream_t stream() const { return stream_; }
  [[nodiscard]] const cublas_handle& blas() const { return blas_; }

  template <class U = float>
  [[nodiscard]] array<U> alloc(index_t n) const {
    return array<U>(n, stream_);
  }
  [[nodiscard]] array<index_t> upload(std::span<const index_t> v) const {
    array<index_t> d(static_cast<index_t>(v.size()), stream_);
    MIXLENS_CUDA_CHECK(cudaMemcpyAsync(d.data(), v.data(), d.bytes(), cudaMemcpyHostToDevice, stream_));
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // v may go away
    return d;
  }
  // Values (e.g. Vision Mamba's image patches) into device memory.
  [[nodiscard]] array<float> upload(std::span<const float> v) const {
    array<float> d(static_cast<index_t>(v.size()), stream_);
    if (v.empty()) return d;
    MIXLENS_CUDA_CHECK(cudaMemcpyAsync(d.data(), v.data(), d.bytes(), cudaMemcpyHostToDevice, stream_));
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // v may go away
    return d;
  }
  template <class U>
  [[nodiscard]] std::vector<U> download(const U* p, index_t n) const {
    std::vector<U> h(static_cast<std::size_t>(n));
    MIXLENS_CUDA_CHECK(cudaMemcpyAsync(h.data(), p, h.size() * sizeof(U), cudaMemcpyDeviceToHost, stream_));
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return h;
  }
  void synchronize() const { MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void embed(const array<index_t>& tokens, matrix_view<const float> embedding, float* h) const {
    const index_t L = tokens.size(), H = embedding.extent(1);
    detail::embed_kernel<<<detail::model_blocks(L * H), detail::model_threads, 0, stream_>>>(
        tokens.data(), embedding.data_handle(), h, L, H);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void rms_norm(const float* x, index_t rows, index_t H, vector_view<const float> weight, double eps,
                float* out) const {
    detail::rms_norm_kernel<<<detail::grid_size(rows), detail::model_threads, 0, stream_>>>(
        x, H, weight.data(), static_cast<float>(eps), out);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a, const float* b, float beta,
            float* c) const {
    blas_.gemm(stream_, trans_a, trans_b, m, n, k, a, b, beta, c);
  }
  void gemm_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const float* a, index_t stride_a,
                    const float* b, index_t stride_b, float beta, float* c, index_t stride_c, index_t count) const {
    blas_.gemm_batched(stream_, trans_a, trans_b, m, n, k, a, stride_a, b, stride_b, beta, c, stride_c, count);
  }
  void add_column_bias(float* data, vector_view<const float> bias, index_t rows, index_t cols) const {
    detail::add_column_bias_kernel<<<detail::model_blocks(rows * cols), detail::model_threads, 0, stream_>>>(
        data, bias.data(), rows, cols);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void add_row_bias(float* data, vector_view<const float> bias, index_t rows, index_t cols) const {
    detail::add_row_bias_kernel<<<detail::model_blocks(rows * cols), detail::model_threads, 0, stream_>>>(
        data, bias.data(), rows, cols);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  template <class Kind>
  void conv_silu(const causal_conv_operator<float, Kind>& conv, vector_view<const float> bias, const float* x, float* u,
                 float* sigma) const {
    detail::lti_apply(conv, x, u, nullptr, stream_);
    const index_t D = conv.in_channels(), L = conv.length();
    detail::bias_silu_kernel<<<detail::model_blocks(D * L), detail::model_threads, 0, stream_>>>(
        u, bias.empty() ? nullptr : bias.data(), sigma, D, L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void softplus_bias(float* dt, vector_view<const float> bias, index_t D, index_t L, float lo = 0.0f,
                     float hi = INFINITY) const {
    detail::softplus_bias_kernel<<<detail::model_blocks(D * L), detail::model_threads, 0, stream_>>>(dt, bias.data(), D,
                                                                                                    L, lo, hi);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void gated_rms_norm(const float* x, const float* z, index_t C, index_t L, index_t group,
                      vector_view<const float> weight, double eps, float* out, float* factor) const {
    detail::gated_rms_norm_kernel<<<detail::model_blocks((C / group) * L), detail::model_threads, 0, stream_>>>(
        x, z, C, L, group, weight.empty() ? nullptr : weight.data(), static_cast<float>(eps), out, factor);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  // out (rows × cols) = x with every row reversed in time (Vision Mamba's
  // backward branch). out must not overlap x.
  void reverse_columns(const float* x, index_t rows, index_t cols, float* out) const {
    detail::reverse_time_kernel<<<detail::model_blocks(rows * cols), detail::model_threads, 0, stream_>>>(
        x, out, rows, cols, false);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void multiply(float* y, const float* x, index_t n) const {
    detail::multiply_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(y, x, n);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void silu(const float* z, float* gate, index_t n) const {
    detail::silu_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(z, gate, n);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void scale_rows(const float* sigma, vector_view<const float> bias, float* out, index_t D, index_t L) const {
    detail::scale_rows_kernel<<<detail::model_blocks(D * L), detail::model_threads, 0, stream_>>>(sigma, bias.data(),
                                                                                                 out, D, L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  // ---- the backward pass (models/mamba_backward.hpp; host_backend documents each) ----
  // The selective scan's backward (the fused kernel, gpu/s6_backward.cuh) on
  // an S6 view as the host's: Δ after softplus, the view's gate a plain gate;
  // ∂B and ∂C summed over the channels of each group, ∂D when g.dskip is given.
  void s6_backward(const s6_operator<float>& op, const float* u, const float* dy,
                   const s6_gradient_views<float>& g) const {
    selective_scan_backward_params<float> p;
    p.batch = 1, p.channels = op.in_channels(), p.length = op.length(), p.state_size = op.state_size();
    p.groups = op.groups();
    p.u = u, p.delta = op.delta.data_handle(), p.a = op.a.data_handle(), p.b = op.b.data_handle(),
    p.c = op.c.data_handle();
    p.skip = op.skip.empty() ? nullptr : op.skip.data();
    p.z = is_empty(op.gate) ? nullptr : op.gate.data_handle();
    p.z_silu = false;
    p.dout = dy;
    p.du = g.du.data_handle(), p.ddelta = g.ddelta.data_handle(), p.db = g.db.data_handle(), p.dc = g.dc.data_handle();
    p.dz = p.z ? g.dgate.data_handle() : nullptr;
    p.dskip = g.dskip.empty() ? nullptr : g.dskip.data();
    selective_scan_backward(p, stream_);
  }
  void rms_norm_backward(const float* x, index_t rows, index_t H, vector_view<const float> weight, double eps,
                         const float* dy, float* dx, bool accumulate, bool detach_scale = false) const {
    detail::rms_norm_backward_kernel<<<detail::grid_size(rows), detail::model_threads, 0, stream_>>>(
        x, H, weight.data(), static_cast<float>(eps), dy, dx, accumulate, detach_scale);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void group_rms_norm_backward(const float* x, index_t C, index_t L, index_t group, double eps, float* grad,
                               bool detach_scale = false) const {
    detail::group_rms_norm_backward_kernel<<<detail::model_blocks((C / group) * L), detail::model_threads, 0,
                                             stream_>>>(x, C, L, group, static_cast<float>(eps), grad, detach_scale);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  template <class Kind>
  void conv_silu_backward(const causal_conv_operator<float, Kind>& conv, const float* u, const float* sigma, float* du,
                          float* dx, bool detach_sigmoid = false) const {
    const index_t D = conv.in_channels(), L = conv.length();
    detail::silu_grad_from_output_kernel<<<detail::model_blocks(D * L), detail::model_threads, 0, stream_>>>(
        u, sigma, du, D * L, detach_sigmoid);
    MIXLENS_CUDA_CHECK_LAUNCH();
    detail::conv_transpose_kernel<<<detail::model_blocks(D * L), detail::model_threads, 0, stream_>>>(
        conv.kernel.data_handle(), conv.taps(), du, dx, D, L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void softplus_backward(const float* delta, float* grad, index_t n, float lo = 0.0f,
                         float hi = std::numeric_limits<float>::infinity()) const {
    detail::softplus_backward_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(delta, grad, n,
                                                                                                    lo, hi);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void silu_backward(const float* z, float* grad, index_t n, bool detach_sigmoid = false) const {
    detail::silu_backward_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(z, grad, n,
                                                                                                detach_sigmoid);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  // Device to device, in stream order.
  void copy(const float* from, index_t n, float* to) const {
    MIXLENS_CUDA_CHECK(
        cudaMemcpyAsync(to, from, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  }

  // As host_backend::mamba_scan, in one launch of the fused kernel.
  void mamba_scan(index_t batch, index_t L, const float* u, const float* dt, vector_view<const float> dt_bias,
                  matrix_view<const float> a, const float* b, const float* c, vector_view<const float> skip,
                  const float* z, float* y) const {
    selective_scan_params<float> p;
    p.batch = batch, p.channels = a.extent(0), p.length = L, p.state_size = a.extent(1), p.groups = 1;
    p.u = u, p.delta = dt, p.delta_bias = dt_bias.data(), p.delta_softplus = true;
    p.a = a.data_handle(), p.b = b, p.c = c, p.skip = skip.empty() ? nullptr : skip.data();
    p.z = z, p.z_silu = true, p.y = y;
    selective_scan_forward(p, stream_);
  }
  template <class Op>
  void apply(const Op& op, const float* x, float* y) const {
    const auto& v = view_of(op);
    gpu::apply(v, matrix_view<const float>(x, v.in_channels(), v.length()),
               matrix_view<float>(y, v.out_channels(), v.length()), stream_);
  }
  template <class Op>
  void materialize_channels(const Op& op, index_t d0, index_t count, float* out) const {
    gpu::materialize_channels(op, d0, count, out, stream_);
  }
  // Rows positions[k] (host memory, checked by the caller) of the diagonal
  // blocks of channels [d0, d0 + count) into out (count × R × L), as the host
  // backend's rows_channels; returns once the positions have been copied.
  template <class Op>
  void rows_channels(const Op& op, index_t d0, index_t count, std::span<const index_t> positions, float* out) const {
    const auto& v = view_of(op);
    const index_t R = static_cast<index_t>(positions.size());
    if (count == 0 || R == 0) return;
    detail::stream_workspace p(positions.size() * sizeof(index_t), stream_);
    auto* dp = static_cast<index_t*>(p.get());
    MIXLENS_CUDA_CHECK(cudaMemcpyAsync(dp, positions.data(), positions.size() * sizeof(index_t), cudaMemcpyHostToDevice,
                                       stream_));
    detail::rows_channels_kernel<<<detail::generic_grid(count * R), detail::generic_threads, 0, stream_>>>(
        v, d0, count, dp, R, out);
    MIXLENS_CUDA_CHECK_LAUNCH();
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the workspace and the host positions may go away
  }
  // S6's signed channel mean without the range, straight from the signals
  // (gpu::aggregate_channels: one product over channels and states per tile
  // pair, no D × L × L tensor). The other reductions and the range stay on the
  // tensor path (materialize_channels + aggregate): the fused kernel that forms
  // every entry is slower than it on the H200 (162.6 against 113.4 ms for the
  // 130m-sized rollout at L 1024, bench/README.md).
  template <class State>
  [[nodiscard]] bool aggregates_directly(const s6_operator<float, State>&, channel_reduction r, bool with_range) const {
    return std::is_same_v<State, float> && r == channel_reduction::mean && !with_range;
  }
  template <class State>
  void aggregate_channels(const s6_operator<float, State>& op, channel_reduction r, double* acc, float* minmax) const {
    gpu::aggregate_channels(op, r, acc, minmax, stream_);
  }
  void aggregate(const float* m, index_t count, index_t LL, channel_reduction r, double* acc,
                 float* minmax) const {
    const unsigned blocks = detail::grid_size((LL + detail::model_threads - 1) / detail::model_threads);
    switch (r) {
      case channel_reduction::mean:
        detail::aggregate_kernel<0><<<blocks, detail::model_threads, 0, stream_>>>(m, count, LL, acc, minmax);
        break;
      case channel_reduction::abs_mean:
        detail::aggregate_kernel<1><<<blocks, detail::model_threads, 0, stream_>>>(m, count, LL, acc, minmax);
        break;
      case channel_reduction::relu_mean:
        detail::aggregate_kernel<2><<<blocks, detail::model_threads, 0, stream_>>>(m, count, LL, acc, minmax);
        break;
    }
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void mean(const double* acc, index_t n, double count, float* out) const {
    detail::mean_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(acc, n, count, out);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void reset_min_max(float* minmax) const {
    detail::reset_min_max_kernel<<<1, 1, 0, stream_>>>(minmax);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void min_max(const float* data, index_t n, float* minmax) const {
    reset_min_max(minmax);
    accumulate_min_max(data, n, minmax);
  }
  // minmax merges the range of n more values (no reset).
  void accumulate_min_max(const float* data, index_t n, float* minmax) const {
    const index_t blocks = (n + detail::model_threads - 1) / detail::model_threads;
    detail::min_max_kernel<<<detail::grid_size(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096), detail::model_threads,
                             0, stream_>>>(data, n, minmax);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void normalize(const float* in, const float* minmax, float* out, index_t n) const {
    detail::normalize_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(in, minmax, out, n);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void fill(float* data, index_t n, float value) const {
    detail::fill_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(data, n, value);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  template <class U>
  void fill_zero(U* data, index_t n) const {
    MIXLENS_CUDA_CHECK(cudaMemsetAsync(data, 0, static_cast<std::size_t>(n) * sizeof(U), stream_));
  }
  // Into pageable host memory: returns once the copy is done.
  void copy_to_host(const float* data, index_t n, float* host) const {
    MIXLENS_CUDA_CHECK(
        cudaMemcpyAsync(host, data, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MIXLENS_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void identity(float* m, index_t L) const {
    detail::identity_kernel<<<detail::model_blocks(L * L), detail::model_threads, 0, stream_>>>(m, L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void axpy(float* y, const float* x, float scale, index_t n) const {
    detail::axpy_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(y, x, scale, n);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void scale(float* y, float factor, index_t n) const {
    detail::scale_kernel<<<detail::model_blocks(n), detail::model_threads, 0, stream_>>>(y, factor, n);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void rownorm_identity(const float* map, float* aug, index_t L) const {
    detail::rownorm_identity_kernel<<<detail::grid_size(L), detail::model_threads, 0, stream_>>>(map, aug, L);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }
  void reconstruct(const float* m, const float* v, const float* skip, const float* gate, const float* offset,
                   index_t count, index_t L, double* out, index_t per_matrix = 1) const {
    detail::reconstruct_kernel<<<detail::grid_size(count * L), detail::model_threads, 0, stream_>>>(
        m, v, skip, gate, offset, L, out, per_matrix);
    MIXLENS_CUDA_CHECK_LAUNCH();
  }

 private:
  cudaStream_t stream_;
  cublas_handle blas_;
};

}  // namespace mixlens::gpu
