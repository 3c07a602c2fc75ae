// Kernel level: hidden attention α of S6 (paper eq. 12),
//   α[d][i][j] = Σ_n C_i[n] · exp(A_n (S_i − S_j)) · Δ_j B_j[n],  j ≤ i,
// with S the inclusive cumulative sum of Δ, kept in double so that differences
// of far-apart sums stay exact to fp32; no factor exp(±S) is ever formed alone.
//
// Full matrices: a block owns a 64-row tile of one channel and walks the column
// tiles. Strictly lower tiles are rank-N products with every exponent ≤ 0:
//   α[i][j] = Σ_n (C_i e^{A(S_i−S_r)}) · e^{A(S_r−S_e)} · (Δ_j B_j e^{A(S_e−S_j)})
// (r the first row of the row tile, e the last column of the column tile), so a
// tile costs N exps per row and column instead of N per element; diagonal tiles
// use the direct formula; tiles above the diagonal are zeros.
#pragma once

#include <cub/block/block_scan.cuh>
#include <cuda_runtime.h>

#include "mixlens/gpu/detail/min_max.cuh"
#include "mixlens/gpu/detail/numeric.cuh"
#include "mixlens/tensor.hpp"

namespace mixlens::gpu::detail {

// Inclusive cumulative sums of Δ in double, one block per (batch, channel) row.
template <int Threads>
__global__ void __launch_bounds__(Threads) cumsum_kernel(const float* delta, double* s, index_t length) {
  using block_scan = cub::BlockScan<double, Threads>;
  __shared__ typename block_scan::TempStorage temp;
  const index_t base = static_cast<index_t>(blockIdx.x) * length;
  double carry = 0;
  for (index_t t0 = 0; t0 < length; t0 += Threads) {
    const index_t t = t0 + threadIdx.x;
    double x = t < length ? static_cast<double>(delta[base + t]) : 0.0;
    double total;
    block_scan(temp).InclusiveSum(x, x, total);
    if (t < length) s[base + t] = carry + x;
    carry += total;
    __syncthreads();
  }
}

template <class State>
struct alpha_math;

template <>
struct alpha_math<float> {
  __device__ static float exp_scaled(float a, float x) { return __expf(a * x); }
  __device__ static float out(float x) { return x; }
};

template <>
struct alpha_math<complex<float>> {
  __device__ static complex<float> exp_scaled(complex<float> a, float x) {
    const float m = __expf(a.real() * x);
    float s, c;
    sincosf(a.imag() * x, &s, &c);
    return {m * c, m * s};
  }
  __device__ static float out(complex<float> x) { return 2.0f * x.real(); }  // conjugate partner implied
};

template <class Out>
__device__ __forceinline__ void store4(Out* p, float a, float b, float c, float d) {
  if constexpr (std::is_same_v<Out, float>) {
    __stcs(reinterpret_cast<float4*>(p), make_float4(a, b, c, d));  // streaming: written once, never reread
  } else {
    Out v[4] = {from_float<Out>(a), from_float<Out>(b), from_float<Out>(c), from_float<Out>(d)};
    uint2 w;
    std::memcpy(&w, v, sizeof(w));
    __stcs(reinterpret_cast<uint2*>(p), w);
  }
}

inline constexpr int alpha_tile = 64;

// Shared memory of the full and aggregate kernels (alpha_stage below).
template <class State>
constexpr std::size_t alpha_smem_bytes(index_t n) {
  return 2 * alpha_tile * sizeof(double) + static_cast<std::size_t>(4 * n * alpha_tile + 2 * n) * sizeof(State);
}

// ---- one 64 × 64 tile, from staged shared-memory arrays ----------------------------
// Thread (tx, ty) of 256 owns the 4 × 4 micro-tile rows ty·4…, columns tx·4….

// The rows' C (raw and scaled to the tile's first row r: C_i e^{A(S_i − S_r)}),
// [n][i], zero past L; s_row holds the rows' cumulative sums.
template <class State, class W>
__device__ __forceinline__ void stage_row_tile(State* c_raw, State* c_scaled, const State* a_s, const double* s_row,
                                               const W* cg, index_t i0, index_t L, int N, int tid) {
  using math = alpha_math<State>;
  constexpr int T = alpha_tile;
  for (index_t k = tid; k < N * T; k += 256) {
    const index_t n = k / T, i = k % T;
    const State cv = i0 + i < L ? State(cg[n * L + i0 + i]) : State(0);
    c_raw[k] = cv;
    c_scaled[k] = cv * math::exp_scaled(a_s[n], static_cast<float>(s_row[i] - s_row[0]));
  }
}

// A strictly lower column tile (full: j0 + T ≤ i0): Δ_j B_j e^{A(S_e − S_j)}
// ([n][j]) and the middle factors e^{A(S_r − S_e)}, e the tile's last column.
template <class State, class W>
__device__ __forceinline__ void stage_lower_columns(State* b_scaled, State* mid, const State* a_s, const double* s_row,
                                                    const double* srow, const float* drow, const W* bg, index_t j0,
                                                    index_t L, int N, int tid) {
  using math = alpha_math<State>;
  constexpr int T = alpha_tile;
  const double s_end = srow[j0 + T - 1];
  for (int k = tid; k < N * T; k += 256) {
    const int n = k / T, j = k % T;
    b_scaled[k] = State(bg[n * L + j0 + j]) * drow[j0 + j] *
                  math::exp_scaled(a_s[n], static_cast<float>(s_end - srow[j0 + j]));
  }
  for (index_t n = tid; n < N; n += 256) mid[n] = math::exp_scaled(a_s[n], static_cast<float>(s_row[0] - s_end));
}

// The diagonal column tile: Δ_j B_j ([n][j], zero past L) and its sums.
template <class State, class W>
__device__ __forceinline__ void stage_diagonal_columns(State* b_raw, double* s_col, const double* s_row,
                                                       const float* drow, const W* bg, index_t j0, index_t L, int N,
                                                       int tid) {
  constexpr int T = alpha_tile;
  for (index_t k = tid; k < N * T; k += 256) {
    const index_t n = k / T, j = k % T;
    b_raw[k] = j0 + j < L ? State(bg[n * L + j0 + j]) * drow[j0 + j] : State(0);
  }
  for (int j = tid; j < T; j += 256) s_col[j] = s_row[j];
}

// A strictly lower tile: the rank-N product of the staged factors.
template <class State>
__device__ __forceinline__ void lower_tile(float (&acc)[4][4], const State* c_scaled, const State* b_scaled,
                                           const State* mid, int N, int tx, int ty) {
  using math = alpha_math<State>;
  constexpr int T = alpha_tile;
  State accs[4][4];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) accs[r][q] = State(0);
#pragma unroll 16
  for (int n = 0; n < N; ++n) {
    const State m = mid[n];
    State cr[4], bq[4];
    if constexpr (std::is_same_v<State, float>) {  // 16-byte shared loads
      const float4 c4 = *reinterpret_cast<const float4*>(&c_scaled[n * T + ty * 4]);
      const float4 b4 = *reinterpret_cast<const float4*>(&b_scaled[n * T + tx * 4]);
      cr[0] = c4.x * m, cr[1] = c4.y * m, cr[2] = c4.z * m, cr[3] = c4.w * m;
      bq[0] = b4.x, bq[1] = b4.y, bq[2] = b4.z, bq[3] = b4.w;
    } else {
#pragma unroll
      for (int r = 0; r < 4; ++r) cr[r] = c_scaled[n * T + ty * 4 + r] * m;
#pragma unroll
      for (int q = 0; q < 4; ++q) bq[q] = b_scaled[n * T + tx * 4 + q];
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) accs[r][q] += cr[r] * bq[q];
  }
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[r][q] = math::out(accs[r][q]);
}

