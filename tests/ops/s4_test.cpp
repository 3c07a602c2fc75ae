#define BOOST_TEST_MODULE s4
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <complex>
#include <random>

#include "common/oracles.hpp"
#include "mixlens/io/safetensors.hpp"
#include "mixlens/ops/s4.hpp"

using namespace mixlens;
using cd = std::complex<double>;

namespace {

template <class T>
cd to_std(const complex<T>& z) {
  return {double(z.real()), double(z.imag())};
}

// Dense complex n × n matrices, row-major, for the reference.
struct dense {
  index_t n;
  std::vector<cd> v;
  explicit dense(index_t size) : n(size), v(static_cast<std::size_t>(size * size)) {}
  cd& operator()(index_t i, index_t j) { return v[static_cast<std::size_t>(i * n + j)]; }
  cd operator()(index_t i, index_t j) const { return v[static_cast<std::size_t>(i * n + j)]; }
};

// Solves m X = rhs (rhs n × k, row-major) by Gaussian elimination with partial pivoting.
std::vector<cd> solve(dense m, std::vector<cd> rhs, index_t k) {
  const index_t n = m.n;
  auto r = [&](index_t i, index_t j) -> cd& { return rhs[static_cast<std::size_t>(i * k + j)]; };
  for (index_t col = 0; col < n; ++col) {
    index_t piv = col;
    for (index_t i = col + 1; i < n; ++i)
      if (std::abs(m(i, col)) > std::abs(m(piv, col))) piv = i;
    for (index_t j = 0; j < n; ++j) std::swap(m(col, j), m(piv, j));
    for (index_t j = 0; j < k; ++j) std::swap(r(col, j), r(piv, j));
    for (index_t i = col + 1; i < n; ++i) {
      const cd f = m(i, col) / m(col, col);
      for (index_t j = col; j < n; ++j) m(i, j) -= f * m(col, j);
      for (index_t j = 0; j < k; ++j) r(i, j) -= f * r(col, j);
    }
  }
  for (index_t i = n - 1; i >= 0; --i)
    for (index_t j = 0; j < k; ++j) {
      cd acc = r(i, j);
      for (index_t l = i + 1; l < n; ++l) acc -= m(i, l) * r(l, j);
      r(i, j) = acc / m(i, i);
    }
  return rhs;
}

// The kernel of channel h by the dense-state recurrence: the full state [x; x̄] of
// size N, A = diag(Λ, Λ̄) − Σ_r [P_r; P̄_r][Q_r; Q̄_r]*, bilinear Ā = (I − ΔA/2)⁻¹(I + ΔA/2),
// B̄ = Δ(I − ΔA/2)⁻¹B, then h_0 = B̄, h_k = Ā h_{k−1}, K_k = Re(C h_k).
template <class T>
std::vector<double> dense_kernel(const s4_mixer<T>& m, index_t h, index_t L) {
  const index_t half = m.lambda.extent(1), N = 2 * half, R = m.p.extent(0);
  const double dt = std::exp(double(m.log_dt[static_cast<std::size_t>(h)]));
  auto full = [&](auto get, index_t i) { return i < half ? get(i) : std::conj(get(i - half)); };
  dense a(N);
  for (index_t i = 0; i < N; ++i) {
    a(i, i) = full([&](index_t n) { return to_std(m.lambda(h, n)); }, i);
    for (index_t r = 0; r < R; ++r)
      for (index_t j = 0; j < N; ++j) {
        const cd pi = full([&](index_t n) { return to_std(m.p(r, h, n)); }, i);
        const cd qj = full([&](index_t n) { return to_std(m.q(r, h, n)); }, j);
        a(i, j) -= pi * std::conj(qj);
      }
  }
  dense back(N);
  std::vector<cd> rhs(static_cast<std::size_t>(N * (N + 1)));
  for (index_t i = 0; i < N; ++i) {
    for (index_t j = 0; j < N; ++j) {
      back(i, j) = (i == j ? 1.0 : 0.0) - dt / 2 * a(i, j);
      rhs[static_cast<std::size_t>(i * (N + 1) + j)] = (i == j ? 1.0 : 0.0) + dt / 2 * a(i, j);
    }
    rhs[static_cast<std::size_t>(i * (N + 1) + N)] = dt * full([&](index_t n) { return to_std(m.b(h, n)); }, i);
  }
  const auto sol = solve(back, rhs, N + 1);  // [Ā | B̄]
  std::vector<cd> state(static_cast<std::size_t>(N)), next(static_cast<std::size_t>(N)), c(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) {
    state[static_cast<std::size_t>(i)] = sol[static_cast<std::size_t>(i * (N + 1) + N)];
    c[static_cast<std::size_t>(i)] = full([&](index_t n) { return to_std(m.c(h, n)); }, i);
  }
  std::vector<double> k(static_cast<std::size_t>(L));
  for (index_t t = 0; t < L; ++t) {
    cd y = 0;
    for (index_t i = 0; i < N; ++i) y += c[static_cast<std::size_t>(i)] * state[static_cast<std::size_t>(i)];
    k[static_cast<std::size_t>(t)] = y.real();
    for (index_t i = 0; i < N; ++i) {
      cd acc = 0;
      for (index_t j = 0; j < N; ++j) acc += sol[static_cast<std::size_t>(i * (N + 1) + j)] * state[static_cast<std::size_t>(j)];
      next[static_cast<std::size_t>(i)] = acc;
    }
    std::swap(state, next);
  }
  return k;
}

// y = K * x + D x by direct convolution with the dense-recurrence kernels.
template <class T>
matrix<T> naive_apply(const s4_mixer<T>& m, const matrix<T>& x) {
  return testing::direct_convolution(x, [&](index_t h) { return dense_kernel(m, h, x.extent(1)); }, m.skip);
}

// A random DPLR layer: Re Λ in [−1, −0.05], Im Λ in [−10, 10], P random of `rank`;
// Q = P, or a perturbation of P when `untied`.
template <class T>
s4_mixer<T> random_mixer(index_t H, index_t half, index_t rank, std::uint64_t seed, bool untied, double dt_lo,
                         double dt_hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> re(-1.0, -0.05), im(-10.0, 10.0), u(-1.0, 1.0);
  auto cplx = [&](double scale) { return complex<T>(T(scale * u(gen)), T(scale * u(gen))); };
  matrix<complex<T>> lambda(H, half), b(H, half), c(H, half);
  tensor<complex<T>, 3> p(rank, H, half), q(rank, H, half);
  for (index_t h = 0; h < H; ++h)
    for (index_t n = 0; n < half; ++n) {
      lambda(h, n) = complex<T>(T(re(gen)), T(im(gen)));
      b(h, n) = cplx(1.0);
      c(h, n) = cplx(1.0);
      for (index_t r = 0; r < rank; ++r) p(r, h, n) = cplx(0.7);
    }
  for (index_t i = 0; i < p.size(); ++i) q.data()[i] = p.data()[i];
  if (untied)
    for (index_t i = 0; i < q.size(); ++i) q.data()[i] += cplx(0.1);
  auto log_dt = testing::random_vector<T>(H, seed + 1, std::log(dt_lo), std::log(dt_hi));
  auto d = testing::random_vector<T>(H, seed + 2, -1, 1);
  return s4_mixer<T>(std::move(lambda), std::move(p), std::move(q), std::move(b), std::move(c), std::move(log_dt),
                     std::move(d));
}

double kernel_error(const matrix<double>& k, const std::vector<double>& ref, index_t h) {
  return testing::relative_error(&k(h, 0), ref.data(), k.extent(1));
}

template <class T>
void check_layer(const s4_mixer<T>& m, index_t L, std::uint64_t seed) {
  auto op = m.bind(L);
  static_assert(linear_operator<std::remove_cvref_t<decltype(op.view())>>);
  static_assert(operator_traits<std::remove_cvref_t<decltype(op.view())>>::name == "S4");
  auto x = testing::random_matrix<T>(m.channels(), L, seed);
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  const double err = testing::relative_error(mix(op, x.view()), naive_apply(m, x));
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-10;
  BOOST_TEST(err <= tol, "S4 apply vs naive: " << err << " at L=" << L);
}

}  // namespace

