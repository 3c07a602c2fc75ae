#define BOOST_TEST_MODULE s6_backward
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/ops/s6.hpp"
#include "mixlens/ops/s6/backward.hpp"

using namespace mixlens;

namespace {

// A random S6 operator with its input and an output weight w: the scalar
// f = ⟨w, op(u)⟩ is what the gradients are taken of.
template <class T>
struct scan_case {
  index_t D, N, L, G;
  bool skip, gate;
  matrix<T> delta, a, u, w, gate_v;
  tensor<T, 3> b, c;
  std::vector<T> skip_v;

  scan_case(index_t d, index_t n, index_t l, index_t g, bool with_skip, bool with_gate, std::uint64_t seed)
      : D(d), N(n), L(l), G(g), skip(with_skip), gate(with_gate), delta(d, l), a(d, n), u(d, l), w(d, l),
        gate_v(with_gate ? matrix<T>(d, l) : matrix<T>()), b(g, n, l), c(g, n, l) {
    mixlens::detail::splitmix64 rng(seed);
    const auto fill = [&](T* p, index_t count, double lo, double hi) {
      for (index_t i = 0; i < count; ++i) p[i] = static_cast<T>(rng.uniform(lo, hi));
    };
    fill(delta.data(), delta.size(), 0.05, 0.8);
    fill(a.data(), a.size(), -2.0, -0.1);
    fill(u.data(), u.size(), -1, 1);
    fill(w.data(), w.size(), -1, 1);
    fill(b.data(), b.size(), -1, 1);
    fill(c.data(), c.size(), -1, 1);
    if (with_gate) fill(gate_v.data(), gate_v.size(), -1.5, 1.5);
    if (with_skip) skip_v.resize(static_cast<std::size_t>(d)), fill(skip_v.data(), d, -1, 1);
  }

  [[nodiscard]] s6_operator<T> op() const {
    return s6_operator<T>(delta.view(), a.view(), b.view(), c.view(),
                          skip ? vector_view<const T>(skip_v.data(), D) : vector_view<const T>{},
                          gate ? matrix_view<const T>(gate_v.view()) : matrix_view<const T>{});
  }

  [[nodiscard]] double f() const {
    matrix<T> y(D, L);
    op().apply(u.view(), y.view());
    double s = 0;
    for (index_t i = 0; i < y.size(); ++i) s += double(w.data()[i]) * double(y.data()[i]);
    return s;
  }
};

// max over the elements of `x` of |analytic − central difference|, relative
// to the largest central difference.
double fd_error(const std::function<double()>& f, double* x, index_t count, const double* analytic, double eps = 1e-6) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < count; ++i) {
    const double keep = x[i];
    x[i] = keep + eps;
    const double up = f();
    x[i] = keep - eps;
    const double down = f();
    x[i] = keep;
    const double fd = (up - down) / (2 * eps);
    diff = std::max(diff, std::abs(fd - analytic[i]));
    scale = std::max(scale, std::abs(fd));
  }
  return diff / (scale > 0 ? scale : 1);
}

struct shape {
  index_t D, N, L, G;
  bool skip, gate;
};

const shape shapes[] = {
    {3, 4, 9, 1, false, false}, {4, 3, 7, 1, true, false}, {4, 2, 8, 2, false, true},
    {6, 3, 6, 3, true, true},   {2, 5, 1, 1, true, true},  {6, 2, 11, 2, true, true},
};

}  // namespace