// The diagonal tile, j ≤ i only (zeros above).
template <class State>
__device__ __forceinline__ void diagonal_tile(float (&acc)[4][4], const State* c_raw, const State* b_raw,
                                              const State* a_s, const double* s_row, const double* s_col, int N,
                                              int tx, int ty) {
  using math = alpha_math<State>;
  constexpr int T = alpha_tile;
  if (tx < ty) {
    // Micro-tile strictly below the diagonal: pivot m = its first row, so
    // e^{A(S_i−S_j)} = e^{A(S_i−S_m)}·e^{A(S_m−S_j)}, both exponents ≤ 0:
    // 8 exps per state instead of 16.
    const int m = ty * 4;
    State sums[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) sums[r][q] = State(0);
    float gr[4], gq[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) gr[r] = static_cast<float>(s_row[m + r] - s_row[m]);
#pragma unroll
    for (int q = 0; q < 4; ++q) gq[q] = static_cast<float>(s_row[m] - s_col[tx * 4 + q]);
#pragma unroll 4
    for (int n = 0; n < N; ++n) {
      State cr[4], bq[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) cr[r] = c_raw[n * T + m + r] * math::exp_scaled(a_s[n], gr[r]);
#pragma unroll
      for (int q = 0; q < 4; ++q) bq[q] = b_raw[n * T + tx * 4 + q] * math::exp_scaled(a_s[n], gq[q]);
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) sums[r][q] += cr[r] * bq[q];
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[r][q] = math::out(sums[r][q]);
  } else {
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int i = ty * 4 + r, j = tx * 4 + q;
        State sum(0);
        if (j <= i) {
          const float gap = static_cast<float>(s_row[i] - s_col[j]);
#pragma unroll 4
          for (int n = 0; n < N; ++n) sum += c_raw[n * T + i] * math::exp_scaled(a_s[n], gap) * b_raw[n * T + j];
        }
        acc[r][q] = math::out(sum);
      }
  }
}