// The NPLR form reproduces LegS: A = V_full (Λ_full − P_full P_full*) V_full* with
// V_full = [V, V̄] unitary, P = V* p, B = V* b.
BOOST_AUTO_TEST_CASE(legs_nplr_reconstructs_hippo) {
  for (index_t N : {2, 4, 8, 16, 64}) {
    const auto r = detail::legs_nplr(N);
    const auto legs = detail::legs_matrix(N);
    const index_t half = N / 2;
    double err = 0, orth = 0, perr = 0, berr = 0;
    for (index_t i = 0; i < N; ++i)
      for (index_t j = 0; j < N; ++j) {
        cd acc = 0;  // V Λ V*, plus the conjugate half: 2·Re
        for (index_t n = 0; n < half; ++n)
          acc += to_std(r.v(i, n)) * to_std(r.lambda[std::size_t(n)]) * std::conj(to_std(r.v(j, n)));
        const double rebuilt = 2 * acc.real() - std::sqrt((i + 0.5) * (j + 0.5));
        err = std::max(err, std::abs(rebuilt - legs(i, j)) / double(N));
      }
    for (index_t n = 0; n < half; ++n) {
      BOOST_TEST(r.lambda[std::size_t(n)].real() == -0.5);
      BOOST_TEST(r.lambda[std::size_t(n)].imag() < 0.0);
      if (n > 0) BOOST_TEST(r.lambda[std::size_t(n)].imag() >= r.lambda[std::size_t(n - 1)].imag());
      for (index_t m = 0; m < half; ++m) {
        cd vv = 0, vvt = 0;  // V* V = I and Vᵀ V = 0 (the conjugate half is orthogonal)
        for (index_t i = 0; i < N; ++i) {
          vv += std::conj(to_std(r.v(i, n))) * to_std(r.v(i, m));
          vvt += to_std(r.v(i, n)) * to_std(r.v(i, m));
        }
        orth = std::max({orth, std::abs(vv - (n == m ? 1.0 : 0.0)), std::abs(vvt)});
      }
      cd p = 0, b = 0;
      for (index_t i = 0; i < N; ++i) {
        p += std::conj(to_std(r.v(i, n))) * std::sqrt(i + 0.5);
        b += std::conj(to_std(r.v(i, n))) * std::sqrt(2.0 * i + 1);
      }
      perr = std::max(perr, std::abs(p - to_std(r.p[std::size_t(n)])));
      berr = std::max(berr, std::abs(b - to_std(r.b[std::size_t(n)])));
    }
    BOOST_TEST(err <= 1e-12, "N=" << N << " reconstruction " << err);
    BOOST_TEST(orth <= 1e-12, "N=" << N << " orthonormality " << orth);
    BOOST_TEST(perr <= 1e-12);
    BOOST_TEST(berr <= 1e-12);
  }
  // N = 2: S = [[0, ½√3], [−½√3, 0]], eigenvalues ±i√3/2.
  const auto r2 = detail::legs_nplr(2);
  BOOST_TEST(std::abs(r2.lambda[0].imag() + std::sqrt(3.0) / 2) <= 1e-15);
}

