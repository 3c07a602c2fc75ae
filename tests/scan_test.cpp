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

template <class A, class B, class Policy>
void check_policy_equals_sequential(Policy policy, double tol) {
  for (std::size_t n : {1, 2, 3, 5, 7, 13, 31, 64, 97, 128, 256, 1000, 1021, 1024, 4099}) {
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

// ---- flush-to-zero -------------------------------------------------------------

namespace {

template <class A, class B>
bool bitwise_equal(const std::vector<affine<A, B>>& x, const std::vector<affine<A, B>>& y) {
  return x.size() == y.size() &&
         std::memcmp(x.data(), y.data(), x.size() * sizeof(affine<A, B>)) == 0;
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

}  // namespace

// Where no product turns subnormal (decays in [0.999, 1)) the flushed
// sequential scan is the plain loop of the recurrence, bit for bit.
BOOST_AUTO_TEST_CASE(sequential_is_the_plain_loop_bit_for_bit_without_subnormals) {
  for (std::size_t n : {1, 2, 17, 1000, 40000}) {
    const auto f = decaying_elements<float>(n, 0.999, n);
    auto fs = f;
    sequential_scan{}(vector_view<affine<float>>(fs));
    BOOST_TEST(bitwise_equal(fs, plain_recurrence(f)), "n=" << n);
    const auto d = decaying_elements<double>(n, 0.999, n);
    auto ds = d;
    sequential_scan{}(vector_view<affine<double>>(ds));
    BOOST_TEST(bitwise_equal(ds, plain_recurrence(d)), "n=" << n);
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
    BOOST_TEST((float_mode{} == before), "ftz " << ftz << " daz " << daz);
    // A throw midway restores the mode too.
    std::vector<affine<fragile>> f(1000, affine<fragile>{0.5, 1.0});
    multiplications_left = 700;
    BOOST_CHECK_THROW(sequential_scan{}(vector_view<affine<fragile>>(f)), std::runtime_error);
    BOOST_TEST((float_mode{} == before), "after a throw");
  }
  set_mode(original.ftz, original.daz);
}
#endif
