// Test oracles shared by every operator test: random inputs, error measures and
// the algebraic checks every linear operator must pass.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mixlens/linear_operator.hpp"

namespace mixlens::testing {

template <class T>
matrix<T> random_matrix(index_t rows, index_t cols, std::uint64_t seed, T scale = T(1)) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  matrix<T> m(rows, cols);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(scale * dist(gen));
  return m;
}

template <class T>
std::vector<T> random_vector(index_t n, std::uint64_t seed, double lo, double hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = static_cast<T>(dist(gen));
  return v;
}

// max |a − b| / max |b|: relative to the reference's scale, robust to zeros.
// Infinite when either side holds a NaN or an infinity, so that no tolerance
// check can pass on them (std::max would drop a NaN).
template <class A, class B>
double relative_error(const A* a, const B* b, index_t n) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(std::abs(a[i] - b[i])), m = static_cast<double>(std::abs(b[i]));
    if (!std::isfinite(d) || !std::isfinite(m)) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, d);
    scale = std::max(scale, m);
  }
  return scale == 0 ? diff : diff / scale;
}

template <class T>
double relative_error(const matrix<T>& a, const matrix<T>& b) {
  BOOST_REQUIRE_EQUAL(a.extent(0), b.extent(0));
  BOOST_REQUIRE_EQUAL(a.extent(1), b.extent(1));
  return relative_error(a.data(), b.data(), a.size());
}

// Default tolerances of the issue: 1e-12 in double, 1e-5 in float.
template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// Where the oracle runs an operator: on the host (here) or on the device
// (tests/common/device_oracle.cuh, same interface). Results come back as host
// arrays so that one test body serves both.
struct host_executor {
  template <class Op>
  auto apply(const Op& op, matrix_view<const typename Op::value_type> x) const {
    return mix(op, x);
  }
  template <class Op>
  auto materialize(const Op& op, index_t out, index_t in) const {
    return mixlens::materialize(op, out, in);
  }
  template <class Op>
  auto row(const Op& op, index_t out, index_t in, index_t t) const {
    return mixlens::row(op, out, in, t);
  }
};

// y = M·x through the dense materialized operator, in double.
template <class Op, class Exec = host_executor>
matrix<typename Op::value_type> dense_apply(const Op& op, matrix_view<const typename Op::value_type> x,
                                            const Exec& exec = {}) {
  const auto& v = view_of(op);
  using T = typename Op::value_type;
  const index_t L = v.length();
  matrix<T> y(v.out_channels(), L);
  for (index_t o = 0; o < v.out_channels(); ++o)
    for (index_t i = 0; i < v.in_channels(); ++i) {
      const auto block = exec.materialize(v, o, i);
      for (index_t t = 0; t < L; ++t) {
        double acc = 0;
        for (index_t s = 0; s < L; ++s) acc += double(block(t, s)) * double(x(i, s));
        y(o, t) = static_cast<T>(double(y(o, t)) + acc);
      }
    }
  return y;
}

