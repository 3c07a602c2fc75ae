#define BOOST_TEST_MODULE scan
#include <boost/test/unit_test.hpp>

#include <complex>
#include <random>

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