// The staged arrays of a block in dynamic shared memory: the cumulative sums of
// the row tile and the diagonal column tile, then [n][position] arrays of the
// row tile's C (raw and scaled), the column tile's Δ·B (raw and scaled), A and
// the per-tile middle factors.
template <class State>
struct alpha_stage {
  double *s_row, *s_col;
  State *c_raw, *c_scaled, *b_raw, *b_scaled, *a_s, *mid;

  __device__ alpha_stage(unsigned char* smem, int N) {
    constexpr int T = alpha_tile;
    s_row = reinterpret_cast<double*>(smem);
    s_col = s_row + T;
    c_raw = reinterpret_cast<State*>(s_col + T);
    c_scaled = c_raw + N * T;
    b_raw = c_scaled + N * T;
    b_scaled = b_raw + N * T;
    a_s = b_scaled + N * T;
    mid = a_s + N;
  }
};

// Fixed: the state size as a compile-time constant (16, Mamba's), so the
// per-state loops unroll with 32-bit shared-memory offsets; 0: N at run time.
template <int Fixed, class State, class W, class Out>
__global__ void __launch_bounds__(256, 3) alpha_full_kernel(const float* delta, const double* cums, const State* a,
                                                         const W* b, const W* c, Out* out, index_t D, index_t L,
                                                         index_t N_, index_t G) {
  const int N = Fixed > 0 ? Fixed : static_cast<int>(N_);
  constexpr int T = alpha_tile;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const alpha_stage<State> st(smem_raw, N);

  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const index_t tiles = (L + T - 1) / T;
  const index_t row_tile = static_cast<index_t>(blockIdx.x) % tiles;
  const index_t bd = static_cast<index_t>(blockIdx.x) / tiles;  // batch·D + d
  const index_t bi = bd / D, d = bd % D, g = d / (D / G);
  const index_t i0 = row_tile * T;
  const float* drow = delta + bd * L;
  const double* srow = cums + bd * L;
  const W* bg = b + (bi * G + g) * N * L;
  const W* cg = c + (bi * G + g) * N * L;
  Out* orow = out + (bd * L) * L;  // this channel's L×L block (64-bit offsets)

  for (index_t n = tid; n < N; n += 256) st.a_s[n] = a[d * N + n];
  for (int i = tid; i < T; i += 256) st.s_row[i] = i0 + i < L ? srow[i0 + i] : srow[L - 1];
  __syncthreads();
  stage_row_tile(st.c_raw, st.c_scaled, st.a_s, st.s_row, cg, i0, L, N, tid);

  const bool vec = (L % 4) == 0;
  for (index_t jt = 0; jt < tiles; ++jt) {
    const index_t j0 = jt * T;
    float acc[4][4];
    if (jt < row_tile) {  // strictly lower: factorized
      __syncthreads();    // the previous tile's b_scaled is consumed
      stage_lower_columns(st.b_scaled, st.mid, st.a_s, st.s_row, srow, drow, bg, j0, L, N, tid);
      __syncthreads();
      lower_tile(acc, st.c_scaled, st.b_scaled, st.mid, N, tx, ty);
    } else if (jt == row_tile) {  // diagonal tile: direct, j ≤ i only
      __syncthreads();
      stage_diagonal_columns(st.b_raw, st.s_col, st.s_row, drow, bg, j0, L, N, tid);
      __syncthreads();
      diagonal_tile(acc, st.c_raw, st.b_raw, st.a_s, st.s_row, st.s_col, N, tx, ty);
    } else {  // above the diagonal
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[r][q] = 0.0f;
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const index_t i = i0 + ty * 4 + r, j = j0 + tx * 4;
      if (i >= L) continue;
      Out* p = orow + i * L + j;
      if (vec && j + 3 < L) {
        store4(p, acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
      } else {
#pragma unroll
        for (int q = 0; q < 4; ++q)
          if (j + q < L) p[q] = from_float<Out>(acc[r][q]);
      }
    }
  }
}

// The channel aggregate of α without the D × L × L tensor: a block owns one
// tile (row tile ≥ column tile, the pair decoded from blockIdx.x) and walks the
// channels [blockIdx.y·per_split, …) of one sequence, forming the tile per
// channel as alpha_full_kernel does (then D on the diagonal and the gate on the
// rows, as the view's block has them) and reducing in registers: acc (L × L,
// double) += Σ_d f(value) (f: identity, |·|, max(·, 0) for Reduction 0, 1, 2),
// minmax {min, max, NaN count} over every entry of the channels' blocks —
// the zeros above the diagonal included, as the tensor has them.
template <int Fixed, int Reduction, class State, class W>
__global__ void __launch_bounds__(256, 2)
    alpha_aggregate_kernel(const float* delta, const double* cums, const State* a, const W* b, const W* c,
                           const float* skip, const float* gate, double* map, float* minmax, index_t D, index_t L,
                           index_t N_, index_t G, index_t per_split) {
  const int N = Fixed > 0 ? Fixed : static_cast<int>(N_);
  constexpr int T = alpha_tile;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const alpha_stage<State> st(smem_raw, N);

  const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
  // Pair p = row_tile·(row_tile + 1)/2 + column tile.
  const index_t p = blockIdx.x;
  index_t row_tile = static_cast<index_t>((sqrt(8.0 * double(p) + 1.0) - 1.0) / 2.0);
  while (row_tile * (row_tile + 1) / 2 > p) --row_tile;
  while ((row_tile + 1) * (row_tile + 2) / 2 <= p) ++row_tile;
  const index_t col_tile = p - row_tile * (row_tile + 1) / 2;
  const index_t i0 = row_tile * T, j0 = col_tile * T;
  const bool diagonal = col_tile == row_tile;
  const index_t d_begin = static_cast<index_t>(blockIdx.y) * per_split, d_end = d_begin + per_split < D ? d_begin + per_split : D;

  double sum[4][4];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) sum[r][q] = 0.0;
  float lo = INFINITY, hi = -INFINITY, nans = 0.0f;

  for (index_t d = d_begin; d < d_end; ++d) {
    const index_t g = d / (D / G);
    const float* drow = delta + d * L;
    const double* srow = cums + d * L;
    const W* bg = b + g * N * L;
    const W* cg = c + g * N * L;
    __syncthreads();  // the previous channel's staged arrays are consumed
    for (index_t n = tid; n < N; n += 256) st.a_s[n] = a[d * N + n];
    for (int i = tid; i < T; i += 256) st.s_row[i] = i0 + i < L ? srow[i0 + i] : srow[L - 1];
    __syncthreads();
    stage_row_tile(st.c_raw, st.c_scaled, st.a_s, st.s_row, cg, i0, L, N, tid);
    if (diagonal) stage_diagonal_columns(st.b_raw, st.s_col, st.s_row, drow, bg, j0, L, N, tid);
    else stage_lower_columns(st.b_scaled, st.mid, st.a_s, st.s_row, srow, drow, bg, j0, L, N, tid);
    __syncthreads();
    float acc[4][4];
    if (diagonal) diagonal_tile(acc, st.c_raw, st.b_raw, st.a_s, st.s_row, st.s_col, N, tx, ty);
    else lower_tile(acc, st.c_scaled, st.b_scaled, st.mid, N, tx, ty);
    const float dskip = skip ? skip[d] : 0.0f;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const index_t i = i0 + ty * 4 + r;
      const float gi = gate && i < L ? gate[d * L + i] : 1.0f;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const index_t j = j0 + tx * 4 + q;
        if (i >= L || j >= L) continue;
        float v = j <= i ? acc[r][q] : 0.0f;
        if (j == i) v += dskip;
        if (j <= i) v *= gi;
        if (isnan(v)) nans += 1.0f;
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
        sum[r][q] += Reduction == 0 ? double(v) : Reduction == 1 ? fabs(double(v)) : (v > 0 ? double(v) : 0.0 * double(v));
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const index_t i = i0 + ty * 4 + r;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const index_t j = j0 + tx * 4 + q;
      if (i < L && j <= i) atomicAdd(map + i * L + j, sum[r][q]);  // zeros above the diagonal stay as they are
    }
  }
  if (minmax) merge_min_max(minmax, lo, hi, nans);
}