BOOST_AUTO_TEST_CASE(kernel_matches_dense_recurrence) {
  std::uint64_t seed = 40;
  for (index_t L : testing::test_lengths(1024)) {
    seed += 10;
    // S4's LegS initialization at short and long steps (long ones make Ā^L, hence C̃, matter).
    for (double dt : {1e-3, 0.05, 0.5}) {
      auto m = s4_mixer<double>::init(2, 16, seed, 1, dt, dt);
      const auto k = m.kernel(L);
      for (index_t h = 0; h < 2; ++h)
        BOOST_TEST(kernel_error(k, dense_kernel(m, h, L), h) <= 1e-10, "LegS dt=" << dt << " L=" << L);
    }
    // Random DPLR of rank 1 and 2, tied and untied Q.
    for (index_t rank : {1, 2})
      for (bool untied : {false, true}) {
        auto m = random_mixer<double>(2, 6, rank, seed + std::uint64_t(rank) + (untied ? 5 : 0), untied, 1e-2, 0.5);
        const auto k = m.kernel(L);
        for (index_t h = 0; h < 2; ++h)
          BOOST_TEST(kernel_error(k, dense_kernel(m, h, L), h) <= 1e-10,
                     "rank " << rank << " untied " << untied << " L=" << L);
      }
  }
  // The default layer size, N = 64.
  auto m = s4_mixer<double>::init(1, 64, 3, 1, 1e-2, 1e-2);
  BOOST_TEST(kernel_error(m.kernel(1024), dense_kernel(m, 0, 1024), 0) <= 1e-10);
  // Rank 2 with a zero second row (S4's padding) equals rank 1.
  auto m2 = s4_mixer<double>::init(2, 16, 8, 2);
  auto m1 = s4_mixer<double>::init(2, 16, 8, 1);
  BOOST_TEST(testing::relative_error(m2.kernel(100), m1.kernel(100)) <= 1e-13);
}

