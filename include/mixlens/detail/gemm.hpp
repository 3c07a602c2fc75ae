// C = op(A)·op(B) + beta·C in row-major storage on the host: through CBLAS
// (OpenBLAS, Debian libopenblas-dev) where mixlens was configured with it
// (MIXLENS_HAS_CBLAS), else with dot products of contiguous rows. The models'
// projections, the rollout's L × L products and the S6 mixer's projections all
// come here.
#pragma once

#include <type_traits>
#include <vector>

#include "mixlens/config.hpp"
#include "mixlens/detail/linear.hpp"
#include "mixlens/tensor.hpp"

#if defined(MIXLENS_HAS_CBLAS)
#include <cblas.h>
#endif

namespace mixlens::detail {

// Whether the products run on a BLAS.
inline constexpr bool has_cblas =
#if defined(MIXLENS_HAS_CBLAS)
    true;
#else
    false;
#endif

// C (m × n, row stride ldc) = op(A) · op(B) + beta·C; op(A) is m × k (A stored
// k × m, row stride lda, when trans_a), op(B) k × n (B stored n × k when
// trans_b). beta = 0 ignores C's old contents (NaN included).
template <class T>
void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, const T* a, index_t lda, const T* b,
          index_t ldb, T beta, T* c, index_t ldc) {
  if (m <= 0 || n <= 0) return;
#if defined(MIXLENS_HAS_CBLAS)
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    // BLAS takes 32-bit sizes: larger products fall through to the loops.
    constexpr index_t max32 = 0x7fffffff;
    if (m <= max32 && n <= max32 && k <= max32 && lda <= max32 && ldb <= max32 && ldc <= max32) {
      if (k == 0) {  // BLAS would scale C by beta, where beta = 0 must also clear NaN
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
        return;
      }
      const auto ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
      const auto I = [](index_t v) { return static_cast<int>(v); };
      if constexpr (std::is_same_v<T, float>)
        cblas_sgemm(CblasRowMajor, ta, tb, I(m), I(n), I(k), 1.0f, a, I(lda), b, I(ldb), beta, c, I(ldc));
      else
        cblas_dgemm(CblasRowMajor, ta, tb, I(m), I(n), I(k), 1.0, a, I(lda), b, I(ldb), beta, c, I(ldc));
      return;
    }
  }
#endif
  // Rows of op(A) and columns of op(B) made contiguous, then dot products.
  std::vector<T> ta, tb;
  if (trans_a) {
    ta.resize(static_cast<std::size_t>(m * k));
    for (index_t p = 0; p < k; ++p)
      for (index_t i = 0; i < m; ++i) ta[static_cast<std::size_t>(i * k + p)] = a[p * lda + i];
    a = ta.data(), lda = k;
  }
  if (!trans_b) {
    tb.resize(static_cast<std::size_t>(n * k));
    for (index_t p = 0; p < k; ++p)
      for (index_t j = 0; j < n; ++j) tb[static_cast<std::size_t>(j * k + p)] = b[p * ldb + j];
    b = tb.data(), ldb = k;
  }
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      const T v = dot(a + i * lda, b + j * ldb, k);
      c[i * ldc + j] = beta == T(0) ? v : beta * c[i * ldc + j] + v;
    }
}

// y (rows × out, row-major) = x (rows × in, row stride ldx) · wᵀ + bias, w (out × in)
// as a PyTorch Linear stores it.
template <class T>
void linear(const T* x, index_t ldx, index_t rows, const matrix<T>& w, const std::vector<T>& bias, T* y) {
  const index_t out = w.extent(0), in = w.extent(1);
  gemm(false, true, rows, out, in, x, ldx, w.data(), in, T(0), y, out);
  if (!bias.empty())
    for (index_t r = 0; r < rows; ++r)
      for (index_t o = 0; o < out; ++o) y[r * out + o] += bias[static_cast<std::size_t>(o)];
}

}  // namespace mixlens::detail