// The signed channel mean's strictly lower tiles as one product per tile pair.
// Off the diagonal, with r the row tile's first row,
//   Σ_d g_d(i)·α_d[i][j] = Σ_{(d,n)} [g_d(i) C_i[n] e^{A_dn (S_di − S_dr)}] · [Δ_dj B_j[n] e^{A_dn (S_dr − S_dj)}],
// a sum over k = (d, n) of products of two factors whose exponents are ≤ 0
// (g the gate, 1 without one; D sits on the diagonal only). A block owns one
// T × T pair and the channels [blockIdx.y·per_split, …); it stages `chunk`
// channels' factors at once (k = 64 for N = 16) and sums them in fp32
// registers, 4 × 4 entries per thread, then into double: 16 FMAs per entry and
// channel, no per-channel epilogue (alpha_aggregate_kernel's cost) and no
// tensor. T = 64: block x is a pair of 64-row tiles (column < row); T = 32 and
// 16: block x is the lower-left quadrant of the diagonal tile x of size 2T, so
// that the three levels leave only 16 × 16 diagonal tiles (alpha_mean_diagonal_kernel).
// map (L × L, double) += the sums of the pair's entries.
template <int Fixed, int T, class W>
__global__ void __launch_bounds__((T / 4) * (T / 4), T == 64 ? 2 : 8)
    alpha_mean_lower_kernel(const float* delta, const double* cums, const float* a, const W* b, const W* c,
                            const float* gate, double* map, index_t D, index_t L, index_t N_, index_t G,
                            index_t per_split, int chunk_) {
  constexpr int Threads = (T / 4) * (T / 4);
  const int N = Fixed > 0 ? Fixed : static_cast<int>(N_);
  const int chunk = Fixed > 0 ? (64 / Fixed > 0 ? 64 / Fixed : 1) : chunk_, K = chunk * N;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* cs = reinterpret_cast<float*>(smem_raw);  // [k][i]: the rows' factors
  float* bs = cs + K * T;                          // [k][j]: the columns' factors

  const int tid = static_cast<int>(threadIdx.x), tx = tid % (T / 4), ty = tid / (T / 4);
  const index_t p = blockIdx.x;
  index_t i0 = 0, j0 = 0;  // j0 + T ≤ i0 < L
  if constexpr (T == 64) {  // strictly lower pair p = row_tile·(row_tile − 1)/2 + column tile
    index_t row_tile = static_cast<index_t>((sqrt(8.0 * double(p) + 1.0) + 1.0) / 2.0);
    while (row_tile * (row_tile - 1) / 2 > p) --row_tile;
    while ((row_tile + 1) * row_tile / 2 <= p) ++row_tile;
    i0 = row_tile * T, j0 = (p - row_tile * (row_tile - 1) / 2) * T;
  } else {
    j0 = p * 2 * T, i0 = j0 + T;
    if (i0 >= L) return;  // the last diagonal tile has no lower half
  }
  const index_t d_begin = static_cast<index_t>(blockIdx.y) * per_split;
  const index_t d_end = d_begin + per_split < D ? d_begin + per_split : D, per_group = D / G;

  double sum[4][4];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int q = 0; q < 4; ++q) sum[r][q] = 0.0;

  for (index_t d0 = d_begin; d0 < d_end; d0 += chunk) {
    __syncthreads();  // the previous chunk's factors are consumed
    // Thread tid stages position tid % T of states n ≡ tid / T (mod Threads / T)
    // of every channel of the chunk: the channel's loads once, two exps per n.
    const int pos = tid % T;
    const index_t i = i0 + pos, j = j0 + pos;
    for (int ch = 0; ch < chunk; ++ch) {
      const index_t d = d0 + ch;
      float* crow = cs + ch * N * T + pos;
      float* brow = bs + ch * N * T + pos;
      if (d >= d_end) {
        for (int n = tid / T; n < N; n += Threads / T) crow[n * T] = 0.0f, brow[n * T] = 0.0f;
        continue;
      }
      const double* s = cums + d * L;
      const double sr = s[i0];
      const bool row = i < L;
      const float xj = static_cast<float>(sr - s[j]), dj = delta[d * L + j];
      const float xi = row ? static_cast<float>(s[i] - sr) : 0.0f, gi = row && gate ? gate[d * L + i] : 1.0f;
      const W* bg = b + (d / per_group) * N * L;
      const W* cg = c + (d / per_group) * N * L;
      for (int n = tid / T; n < N; n += Threads / T) {
        const float an = a[d * N + n];
        brow[n * T] = float(bg[n * L + j]) * dj * __expf(an * xj);
        crow[n * T] = row ? float(cg[n * L + i]) * __expf(an * xi) * gi : 0.0f;
      }
    }
    __syncthreads();
    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[r][q] = 0.0f;
#pragma unroll 16
    for (int k = 0; k < K; ++k) {
      const float4 c4 = *reinterpret_cast<const float4*>(&cs[k * T + ty * 4]);
      const float4 b4 = *reinterpret_cast<const float4*>(&bs[k * T + tx * 4]);
      const float cr[4] = {c4.x, c4.y, c4.z, c4.w}, bq[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[r][q] = fmaf(cr[r], bq[q], acc[r][q]);
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int q = 0; q < 4; ++q) sum[r][q] += double(acc[r][q]);
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const index_t i = i0 + ty * 4 + r;
    if (i >= L) continue;
#pragma unroll
    for (int q = 0; q < 4; ++q) atomicAdd(map + i * L + j0 + tx * 4 + q, sum[r][q]);
  }
}