// The checks every bound linear operator must pass on input x, wherever exec
// runs it (host or device):
//  - apply(x) equals materialize()·x;
//  - every block of a causal operator is lower triangular (is_causal);
//  - rows from the row API equal the materialized rows;
//  - channel-separable operators have zero off-diagonal channel blocks;
//  - time-invariant operators materialize to exact Toeplitz blocks.
template <class Op, class Exec = host_executor>
void check_linear_operator(const Op& op, matrix_view<const typename Op::value_type> x, double tol,
                           const Exec& exec = {}) {
  const auto& v = view_of(op);
  using V = std::remove_cvref_t<decltype(v)>;
  using traits = operator_traits<V>;
  const index_t L = v.length();
  const std::string name(traits::name);

  const auto fast = exec.apply(v, x);
  const auto dense = dense_apply(v, x, exec);
  const double err = relative_error(fast, dense);
  BOOST_TEST_INFO(name << " L=" << L);
  BOOST_TEST(err <= tol, name << ": |apply - materialize*x| = " << err << " > " << tol << " at L=" << L);

  const index_t probe_rows[] = {0, L / 3, L / 2, L - 1};
  for (index_t o = 0; o < v.out_channels(); ++o)
    for (index_t i = 0; i < v.in_channels(); ++i) {
      if (!traits::channel_mixing && o != i && (o + i) % 3 != 0) continue;  // sample off-diagonal pairs
      const auto block = exec.materialize(v, o, i);
      double scale = 0, upper = 0, off = 0, toeplitz = 0;
      for (index_t t = 0; t < L; ++t)
        for (index_t s = 0; s < L; ++s) {
          const double e = std::abs(static_cast<double>(block(t, s)));
          scale = std::max(scale, e);
          if (s > t) upper = std::max(upper, e);
          if (o != i) off = std::max(off, e);
          if (t > 0 && s > 0) toeplitz = std::max(toeplitz, double(std::abs(block(t, s) - block(t - 1, s - 1))));
        }
      if (is_causal(v)) BOOST_TEST(upper == 0.0, name << ": block (" << o << "," << i << ") is not causal");
      if (!traits::channel_mixing) BOOST_TEST(off == 0.0, name << ": channels mix in block (" << o << "," << i << ")");
      if (traits::time_invariant && scale > 0)
        BOOST_TEST(toeplitz <= tol * scale, name << ": block (" << o << "," << i << ") is not Toeplitz: " << toeplitz);
      for (index_t t : probe_rows) {
        const auto r = exec.row(v, o, i, t);
        double d = 0;
        for (index_t s = 0; s < L; ++s) d = std::max(d, double(std::abs(r[static_cast<std::size_t>(s)] - block(t, s))));
        BOOST_TEST(d <= tol * std::max(scale, 1e-300), name << ": row " << t << " differs from materialize by " << d);
      }
    }
}

// y(c, t) = Σ_{s ≤ t} k_c[t − s]·x(c, s) + D_c·x(c, t), summed directly in double:
// the reference for every convolution-shaped operator. kernel_of(c) gives k_c as
// an indexable sequence of any length (zero beyond); skip is empty or per channel.
template <class T, class KernelOf, class Skip>
matrix<T> direct_convolution(const matrix<T>& x, KernelOf kernel_of, const Skip& skip) {
  matrix<T> y(x.extent(0), x.extent(1));
  for (index_t c = 0; c < x.extent(0); ++c) {
    const auto k = kernel_of(c);
    const index_t taps = static_cast<index_t>(k.size());
    for (index_t t = 0; t < x.extent(1); ++t) {
      double acc = skip.empty() ? 0.0 : double(skip[static_cast<std::size_t>(c)]) * double(x(c, t));
      for (index_t s = std::max<index_t>(0, t - taps + 1); s <= t; ++s)
        acc += double(k[static_cast<std::size_t>(t - s)]) * double(x(c, s));
      y(c, t) = static_cast<T>(acc);
    }
  }
  return y;
}

// Lengths the operator tests sweep: 1, small primes, powers of two, up to `max`.
inline std::vector<index_t> test_lengths(index_t max = 2048) {
  std::vector<index_t> all = {1, 2, 3, 7, 16, 31, 64, 97, 128, 257, 512, 1000, 1024, 2048};
  std::vector<index_t> out;
  for (index_t l : all)
    if (l <= max) out.push_back(l);
  return out;
}

// Runs f and checks it throws mixlens::error whose message contains every fragment.
template <class F>
void check_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
  } catch (const mixlens::error& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments)
      BOOST_TEST(msg.find(frag) != std::string::npos, "message '" << msg << "' lacks '" << frag << "'");
    return;
  }
  BOOST_TEST(false, "expected mixlens::error mentioning " << *fragments.begin());
}

}  // namespace mixlens::testing
