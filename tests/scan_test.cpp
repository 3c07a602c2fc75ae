#define BOOST_TEST_MODULE scan
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <utility>

#include "common/oracles.hpp"
#include "mixlens/scan.hpp"

using namespace mixlens;

namespace {

template <class A, class B>
std::vector<affine<A, B>> random_elements(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<affine<A, B>> e(n);
  auto draw = [&](auto tag) {
    using X = decltype(tag);
    if constexpr (std::is_same_v<X, complex<double>> || std::is_same_v<X, complex<float>>)
      return X(u(gen), u(gen));
    else
      return X(u(gen));
  };
  for (auto& x : e) x = {draw(A{}), draw(B{})};
  return e;
}

template <class A, class B>
double scan_error(std::vector<affine<A, B>> got, std::vector<affine<A, B>> want) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    diff = std::max({diff, double(abs(got[i].a - want[i].a)), double(abs(got[i].b - want[i].b))});
    scale = std::max({scale, double(abs(want[i].a)), double(abs(want[i].b))});
  }
  return scale == 0 ? diff : diff / scale;
}

constexpr std::size_t all_lengths[] = {1, 2, 3, 5, 7, 13, 31, 64, 97, 128, 256, 1000, 1021, 1024, 4099};

template <class A, class B, class Policy, class Lengths = decltype(all_lengths)>
void check_policy_equals_sequential(Policy policy, double tol, const Lengths& lengths = all_lengths) {
  for (std::size_t n : lengths) {
    auto input = random_elements<A, B>(n, 1234 + n);
    auto want = input, got = input;
    sequential_scan{}(vector_view<affine<A, B>>(want));
    policy(vector_view<affine<A, B>>(got));
    BOOST_TEST(scan_error(got, want) <= tol, "n=" << n);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(composition_is_associative_and_not_commutative) {
  affine_compose op;
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    auto e = random_elements<double, double>(3, seed);
    auto left = op(op(e[0], e[1]), e[2]), right = op(e[0], op(e[1], e[2]));
    BOOST_TEST(std::abs(left.a - right.a) <= 1e-15);
    BOOST_TEST(std::abs(left.b - right.b) <= 1e-15);
    auto c = random_elements<complex<double>, complex<double>>(3, seed);
    auto cl = op(op(c[0], c[1]), c[2]), cr = op(c[0], op(c[1], c[2]));
    BOOST_TEST(abs(cl.b - cr.b) <= 1e-15);
  }
  affine<double> f{2.0, 1.0}, g{3.0, 5.0};
  BOOST_TEST(op(f, g).b == 8.0);  // 3·1 + 5
  BOOST_TEST(op(g, f).b == 11.0);  // 2·5 + 1
}

BOOST_AUTO_TEST_CASE(identity_is_neutral) {
  affine_compose op;
  auto e = random_elements<double, double>(1, 7)[0];
  auto id = affine<double>::identity();
  BOOST_TEST(op(id, e).a == e.a);
  BOOST_TEST(op(id, e).b == e.b);
  BOOST_TEST(op(e, id).b == e.b);
}

BOOST_AUTO_TEST_CASE(sequential_is_the_recurrence) {
  auto e = random_elements<double, double>(50, 3);
  auto s = e;
  sequential_scan{}(vector_view<affine<double>>(s));
  double h = 0;
  for (std::size_t t = 0; t < e.size(); ++t) {
    h = e[t].a * h + e[t].b;
    BOOST_TEST(std::abs(s[t].b - h) <= 1e-14);
  }
}

BOOST_AUTO_TEST_CASE(policies_equal_sequential_real_and_complex) {
  for (index_t chunk : {1, 2, 3, 7, 64, 100, 5000}) {
    check_policy_equals_sequential<double, double>(chunked_scan{chunk}, 1e-13);
    check_policy_equals_sequential<complex<double>, complex<double>>(chunked_scan{chunk}, 1e-13);
    check_policy_equals_sequential<float, float>(chunked_scan{chunk}, 1e-5);
  }
  check_policy_equals_sequential<double, double>(blelloch_scan{}, 1e-13);
  check_policy_equals_sequential<complex<double>, complex<double>>(blelloch_scan{}, 1e-13);
  check_policy_equals_sequential<double, complex<double>>(blelloch_scan{}, 1e-13);
  check_policy_equals_sequential<float, float>(blelloch_scan{}, 1e-5);
}

BOOST_AUTO_TEST_CASE(linear_recurrence_runs_any_policy) {
  auto a = testing::random_vector<double>(333, 1, 0.5, 1.0), b = testing::random_vector<double>(333, 2, -1, 1);
  std::vector<double> h1(a.size()), h2(a.size());
  linear_recurrence<sequential_scan, double, double>(a, b, h1);
  linear_recurrence<blelloch_scan, double, double>(a, b, h2);
  BOOST_TEST(testing::relative_error(h1.data(), h2.data(), 333) <= 1e-13);
}

BOOST_AUTO_TEST_CASE(bad_arguments_throw) {
  std::vector<affine<double>> e(3);
  testing::check_error([&] { chunked_scan{0}(vector_view<affine<double>>(e)); }, {"chunk", "got 0"});
  std::vector<double> a(3), b(2), h(3);
  testing::check_error([&] { linear_recurrence<sequential_scan, double, double>(a, b, h); },
                       {"'b'", "size = 3", "size = 2"});
}

// ---- threaded policies, flush-to-zero ------------------------------------------

namespace {

// Member by member: affine<double, complex<double>> has padding (the complex is
// 16-byte aligned), whose bytes copies need not preserve.
template <class A, class B>
bool bitwise_equal(const std::vector<affine<A, B>>& x, const std::vector<affine<A, B>>& y) {
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (std::memcmp(&x[i].a, &y[i].a, sizeof(A)) != 0 || std::memcmp(&x[i].b, &y[i].b, sizeof(B)) != 0) return false;
  return true;
}

// Decays in [lo, 1) and inputs in [-1, 1]: with lo ≥ 0.5 the decay product of
// a long scan ends below the smallest normal number (the case FTZ is for).
template <class T>
std::vector<affine<T>> decaying_elements(std::size_t n, double lo, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> a(lo, 1.0), b(-1.0, 1.0);
  std::vector<affine<T>> e(n);
  for (auto& x : e) x = {T(a(gen)), T(b(gen))};
  return e;
}

// The recurrence as anyone would write it, in the caller's floating-point mode.
template <class T>
std::vector<affine<T>> plain_recurrence(std::vector<affine<T>> e) {
  for (std::size_t t = 1; t < e.size(); ++t) e[t] = {e[t].a * e[t - 1].a, e[t].a * e[t - 1].b + e[t].b};
  return e;
}

// Every parallel region costs a wake-up of the other threads: a short list keeps
// the test fast on a loaded machine. 1, 2, 3 and 5 are shorter than 9 threads;
// no chunk count divides 1021 or 4099.
constexpr std::size_t parallel_lengths[] = {1, 2, 3, 5, 64, 97, 1021, 4099};

}  // namespace

BOOST_AUTO_TEST_CASE(time_parallel_equals_sequential) {
  for (int threads : {0, 2, 3, 9}) {
    BOOST_TEST_CONTEXT("threads " << threads) {
      const time_parallel_scan policy{threads, 1};  // grain 1: as many chunks as threads, down to one element
      check_policy_equals_sequential<double, double>(policy, 1e-13, parallel_lengths);
      check_policy_equals_sequential<complex<double>, complex<double>>(policy, 1e-13, parallel_lengths);
      check_policy_equals_sequential<double, complex<double>>(policy, 1e-13, parallel_lengths);
      check_policy_equals_sequential<float, float>(policy, 1e-5, parallel_lengths);
      check_policy_equals_sequential<float, float>(time_parallel_scan{threads, 100}, 1e-5, parallel_lengths);
    }
  }
}

namespace {

// threads = 1 is the sequential scan, bit for bit; and where no product turns
// subnormal (decays in [0.999, 1)) both are the plain loop of the recurrence
// (the sequential scan before flush-to-zero), bit for bit.
template <class T>
void check_one_thread(std::size_t n, double lo) {
  const auto input = lo < 0 ? random_elements<T, T>(n, n) : decaying_elements<T>(n, lo, n);
  auto want = input, time = input, time_grain = input, seq = input;
  sequential_scan{}(vector_view<affine<T>>(want));
  time_parallel_scan{1, 1}(vector_view<affine<T>>(time));
  time_parallel_scan{1}(vector_view<affine<T>>(time_grain));
  sequence_parallel_scan{1}(vector_view<affine<T>>(seq));
  BOOST_TEST(bitwise_equal(time, want), "n=" << n << " lo " << lo);
  BOOST_TEST(bitwise_equal(time_grain, want), "n=" << n << " lo " << lo);
  BOOST_TEST(bitwise_equal(seq, want), "n=" << n << " lo " << lo);
  if (lo >= 0.999) BOOST_TEST(bitwise_equal(want, plain_recurrence(input)), "n=" << n);
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_thread_is_the_sequential_scan_bit_for_bit) {
  for (std::size_t n : {1, 2, 17, 1000, 40000}) {
    for (double lo : {-1.0, 0.9, 0.999}) {  // random signs; decays into subnormals; decays that stay normal
      check_one_thread<float>(n, lo);
      check_one_thread<double>(n, lo);
    }
  }
}

BOOST_AUTO_TEST_CASE(sequence_parallel_is_every_row_sequential_bit_for_bit) {
  const std::pair<index_t, index_t> shapes[] = {{1, 1}, {3, 1}, {5, 7}, {13, 1021}, {64, 33}, {2, 0}, {0, 5}};
  for (auto [rows, length] : shapes) {
    auto input = random_elements<double, complex<double>>(static_cast<std::size_t>(rows * length), rows + length);
    auto want = input;
    for (index_t r = 0; r < rows; ++r)
      sequential_scan{}(vector_view<affine<double, complex<double>>>(want.data() + r * length, length));
    for (int threads : {0, 1, 2, 3, 9}) {  // 9: more threads than rows, for most shapes
      auto got = input;
      scan_rows(matrix_view<affine<double, complex<double>>>(got.data(), rows, length), sequence_parallel_scan{threads, 1});
      BOOST_TEST(bitwise_equal(got, want), rows << "x" << length << " threads " << threads);
    }
    auto rowwise = input;  // a policy without a matrix overload: row after row
    scan_rows(matrix_view<affine<double, complex<double>>>(rowwise.data(), rows, length), time_parallel_scan{2, 1});
    BOOST_TEST(scan_error(rowwise, want) <= 1e-13, rows << "x" << length);
  }
  // float rows, and the batched linear_recurrence
  const index_t rows = 6, length = 777;
  auto a = testing::random_vector<float>(rows * length, 5, 0.5, 1.0), b = testing::random_vector<float>(rows * length, 6, -1, 1);
  std::vector<float> want(a.size()), got(a.size()), chunked(a.size());
  for (index_t r = 0; r < rows; ++r)
    linear_recurrence<sequential_scan, float, float>(vector_view<const float>(a.data() + r * length, length),
                                                     vector_view<const float>(b.data() + r * length, length),
                                                     vector_view<float>(want.data() + r * length, length));
  const matrix_view<const float> av(a.data(), rows, length), bv(b.data(), rows, length);
  for (int threads : {1, 2, 4, 9}) {
    linear_recurrence(av, bv, matrix_view<float>(got.data(), rows, length), sequence_parallel_scan{threads, 1});
    BOOST_TEST(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0, "threads " << threads);
    linear_recurrence(av, bv, matrix_view<float>(chunked.data(), rows, length), time_parallel_scan{threads, 64});
    BOOST_TEST(testing::relative_error(chunked.data(), want.data(), rows * length) <= 1e-5, "threads " << threads);
  }
}

// 2^16 steps: decays in [0.9, 1) take the product below the smallest normal
// float after about 1700 steps, where gradual underflow keeps it subnormal for
// good (the slow case); decays in [0.999, 1) stay normal. The flushed scans agree with the unflushed
// recurrence: the decay products within the smallest normal number, the states
// (never subnormal here) within rounding.
BOOST_AUTO_TEST_CASE(long_float_scans_match_the_unflushed_recurrence) {
  const std::size_t n = std::size_t(1) << 16;
  for (double lo : {0.9, 0.999}) {
    const auto input = decaying_elements<float>(n, lo, 42);
    const auto want = plain_recurrence(input);
    if (lo < 0.95) {  // stuck at a subnormal: the slow case is exercised
      BOOST_TEST(want.back().a > 0.0f);
      BOOST_TEST(want.back().a < std::numeric_limits<float>::min());
    }
    const auto check = [&](auto policy, double tol, const char* name) {
      auto got = input;
      policy(vector_view<affine<float>>(got));
      double a_err = 0, b_err = 0, scale = 0;
      for (std::size_t t = 0; t < n; ++t) {
        a_err = std::max(a_err, double(std::abs(got[t].a - want[t].a)));
        b_err = std::max(b_err, double(std::abs(got[t].b - want[t].b)));
        scale = std::max(scale, double(std::abs(want[t].b)));
      }
      BOOST_TEST(a_err <= std::numeric_limits<float>::min() + tol, name << " lo " << lo);
      BOOST_TEST(b_err <= tol * scale, name << " lo " << lo);
    };
    check(sequential_scan{}, 1e-6, "sequential");
    check(time_parallel_scan{2, 1024}, 1e-5, "time_parallel 2");
    check(time_parallel_scan{7, 1024}, 1e-5, "time_parallel 7");
    check(chunked_scan{4096}, 1e-5, "chunked");
    check(blelloch_scan{}, 1e-5, "blelloch");
  }
}

#if MIXLENS_FLUSH_SUBNORMALS
namespace {

// A number whose multiplication throws after a countdown: scans that throw midway.
std::atomic<int> multiplications_left{0};
struct fragile {
  double v = 0;
  fragile() = default;
  fragile(double x) : v(x) {}  // NOLINT: converts like a double
  friend fragile operator*(fragile x, fragile y) {
    if (multiplications_left.fetch_sub(1) <= 0) throw std::runtime_error("fragile: out of multiplications");
    return x.v * y.v;
  }
  friend fragile operator+(fragile x, fragile y) { return x.v + y.v; }
};

struct float_mode {
  unsigned ftz = _MM_GET_FLUSH_ZERO_MODE(), daz = _MM_GET_DENORMALS_ZERO_MODE();
  bool operator==(const float_mode&) const = default;
};

void set_mode(unsigned ftz, unsigned daz) {
  _MM_SET_FLUSH_ZERO_MODE(ftz);
  _MM_SET_DENORMALS_ZERO_MODE(daz);
}

}  // namespace

BOOST_AUTO_TEST_CASE(policies_flush_subnormals_and_restore_the_callers_mode) {
  const float_mode original;
  // 2^-70 · 2^-70 = 2^-140 is subnormal: flushed to 0 inside every policy.
  const float tiny = std::ldexp(1.0f, -70);
  const auto run = [&](auto policy) {
    std::vector<affine<float>> e(3, affine<float>{tiny, 1.0f});
    policy(vector_view<affine<float>>(e));
    return e[1].a;
  };
  for (auto [ftz, daz] : {std::pair{_MM_FLUSH_ZERO_OFF, _MM_DENORMALS_ZERO_OFF},
                          std::pair{_MM_FLUSH_ZERO_ON, _MM_DENORMALS_ZERO_OFF},
                          std::pair{_MM_FLUSH_ZERO_OFF, _MM_DENORMALS_ZERO_ON}}) {
    set_mode(ftz, daz);
    const float_mode before;
    BOOST_TEST(run(sequential_scan{}) == 0.0f);
    BOOST_TEST(run(chunked_scan{2}) == 0.0f);
    BOOST_TEST(run(blelloch_scan{}) == 0.0f);
    BOOST_TEST(run(time_parallel_scan{2, 1}) == 0.0f);
    BOOST_TEST(run(sequence_parallel_scan{2, 1}) == 0.0f);
    BOOST_TEST((float_mode{} == before), "ftz " << ftz << " daz " << daz);
    // A throw midway (on the caller's thread, or on a worker) restores the mode too.
    for (int threads : {1, 2}) {
      std::vector<affine<fragile>> f(1000, affine<fragile>{0.5, 1.0});
      multiplications_left = 700;
      BOOST_CHECK_THROW(time_parallel_scan({threads, 1})(vector_view<affine<fragile>>(f)), std::runtime_error);
      multiplications_left = 700;
      BOOST_CHECK_THROW(sequential_scan{}(vector_view<affine<fragile>>(f)), std::runtime_error);
      std::vector<affine<fragile>> rows(8 * 100, affine<fragile>{0.5, 1.0});
      multiplications_left = 700;
      BOOST_CHECK_THROW(scan_rows(matrix_view<affine<fragile>>(rows.data(), 8, 100), sequence_parallel_scan{threads, 1}),
                        std::runtime_error);
      BOOST_TEST((float_mode{} == before), "after a throw, threads " << threads);
    }
  }
  set_mode(original.ftz, original.daz);
}
#endif

BOOST_AUTO_TEST_CASE(threaded_policies_check_their_arguments) {
  std::vector<affine<double>> e(3);
  const vector_view<affine<double>> v(e);
  testing::check_error([&] { time_parallel_scan{-1}(v); }, {"time_parallel_scan", "'threads'", "got -1"});
  testing::check_error([&] { time_parallel_scan{2, 0}(v); }, {"'grain'", "got 0"});
  testing::check_error([&] { sequence_parallel_scan{-3}(v); }, {"sequence_parallel_scan", "'threads'", "got -3"});
  testing::check_error([&] { scan_rows(matrix_view<affine<double>>(e.data(), 1, 3), sequence_parallel_scan{-2}); },
                       {"'threads'", "got -2"});
  testing::check_error([&] { (void)host_threads(-4); }, {"host_threads", "'threads'", "got -4"});
  BOOST_TEST(host_threads(1) == 1);
  BOOST_TEST(host_threads() >= 1);
  if (detail::has_openmp) BOOST_TEST(host_threads(5) == 5);
  std::vector<double> a(6), b(4), h(6);
  testing::check_error(
      [&] {
        linear_recurrence(matrix_view<const double>(a.data(), 2, 3), matrix_view<const double>(b.data(), 2, 2),
                          matrix_view<double>(h.data(), 2, 3), sequence_parallel_scan{});
      },
      {"'b'", "extent(1) = 3", "extent(1) = 2"});
}