// The 16 × 16 diagonal tiles of the signed channel mean (what the three levels
// of alpha_mean_lower_kernel leave): block x owns diagonal tile x and the
// channels [blockIdx.y·per_split, …), thread (i, j) one entry j ≤ i, summed
// directly, Σ_n C_i[n] e^{A_n(S_i − S_j)} Δ_j B_j[n], then D and the gate.
template <int Fixed, class W>
__global__ void __launch_bounds__(256)
    alpha_mean_diagonal_kernel(const float* delta, const double* cums, const float* a, const W* b, const W* c,
                               const float* skip, const float* gate, double* map, index_t D, index_t L, index_t N_,
                               index_t G, index_t per_split) {
  constexpr int T = 16;
  const int N = Fixed > 0 ? Fixed : static_cast<int>(N_);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  double* s_pos = reinterpret_cast<double*>(smem_raw);  // [position]: S
  float* c_s = reinterpret_cast<float*>(s_pos + T);     // [n][position]: C
  float* b_s = c_s + N * T;                             // [n][position]: Δ·B
  float* a_s = b_s + N * T;                             // [n]
  const int tid = static_cast<int>(threadIdx.x), il = tid / T, jl = tid % T;
  const index_t i0 = static_cast<index_t>(blockIdx.x) * T, i = i0 + il, j = i0 + jl;
  const index_t d_begin = static_cast<index_t>(blockIdx.y) * per_split;
  const index_t d_end = d_begin + per_split < D ? d_begin + per_split : D, per_group = D / G;
  const bool mine = jl <= il && i < L;
  double sum = 0.0;
  for (index_t d = d_begin; d < d_end; ++d) {
    const W* bg = b + (d / per_group) * N * L;
    const W* cg = c + (d / per_group) * N * L;
    __syncthreads();  // the previous channel's values are consumed
    for (int e = tid; e < N * T; e += 256) {
      const int n = e / T, q = e % T;
      const index_t t = i0 + q;
      c_s[e] = t < L ? float(cg[n * L + t]) : 0.0f;
      b_s[e] = t < L ? float(bg[n * L + t]) * delta[d * L + t] : 0.0f;
    }
    for (int n = tid; n < N; n += 256) a_s[n] = a[d * N + n];
    if (tid < T) s_pos[tid] = i0 + tid < L ? cums[d * L + i0 + tid] : 0.0;
    __syncthreads();
    if (!mine) continue;
    const float gap = static_cast<float>(s_pos[il] - s_pos[jl]);
    float v = 0.0f;
    for (int n = 0; n < N; ++n) v = fmaf(c_s[n * T + il] * __expf(a_s[n] * gap), b_s[n * T + jl], v);
    if (il == jl && skip) v += skip[d];
    if (gate) v *= gate[d * L + i];
    sum += double(v);
  }
  if (mine) atomicAdd(map + i * L + j, sum);
}

