// Kernel level of mixlens/gpu/lti.cuh: S4D Vandermonde kernels, S4 Cauchy sums at
// the roots of unity, and the two channel projections of S5 around its scan.
// Complex parameters travel as double2 / float2 (plain structs: host-built and
// usable in shared memory); scan operands are mixlens::complex<float>.
#pragma once

#include <cuda_runtime.h>

#include "mixlens/tensor.hpp"

namespace mixlens::gpu::detail {

// ---- complex double arithmetic on double2 --------------------------------------

__device__ __forceinline__ double2 cmul(double2 a, double2 b) {
  return make_double2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ double2 cadd(double2 a, double2 b) { return make_double2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ double2 csub(double2 a, double2 b) { return make_double2(a.x - b.x, a.y - b.y); }
__device__ __forceinline__ double2 cconj(double2 a) { return make_double2(a.x, -a.y); }
__device__ __forceinline__ double2 cscale(double s, double2 a) { return make_double2(s * a.x, s * a.y); }
__device__ __forceinline__ double cabs2(double2 a) { return a.x * a.x + a.y * a.y; }
// a / b with Smith's scaling, so that |b| far from 1 neither overflows nor underflows.
__device__ __forceinline__ double2 cdiv(double2 a, double2 b) {
  if (fabs(b.x) >= fabs(b.y)) {
    const double r = b.y / b.x, d = b.x + b.y * r;
    return make_double2((a.x + a.y * r) / d, (a.y - a.x * r) / d);
  }
  const double r = b.x / b.y, d = b.x * r + b.y;
  return make_double2((a.x * r + a.y) / d, (a.y * r - a.x) / d);
}
// exp(z) = e^{Re z}·(cos Im z, sin Im z); sincos reduces large arguments exactly.
__device__ __forceinline__ double2 cexp(double2 z) {
  double s, c;
  sincos(z.y, &s, &c);
  const double m = exp(z.x);
  return make_double2(m * c, m * s);
}

// ---- S4D: K[h][l] = 2·Re Σ_n coef_n·Ā_n^l -----------------------------------------
//
// Block (h, tile of Threads·Runs lags); thread i owns the lags l0 + r·Threads,
// l0 = tile start + i, r < Runs. Per mode it forms coef·exp(l0·log Ā) exactly and
// steps by Ā^Threads = exp(Threads·log Ā): Runs − 1 multiplications, so the error
// stays at a few ulps of double instead of growing with l. The phase l·Im log Ā
// reaches ~10⁷ rad at L = 65536 (S4D-Inv, Δ = 0.1): fp32 would lose it entirely,
// and H200 runs FP64 at half the FP32 rate, so everything is double until the
// final rounding to fp32.
template <int Threads, int Runs>
__global__ void __launch_bounds__(Threads)
    s4d_vandermonde_kernel(const double2* log_a, const double2* coef, index_t channels, index_t modes,
                           index_t length, float* k) {
  __shared__ double2 s_log[Threads], s_coef[Threads], s_step[Threads];
  const int tid = static_cast<int>(threadIdx.x);
  const index_t l0 = static_cast<index_t>(blockIdx.x) * (Threads * Runs) + tid;
  for (index_t h = blockIdx.y; h < channels; h += gridDim.y) {
    double acc[Runs];
#pragma unroll
    for (int r = 0; r < Runs; ++r) acc[r] = 0.0;
    const double dl0 = static_cast<double>(l0);
    for (index_t n0 = 0; n0 < modes; n0 += Threads) {
      const int count = modes - n0 < Threads ? static_cast<int>(modes - n0) : Threads;
      __syncthreads();  // the previous tile (or channel) is consumed
      if (tid < count) {
        const double2 la = log_a[h * modes + n0 + tid];
        s_log[tid] = la;
        s_coef[tid] = coef[h * modes + n0 + tid];
        s_step[tid] = cexp(cscale(static_cast<double>(Threads), la));
      }
      __syncthreads();
      for (int j = 0; j < count; ++j) {
        const double2 la = s_log[j], step = s_step[j];
        // Ā^0 = 1 even for Ā = 0 (log Ā = −inf, a bilinear step with ΔA = −2).
        double2 p = l0 == 0 ? s_coef[j] : cmul(s_coef[j], cexp(cscale(dl0, la)));
#pragma unroll
        for (int r = 0; r < Runs; ++r) {
          acc[r] += p.x;
          p = cmul(p, step);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < Runs; ++r) {
      const index_t l = l0 + static_cast<index_t>(r) * Threads;
      if (l < length) k[h * length + l] = static_cast<float>(2.0 * acc[r]);
    }
  }
}

// ---- S4: the generating function at the roots of unity ----------------------------
//
// Solves m·x = rhs (Rank × Rank, destroyed) by Gaussian elimination with partial pivoting.
template <int Rank>
__device__ void small_solve(double2 (&m)[Rank][Rank], double2 (&rhs)[Rank]) {
#pragma unroll
  for (int col = 0; col < Rank; ++col) {
    int piv = col;
    for (int i = col + 1; i < Rank; ++i)
      if (cabs2(m[i][col]) > cabs2(m[piv][col])) piv = i;
    if (piv != col) {
      for (int j = 0; j < Rank; ++j) {
        const double2 t = m[col][j];
        m[col][j] = m[piv][j];
        m[piv][j] = t;
      }
      const double2 t = rhs[col];
      rhs[col] = rhs[piv];
      rhs[piv] = t;
    }
    for (int i = col + 1; i < Rank; ++i) {
      const double2 f = cdiv(m[i][col], m[col][col]);
      for (int j = col; j < Rank; ++j) m[i][j] = csub(m[i][j], cmul(f, m[col][j]));
      rhs[i] = csub(rhs[i], cmul(f, rhs[col]));
    }
  }
#pragma unroll
  for (int i = Rank - 1; i >= 0; --i) {
    double2 acc = rhs[i];
    for (int j = i + 1; j < Rank; ++j) acc = csub(acc, cmul(m[i][j], rhs[j]));
    rhs[i] = cdiv(acc, m[i][i]);
  }
}

// freq[h][j] = Δ·C̃ (αI − βA)⁻¹ B at ζ_j = exp(−2πi j/L), j ≤ L/2, with
// α = 1 − ζ, β = Δ(1 + ζ)/2 (the formula of s4_mixer::kernel). Row factors
// x_0 = C̃, x_{1+r} = conj(Q_r) and column factors y_0 = B, y_{1+r} = P_r are
// (channels, Rank + 1, modes); each Cauchy sum runs over the full state, the
// conjugate half included. Thread per frequency, block per (h, tile of them).
template <int Rank, int Threads>
__global__ void __launch_bounds__(Threads)
    s4_cauchy_kernel(const double2* lambda, const double2* xs, const double2* ys, const double* dt, index_t channels,
                     index_t modes, index_t length, double2* freq) {
  constexpr int F = Rank + 1;
  __shared__ double2 s_lambda[Threads], s_x[F][Threads], s_y[F][Threads];
  const int tid = static_cast<int>(threadIdx.x);
  const index_t bins = length / 2 + 1;
  const index_t j = static_cast<index_t>(blockIdx.x) * Threads + tid;
  double2 zeta;
  if (j == 0) zeta = make_double2(1.0, 0.0);
  else if (2 * j == length) zeta = make_double2(-1.0, 0.0);
  else {
    // θ = 2π j/L: sincospi keeps the argument exact in units of π.
    double s, c;
    sincospi(2.0 * static_cast<double>(j) / static_cast<double>(length), &s, &c);
    zeta = make_double2(c, -s);
  }
  const double2 alpha = make_double2(1.0 - zeta.x, -zeta.y);
  for (index_t h = blockIdx.y; h < channels; h += gridDim.y) {
    const double d = dt[h];
    const double2 beta = cscale(0.5 * d, make_double2(1.0 + zeta.x, zeta.y));
    double2 k[F][F];
#pragma unroll
    for (int a = 0; a < F; ++a)
#pragma unroll
      for (int b = 0; b < F; ++b) k[a][b] = make_double2(0.0, 0.0);
    for (index_t n0 = 0; n0 < modes; n0 += Threads) {
      const int count = modes - n0 < Threads ? static_cast<int>(modes - n0) : Threads;
      __syncthreads();
      if (tid < count) {
        s_lambda[tid] = lambda[h * modes + n0 + tid];
#pragma unroll
        for (int a = 0; a < F; ++a) {
          s_x[a][tid] = xs[(h * F + a) * modes + n0 + tid];
          s_y[a][tid] = ys[(h * F + a) * modes + n0 + tid];
        }
      }
      __syncthreads();
      for (int n = 0; n < count; ++n) {
        const double2 lam = s_lambda[n];
        const double2 one = make_double2(1.0, 0.0);
        const double2 inv = cdiv(one, csub(alpha, cmul(beta, lam)));
        const double2 inv_conj = cdiv(one, csub(alpha, cmul(beta, cconj(lam))));
#pragma unroll
        for (int a = 0; a < F; ++a) {
          const double2 x = s_x[a][n];
#pragma unroll
          for (int b = 0; b < F; ++b) {
            const double2 xy = cmul(x, s_y[b][n]);
            k[a][b] = cadd(k[a][b], cadd(cmul(xy, inv), cmul(cconj(xy), inv_conj)));
          }
        }
      }
    }
    // C̃ (D + βPQ*)⁻¹ B = k00 − β·k0· (I + β k··)⁻¹ k·0 (Woodbury); β = 0 at ζ = −1.
    double2 value = k[0][0];
    if (beta.x != 0.0 || beta.y != 0.0) {
      double2 m[Rank][Rank], rhs[Rank];
#pragma unroll
      for (int i = 0; i < Rank; ++i) {
        rhs[i] = k[i + 1][0];
#pragma unroll
        for (int c = 0; c < Rank; ++c)
          m[i][c] = cadd(make_double2(i == c ? 1.0 : 0.0, 0.0), cmul(beta, k[i + 1][c + 1]));
      }
      small_solve<Rank>(m, rhs);
      double2 corr = make_double2(0.0, 0.0);
#pragma unroll
      for (int c = 0; c < Rank; ++c) corr = cadd(corr, cmul(k[0][c + 1], rhs[c]));
      value = csub(value, cmul(beta, corr));
    }
    if (j < bins) freq[h * bins + j] = cscale(d, value);
  }
}

// out[i] = (float)(src[i]·scale): the unnormalized inverse FFT, divided by L.
template <class Out>
__global__ void scale_to_float_kernel(const double* src, Out* out, index_t count, double scale) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    out[i] = static_cast<Out>(src[i] * scale);
}

// L = 1: the kernel is the single bin's real part (no FFT needed).
template <class Out>
__global__ void first_bin_kernel(const double2* freq, Out* out, index_t channels) {
  for (index_t h = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; h < channels;
       h += static_cast<index_t>(gridDim.x) * blockDim.x)
    out[h] = static_cast<Out>(freq[h].x);
}

// ---- S5: the projections around the scan ------------------------------------------
//
// Both are small GEMMs with a complex factor, which cuBLAS cannot take in the
// layouts at hand (interleaved complex against real, stride 2 in time), so they
// are shared-memory tiled here: a block computes Rows × Cols outputs (rows: states
// or channels, columns: time) over Depth-wide slices of the contraction; thread
// (ty, tx) owns rows ty + 4i, i < Rows/4, at column tx.
inline constexpr int s5_rows = 16, s5_cols = 64, s5_depth = 32, s5_threads = 256;

// bu[b][p][t] = Σ_h B̄[p][h]·x[b][h][t]; grid (time tiles, state tiles, batch).
template <class F>
__global__ void __launch_bounds__(s5_threads)
    s5_input_kernel(const complex<F>* b_bar, const F* x, complex<float>* bu, index_t states,
                    index_t channels, index_t length) {
  constexpr int per = s5_rows / 4;
  __shared__ float2 s_b[s5_rows][s5_depth];
  __shared__ float s_x[s5_depth][s5_cols];
  const int tid = static_cast<int>(threadIdx.x), tx = tid % s5_cols, ty = tid / s5_cols;
  const index_t t0 = static_cast<index_t>(blockIdx.x) * s5_cols, p0 = static_cast<index_t>(blockIdx.y) * s5_rows;
  const index_t batch = blockIdx.z;
  const float* xb = x + batch * channels * length;
  float2 acc[per];
#pragma unroll
  for (int i = 0; i < per; ++i) acc[i] = make_float2(0.f, 0.f);
  for (index_t k0 = 0; k0 < channels; k0 += s5_depth) {
    __syncthreads();
    for (int i = tid; i < s5_rows * s5_depth; i += s5_threads) {
      const int r = i / s5_depth, c = i % s5_depth;
      const index_t p = p0 + r, h = k0 + c;
      if (p < states && h < channels) {
        const complex<float> v = b_bar[p * channels + h];
        s_b[r][c] = make_float2(v.real(), v.imag());
      } else {
        s_b[r][c] = make_float2(0.f, 0.f);
      }
    }
    for (int i = tid; i < s5_depth * s5_cols; i += s5_threads) {
      const int r = i / s5_cols, c = i % s5_cols;
      const index_t h = k0 + r, t = t0 + c;
      s_x[r][c] = h < channels && t < length ? xb[h * length + t] : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int c = 0; c < s5_depth; ++c) {
      const float xv = s_x[c][tx];
#pragma unroll
      for (int i = 0; i < per; ++i) {
        const float2 bv = s_b[ty + 4 * i][c];
        acc[i].x = fmaf(bv.x, xv, acc[i].x);
        acc[i].y = fmaf(bv.y, xv, acc[i].y);
      }
    }
  }
  const index_t t = t0 + tx;
#pragma unroll
  for (int i = 0; i < per; ++i) {
    const index_t p = p0 + ty + 4 * i;
    if (p < states && t < length) bu[(batch * states + p) * length + t] = complex<float>(acc[i].x, acc[i].y);
  }
}

// y[b][o][t] = f·Re Σ_p C̃[o][p]·h[b][p][t] + D[o]·x[b][o][t]; grid (time tiles,
// channel tiles, batch). skip may be null.
template <class F>
__global__ void __launch_bounds__(s5_threads)
    s5_output_kernel(const complex<F>* c_tilde, const complex<F>* h, const F* skip, const F* x,
                     F* y, index_t states, index_t channels, index_t length, F f) {
  constexpr int per = s5_rows / 4;
  __shared__ float2 s_c[s5_rows][s5_depth];
  __shared__ float2 s_h[s5_depth][s5_cols];
  const int tid = static_cast<int>(threadIdx.x), tx = tid % s5_cols, ty = tid / s5_cols;
  const index_t t0 = static_cast<index_t>(blockIdx.x) * s5_cols, o0 = static_cast<index_t>(blockIdx.y) * s5_rows;
  const index_t batch = blockIdx.z;
  const complex<float>* hb = h + batch * states * length;
  float acc[per];
#pragma unroll
  for (int i = 0; i < per; ++i) acc[i] = 0.f;
  for (index_t k0 = 0; k0 < states; k0 += s5_depth) {
    __syncthreads();
    for (int i = tid; i < s5_rows * s5_depth; i += s5_threads) {
      const int r = i / s5_depth, c = i % s5_depth;
      const index_t o = o0 + r, p = k0 + c;
      if (o < channels && p < states) {
        const complex<float> v = c_tilde[o * states + p];
        s_c[r][c] = make_float2(v.real(), v.imag());
      } else {
        s_c[r][c] = make_float2(0.f, 0.f);
      }
    }
    for (int i = tid; i < s5_depth * s5_cols; i += s5_threads) {
      const int r = i / s5_cols, c = i % s5_cols;
      const index_t p = k0 + r, t = t0 + c;
      if (p < states && t < length) {
        const complex<float> v = hb[p * length + t];
        s_h[r][c] = make_float2(v.real(), v.imag());
      } else {
        s_h[r][c] = make_float2(0.f, 0.f);
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int c = 0; c < s5_depth; ++c) {
      const float2 hv = s_h[c][tx];
#pragma unroll
      for (int i = 0; i < per; ++i) {
        const float2 cv = s_c[ty + 4 * i][c];
        acc[i] = fmaf(cv.x, hv.x, fmaf(-cv.y, hv.y, acc[i]));
      }
    }
  }
  const index_t t = t0 + tx;
#pragma unroll
  for (int i = 0; i < per; ++i) {
    const index_t o = o0 + ty + 4 * i;
    if (o < channels && t < length) {
      const index_t at = (batch * channels + o) * length + t;
      y[at] = f * acc[i] + (skip ? skip[o] * x[at] : 0.f);
    }
  }
}

// a[r][t] = Λ̄[r % states] for every row r of the batch: the scan's (constant) multipliers.
template <class F>
__global__ void s5_fill_decay_kernel(const complex<F>* lambda_bar, complex<F>* a, index_t rows,
                                            index_t states, index_t length) {
  const index_t total = rows * length;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    a[i] = lambda_bar[(i / length) % states];
}

}  // namespace mixlens::gpu::detail