BOOST_AUTO_TEST_CASE(operator_algebra_and_naive_reference) {
  std::uint64_t seed = 1000;
  for (index_t L : testing::test_lengths()) {
    seed += 10;
    check_layer(s4_mixer<double>::init(2, 16, seed), L, seed + 1);
    check_layer(random_mixer<double>(2, 4, 2, seed + 2, true, 1e-2, 0.5), L, seed + 3);
    check_layer(s4_mixer<float>::init(2, 8, seed + 4), L, seed + 5);
  }
}

BOOST_AUTO_TEST_CASE(bound_operator_does_not_depend_on_the_input) {
  auto m = s4_mixer<double>::init(3, 8, 5);
  const index_t L = 40;
  auto x1 = testing::random_matrix<double>(3, L, 1), x2 = testing::random_matrix<double>(3, L, 2, 10.0);
  auto b1 = m.bind(x1.view()), b2 = m.bind(x2.view()), b3 = m.bind(L);
  const auto k = m.kernel(L);
  for (index_t h = 0; h < 3; ++h) {
    auto m1 = materialize(b1, h, h), m2 = materialize(b2, h, h), m3 = materialize(b3, h, h);
    BOOST_TEST(testing::relative_error(m1, m2) == 0.0);
    BOOST_TEST(testing::relative_error(m1, m3) == 0.0);
    double err = 0;  // M[t][s] = K[t − s] + D δ
    for (index_t t = 0; t < L; ++t)
      for (index_t s = 0; s <= t; ++s)
        err = std::max(err, std::abs(m1(t, s) - (k(h, t - s) + (s == t ? m.skip[std::size_t(h)] : 0.0))));
    BOOST_TEST(err == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(legs_initialization) {
  auto m = s4_mixer<float>::init(4, 64, 2);
  BOOST_TEST(m.channels() == 4);
  BOOST_TEST(m.state_size() == 64);
  BOOST_TEST(m.rank() == 1);
  const auto ref = detail::legs_nplr(64);
  for (index_t h = 0; h < 4; ++h) {
    BOOST_TEST((m.dt(h) >= 1e-3 * (1 - 1e-6) && m.dt(h) <= 1e-1 * (1 + 1e-6)));
    for (index_t n = 0; n < 32; ++n) {
      BOOST_TEST(m.lambda(h, n).real() == -0.5f);
      BOOST_TEST(std::abs(to_std(m.lambda(h, n)) - to_std(ref.lambda[std::size_t(n)])) <= 1e-5 * std::abs(to_std(ref.lambda[std::size_t(n)])));
      BOOST_TEST((m.p(0, h, n) == m.q(0, h, n)));
    }
  }
  // float and double layers agree (the kernel is computed in double either way).
  auto md = s4_mixer<double>::init(2, 16, 4);
  auto mf = s4_mixer<float>::init(2, 16, 4);
  auto kd = md.kernel(500);
  auto kf = mf.kernel(500);
  matrix<double> kfd(2, 500);
  for (index_t i = 0; i < kf.size(); ++i) kfd.data()[i] = kf.data()[i];
  BOOST_TEST(testing::relative_error(kfd, kd) <= 1e-5);
}

// state-spaces/s4's nplr('legs', N, B_clip=2.0), as tests/data/make_reference_module_fixtures.py
// re-implements it (LAPACK eigh): init's Λ, P and B are the reference's up to a sign per state
// (the eigenvectors' sign; Im B's clip is symmetric), and b_clip = nullopt gives the unclipped B.
BOOST_AUTO_TEST_CASE(legs_initialization_matches_reference_nplr) {
  const io::safetensors_file f(std::filesystem::path(MIXLENS_TEST_DATA_DIR) / "reference_params" / "s4_legs_nplr.safetensors");
  auto load = [&](const std::string& name) {
    const auto& t = f.at(name);
    std::vector<double> v(static_cast<std::size_t>(t.shape.at(0) * 2));
    f.read(t, v.data());
    std::vector<cd> z;
    for (std::size_t i = 0; i < v.size(); i += 2) z.emplace_back(v[i], v[i + 1]);
    return z;
  };
  for (index_t N : {16, 64}) {
    const auto n = std::to_string(N);
    const auto lambda = load("lambda_" + n), p = load("p_" + n), b = load("b_" + n), b0 = load("b_unclipped_" + n);
    const auto clipped = s4_mixer<double>::init(2, N, 7);
    const auto exact = s4_mixer<double>::init(2, N, 7, 1, 1e-3, 1e-1, std::nullopt);
    double err = 0, clip_changed = 0;
    for (index_t j = 0; j < N / 2; ++j) {
      const auto k = std::size_t(j);
      const cd pm = to_std(clipped.p(0, 1, j));
      const double sign = (pm * std::conj(p[k])).real() >= 0 ? 1.0 : -1.0;
      err = std::max({err, std::abs(to_std(clipped.lambda(1, j)) - lambda[k]) / std::abs(lambda[k]),
                      std::abs(sign * pm - p[k]) / std::abs(p[k]),
                      std::abs(sign * to_std(clipped.b(1, j)) - b[k]) / std::abs(b0[k]),
                      std::abs(sign * to_std(exact.b(1, j)) - b0[k]) / std::abs(b0[k])});
      BOOST_TEST(std::abs(clipped.b(0, j).imag()) <= 2.0);
      clip_changed = std::max(clip_changed, std::abs(b[k] - b0[k]));
    }
    BOOST_TEST(err <= 1e-10, "N=" << N << ": " << err);
    BOOST_TEST(clip_changed > 1.0);  // the clip is active at these sizes
    BOOST_TEST(testing::relative_error(clipped.kernel(64), exact.kernel(64)) > 1e-3);
  }
  testing::check_error([] { s4_mixer<double>::init(1, 8, 1, 1, 1e-3, 1e-1, -1.0); }, {"'b_clip'", ">= 0"});
}

BOOST_AUTO_TEST_CASE(bad_parameters_throw) {
  auto good = random_mixer<double>(2, 4, 1, 1, false, 1e-2, 0.1);
  auto with = [&](auto edit) {
    return [=]() mutable {
      auto m = good;
      edit(m);
      m.validate();
    };
  };
  testing::check_error(with([](auto& m) { m.lambda(1, 3) = complex<double>(0.2, 1.0); }),
                       {"'lambda'", "Re < 0", "(1, 3)", "0.2"});
  testing::check_error(with([](auto& m) { m.lambda(0, 0) = complex<double>(0.0, 0.0); }), {"'lambda'", "Re < 0"});
  testing::check_error(with([](auto& m) { m.log_dt[0] = -1000.0; }), {"'log_dt'", "dt = exp(log_dt) > 0"});
  testing::check_error(with([](auto& m) { m.log_dt.push_back(0.0); }), {"'log_dt'", "size = 2", "size = 3"});
  testing::check_error(with([](auto& m) { m.q = tensor<complex<double>, 3>(2, 2, 4); }), {"'q'", "rank (extent 0) = 1"});
  testing::check_error(with([](auto& m) { m.p = tensor<complex<double>, 3>(1, 3, 4); }), {"'p'", "channels (extent 1) = 2"});
  testing::check_error(with([](auto& m) { m.p = tensor<complex<double>, 3>(0, 2, 4); }), {"'p (rank, extent 0)'", "positive"});
  testing::check_error(with([](auto& m) { m.b = matrix<complex<double>>(2, 5); }), {"'b'", "states (extent 1) = 4"});
  testing::check_error(with([](auto& m) { m.c = matrix<complex<double>>(3, 4); }), {"'c'", "channels (extent 0) = 2"});
  testing::check_error(with([](auto& m) { m.skip = {1.0}; }), {"'skip'", "size = 2"});
  testing::check_error(with([](auto& m) { m.lambda = matrix<complex<double>>(0, 4); }), {"'lambda (channels, extent 0)'"});
  testing::check_error([] { s4_mixer<double>::init(2, 5, 1); }, {"'state_size'", "even", "5"});
  testing::check_error([] { s4_mixer<double>::init(2, 0, 1); }, {"'state_size'", "positive"});
  testing::check_error([] { s4_mixer<double>::init(0, 8, 1); }, {"'channels'", "positive"});
  testing::check_error([] { s4_mixer<double>::init(1, 8, 1, 0); }, {"'rank'", "positive"});
  testing::check_error([] { s4_mixer<double>::init(1, 8, 1, 1, 0.0); }, {"'dt_min'", "positive"});
  testing::check_error([&] { (void)good.kernel(0); }, {"'length'", "positive"});
  testing::check_error([&] { (void)good.bind(index_t(-3)); }, {"'length'", "positive", "-3"});
  matrix<double> x1(1, 5), x0(2, 0);
  testing::check_error([&] { (void)good.bind(x1.view()); }, {"'x'", "channels (extent 0) = 2", "= 1"});
  testing::check_error([&] { (void)good.bind(x0.view()); }, {"'x (length, extent 1)'", "positive"});
}