// Selected rows: out[(bd·R + r)·L + j] = α[d][rows[r]][j] (or, per state, each
// term n of the sum on its own row block (bd·N + n)·R + r). One block per
// (batch·channel, row); N exps per element, coalesced over j.
template <bool PerState, class State, class W, class Out>
__global__ void __launch_bounds__(256) alpha_rows_kernel(const float* delta, const double* cums, const State* a,
                                                         const W* b, const W* c, const index_t* rows, index_t R,
                                                         Out* out, index_t D, index_t L, index_t N, index_t G) {
  using math = alpha_math<State>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  State* ct = reinterpret_cast<State*>(smem_raw);  // C_t[n]
  State* as = ct + N;
  const index_t bd = static_cast<index_t>(blockIdx.x) / R, r = static_cast<index_t>(blockIdx.x) % R;
  const index_t bi = bd / D, d = bd % D, g = d / (D / G);
  const index_t t = rows[r];
  const W* bg = b + (bi * G + g) * N * L;
  const W* cg = c + (bi * G + g) * N * L;
  for (index_t n = threadIdx.x; n < N; n += blockDim.x) {
    ct[n] = State(cg[n * L + t]);
    as[n] = a[d * N + n];
  }
  __syncthreads();
  const double st = cums[bd * L + t];
  for (index_t j = threadIdx.x; j < L; j += blockDim.x) {
    const bool live = j <= t;
    const float gap = live ? static_cast<float>(st - cums[bd * L + j]) : 0.0f;
    const float dj = delta[bd * L + j];
    if constexpr (PerState) {
      for (index_t n = 0; n < N; ++n) {
        const float v = live ? math::out(ct[n] * math::exp_scaled(as[n], gap) * (State(bg[n * L + j]) * dj)) : 0.0f;
        out[((bd * N + n) * R + r) * L + j] = from_float<Out>(v);
      }
    } else {
      State sum(0);
      if (live)
        for (index_t n = 0; n < N; ++n) sum += ct[n] * math::exp_scaled(as[n], gap) * State(bg[n * L + j]);
      out[(bd * R + r) * L + j] = from_float<Out>(live ? math::out(sum) * dj : 0.0f);
    }
  }
}

}  // namespace mixlens::gpu::detail