BOOST_AUTO_TEST_CASE(gradients_match_central_differences) {
  std::uint64_t seed = 1;
  for (const auto& sh : shapes) {
    scan_case<double> k(sh.D, sh.N, sh.L, sh.G, sh.skip, sh.gate, ++seed);
    const auto g = s6_backward(k.op(), k.u.view(), matrix_view<const double>(k.w.view()));
    const auto f = [&] { return k.f(); };
    const std::string tag = "D=" + std::to_string(sh.D) + " N=" + std::to_string(sh.N) + " L=" + std::to_string(sh.L) +
                            " G=" + std::to_string(sh.G) + " skip=" + std::to_string(sh.skip) +
                            " gate=" + std::to_string(sh.gate);
    const double tol = 1e-7;
    const double eu = fd_error(f, k.u.data(), k.u.size(), g.du.data());
    const double ed = fd_error(f, k.delta.data(), k.delta.size(), g.ddelta.data());
    const double eb = fd_error(f, k.b.data(), k.b.size(), g.db.data());
    const double ec = fd_error(f, k.c.data(), k.c.size(), g.dc.data());
    BOOST_TEST(eu <= tol, tag << ": du error " << eu);
    BOOST_TEST(ed <= tol, tag << ": ddelta error " << ed);
    BOOST_TEST(eb <= tol, tag << ": db error " << eb);
    BOOST_TEST(ec <= tol, tag << ": dc error " << ec);
    BOOST_TEST(g.dskip.size() == (sh.skip ? std::size_t(sh.D) : 0));
    BOOST_TEST(g.dgate.size() == (sh.gate ? sh.D * sh.L : 0));
    if (sh.skip) {
      const double e = fd_error(f, k.skip_v.data(), sh.D, g.dskip.data());
      BOOST_TEST(e <= tol, tag << ": dskip error " << e);
    }
    if (sh.gate) {
      const double e = fd_error(f, k.gate_v.data(), k.gate_v.size(), g.dgate.data());
      BOOST_TEST(e <= tol, tag << ": dgate error " << e);
    }
  }
}

BOOST_AUTO_TEST_CASE(gradients_are_nonzero_and_group_sums_differ_from_one_channel) {
  // With G < D, ∂B of a group sums over its channels: dropping all but one
  // channel's weight changes it (guards against writing instead of accumulating).
  scan_case<double> k(4, 3, 6, 2, true, true, 99);
  const auto all = s6_backward(k.op(), k.u.view(), matrix_view<const double>(k.w.view()));
  matrix<double> w1 = k.w;
  for (index_t t = 0; t < k.L; ++t) w1(1, t) = 0;
  const auto part = s6_backward(k.op(), k.u.view(), matrix_view<const double>(w1.view()));
  double change = 0, size = 0;
  for (index_t i = 0; i < all.db.size(); ++i)
    change = std::max(change, std::abs(all.db.data()[i] - part.db.data()[i])), size = std::max(size, std::abs(all.db.data()[i]));
  BOOST_TEST(size > 0.01);
  BOOST_TEST(change > 0.01 * size);
}

BOOST_AUTO_TEST_CASE(float_agrees_with_double) {
  scan_case<double> kd(6, 3, 40, 2, true, true, 7);
  scan_case<float> kf(6, 3, 40, 2, true, true, 7);
  const auto gd = s6_backward(kd.op(), kd.u.view(), matrix_view<const double>(kd.w.view()));
  const auto gf = s6_backward(kf.op(), kf.u.view(), matrix_view<const float>(kf.w.view()));
  const auto rel = [](const auto& a, const auto& b, index_t n) {
    double diff = 0, scale = 0;
    for (index_t i = 0; i < n; ++i)
      diff = std::max(diff, std::abs(double(a[i]) - double(b[i]))), scale = std::max(scale, std::abs(double(b[i])));
    return diff / scale;
  };
  BOOST_TEST(rel(gf.du.data(), gd.du.data(), gd.du.size()) <= 1e-5);
  BOOST_TEST(rel(gf.ddelta.data(), gd.ddelta.data(), gd.ddelta.size()) <= 1e-5);
  BOOST_TEST(rel(gf.db.data(), gd.db.data(), gd.db.size()) <= 1e-5);
  BOOST_TEST(rel(gf.dc.data(), gd.dc.data(), gd.dc.size()) <= 1e-5);
}

BOOST_AUTO_TEST_CASE(shapes_are_checked) {
  scan_case<double> k(4, 3, 6, 2, true, true, 3);
  matrix<double> bad(4, 5);
  testing::check_error([&] { (void)s6_backward(k.op(), k.u.view(), matrix_view<const double>(bad.view())); },
                       {"mixlens::s6_backward", "'dy'", "columns (extent 1) = 6", "columns (extent 1) = 5"});
  auto g = s6_backward(k.op(), k.u.view(), matrix_view<const double>(k.w.view()));
  tensor<double, 3> db(1, 3, 6);
  auto v = g.view();
  v.db = db.view();
  testing::check_error([&] { s6_backward(k.op(), k.u.view(), matrix_view<const double>(k.w.view()), v); },
                       {"'db'", "groups (extent 0) = 2", "groups (extent 0) = 1"});
}
