#define BOOST_TEST_MODULE s5
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <complex>
#include <random>
#include <type_traits>

#include <Eigen/Dense>

#include "common/oracles.hpp"
#include "mixlens/detail/hippo.hpp"
#include "mixlens/ops/s5.hpp"

using namespace mixlens;

static_assert(linear_operator<s5_operator<double>>);
static_assert(linear_operator<s5_operator<float>>);
static_assert(mixer<s5_mixer<double>>);
static_assert(std::is_trivially_copyable_v<s5_operator<float>>);
static_assert(operator_traits<s5_operator<double>>::name == "S5");
static_assert(operator_traits<s5_operator<double>>::control == data_control::none);
static_assert(operator_traits<s5_operator<double>>::time_invariant);
static_assert(operator_traits<s5_operator<double>>::channel_mixing);

namespace {

using cd = std::complex<double>;

template <class T>
cd to_std(const complex<T>& z) {
  return {double(z.real()), double(z.imag())};
}

// Independent reference: discretizes the mixer's continuous parameters here and
// runs the state recurrence x_t = Λ̄ x_{t−1} + B̄ u_t step by step in double
// (and for a bidirectional mixer x←_t = Λ̄ x←_{t+1} + B̄ u_t, read by C̃←).
template <class T>
matrix<T> naive_s5(const s5_mixer<T>& m, const matrix<T>& u) {
  const index_t P = m.states(), H = m.channels(), L = u.extent(1);
  std::vector<cd> lb(P);
  std::vector<std::vector<cd>> bb(P, std::vector<cd>(H));
  for (index_t p = 0; p < P; ++p) {
    const cd l = to_std(m.lambda()[p]);
    const double dt = std::exp(double(m.log_step()[p]));
    cd scale;
    if (m.discretization() == s5_discretization::zoh) {
      lb[p] = std::exp(l * dt);
      scale = (lb[p] - 1.0) / l;
    } else {
      lb[p] = (1.0 + l * dt / 2.0) / (1.0 - l * dt / 2.0);
      scale = dt / (1.0 - l * dt / 2.0);
    }
    for (index_t h = 0; h < H; ++h) bb[p][h] = scale * to_std(m.b_tilde()(p, h));
  }
  const double f = m.conj_sym() ? 2 : 1;
  std::vector<double> acc(static_cast<std::size_t>(H * L));
  for (index_t o = 0; o < H; ++o)
    for (index_t t = 0; t < L; ++t) acc[o * L + t] = (m.skip().empty() ? 0.0 : double(m.skip()[o])) * double(u(o, t));
  auto run = [&](const matrix<complex<T>>& c, bool reverse) {
    std::vector<cd> state(P);
    for (index_t k = 0; k < L; ++k) {
      const index_t t = reverse ? L - 1 - k : k;
      for (index_t p = 0; p < P; ++p) {
        cd in = 0;
        for (index_t h = 0; h < H; ++h) in += bb[p][h] * double(u(h, t));
        state[p] = lb[p] * state[p] + in;
      }
      for (index_t o = 0; o < H; ++o) {
        cd sum = 0;
        for (index_t p = 0; p < P; ++p) sum += to_std(c(o, p)) * state[p];
        acc[o * L + t] += f * sum.real();
      }
    }
  };
  run(m.c_tilde(), false);
  if (m.bidirectional()) run(m.c_backward(), true);
  matrix<T> y(H, L);
  for (index_t k = 0; k < H * L; ++k) y.data()[k] = static_cast<T>(acc[k]);
  return y;
}

s5_init small_init(std::uint64_t seed, bool conj_sym = true, s5_discretization disc = s5_discretization::zoh) {
  s5_init init;
  init.state_size = 8;
  init.blocks = 2;
  init.conj_sym = conj_sym;
  init.discretization = disc;
  init.seed = seed;
  return init;
}

template <class T>
void check_against_everything(const s5_mixer<T>& m, index_t L, std::uint64_t seed) {
  auto x = testing::random_matrix<T>(m.channels(), L, 1000 + seed + L);
  auto op = m.bind(x.view());
  testing::check_linear_operator(op, x.view(), testing::tolerance<T>());
  const auto y = mix(op, x.view());
  const double naive_err = testing::relative_error(y, naive_s5(m, x));
  BOOST_TEST(naive_err <= 10 * testing::tolerance<T>(), "naive, L=" << L);
}

}  // namespace

BOOST_AUTO_TEST_CASE(hippo_n_eigendecomposition_is_exact) {
  for (index_t n : {1, 2, 3, 4, 8, 16, 32, 64}) {
    const auto s = detail::hippo_n(n);
    // S is HiPPO-LegS plus p·pᵀ, p(k) = sqrt(k + 1/2), built here from the definitions.
    for (index_t r = 0; r < n; ++r)
      for (index_t c = 0; c < n; ++c) {
        const double legs = r > c ? -std::sqrt((2.0 * r + 1) * (2.0 * c + 1)) : (r == c ? -(r + 1.0) : 0.0);
        BOOST_TEST(std::abs(s(r, c) - (legs + std::sqrt((r + 0.5) * (c + 0.5)))) <= 1e-12);
      }
    const auto e = detail::hippo_n_eigendecomposition(n);
    double sum_mu2 = 0, expected = 0;
    for (index_t j = 0; j < n; ++j) {
      const cd l = to_std(e.lambda[j]);
      BOOST_TEST(l.real() == -0.5);  // the known real part of every HiPPO-N eigenvalue
      BOOST_TEST(std::abs(l.imag() + to_std(e.lambda[n - 1 - j]).imag()) <= 1e-10 * n * n);  // ±μ pairs
      if (j + 1 < n) BOOST_TEST(l.imag() <= to_std(e.lambda[j + 1]).imag());
      if (n % 2 == 0 && j < n / 2) BOOST_TEST(l.imag() < 0);
      sum_mu2 += l.imag() * l.imag();
      for (index_t k = j + 1; k < n; ++k) expected += (2.0 * j + 1) * (2.0 * k + 1) / 2;  // ‖K‖_F²
    }
    BOOST_TEST(std::abs(sum_mu2 - expected) <= 1e-12 * std::max(1.0, expected), "n=" << n);
    // S·V = V·Λ and V*·V = I.
    double resid = 0, orth = 0;
    for (index_t r = 0; r < n; ++r)
      for (index_t j = 0; j < n; ++j) {
        cd sv = 0, vv = 0;
        for (index_t k = 0; k < n; ++k) {
          sv += s(r, k) * to_std(e.v(k, j));
          vv += std::conj(to_std(e.v(k, r))) * to_std(e.v(k, j));
        }
        resid = std::max(resid, std::abs(sv - to_std(e.v(r, j)) * to_std(e.lambda[j])));
        orth = std::max(orth, std::abs(vv - (r == j ? 1.0 : 0.0)));
      }
    BOOST_TEST(resid <= 1e-12 * n * n, "n=" << n << " residual " << resid);
    BOOST_TEST(orth <= 1e-13 * n, "n=" << n << " orthogonality " << orth);
  }
  const auto two = detail::hippo_n_eigendecomposition(2);  // K = [[0, √3/2], [−√3/2, 0]]
  BOOST_TEST(std::abs(two.lambda[0].imag() + std::sqrt(3.0) / 2) <= 1e-15);
  BOOST_TEST(std::abs(two.lambda[1].imag() - std::sqrt(3.0) / 2) <= 1e-15);
}

BOOST_AUTO_TEST_CASE(hippo_n_eigendecomposition_large_against_eigen) {
  // The sizes S4 and S5 use in practice, odd included: residual and unitarity
  // relative to rounding, the spectrum against an independent Hermitian solver
  // on −i·K, and exact conjugate pairs (S is real).
  for (index_t n : {127, 256, 512}) {
    const auto s = detail::hippo_n(n);
    const auto e = detail::hippo_n_eigendecomposition(n);
    Eigen::MatrixXcd sm(n, n), h(n, n), v(n, n);
    Eigen::VectorXcd lambda(n);
    for (index_t r = 0; r < n; ++r) {
      lambda(r) = to_std(e.lambda[r]);
      for (index_t c = 0; c < n; ++c) {
        sm(r, c) = s(r, c);
        h(r, c) = cd(0, r == c ? 0.0 : -s(r, c));
        v(r, c) = to_std(e.v(r, c));
      }
    }
    const double resid = (sm * v - v * lambda.asDiagonal()).norm() / sm.norm();
    const double orth = (v.adjoint() * v - Eigen::MatrixXcd::Identity(n, n)).norm();
    BOOST_TEST(resid <= 1e-12, "n=" << n << " residual " << resid);
    BOOST_TEST(orth <= 1e-12, "n=" << n << " orthogonality " << orth);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXcd> reference(h);
    const Eigen::VectorXd& mu = reference.eigenvalues();  // ascending
    const double scale = mu.cwiseAbs().maxCoeff();
    double eig_err = 0;
    for (index_t j = 0; j < n; ++j) {
      BOOST_TEST(lambda(j).real() == -0.5);
      eig_err = std::max(eig_err, std::abs(lambda(j).imag() - mu(j)));
    }
    BOOST_TEST(eig_err <= 1e-13 * scale, "n=" << n << " eigenvalues " << eig_err << " of " << scale);
    bool pairs = true;
    for (index_t j = 0; j < n; ++j) {
      pairs = pairs && e.lambda[n - 1 - j] == cuda::std::conj(e.lambda[j]);
      if (2 * j + 1 != n)
        for (index_t r = 0; r < n; ++r) pairs = pairs && e.v(r, n - 1 - j) == cuda::std::conj(e.v(r, j));
    }
    BOOST_TEST(pairs, "n=" << n << " conjugate pairs");
    if (n % 2 == 1) BOOST_TEST(e.lambda[n / 2].imag() == 0.0);
  }
  testing::check_error([] { detail::hippo_n_eigendecomposition(0); }, {"n", "positive", "0"});
}

BOOST_AUTO_TEST_CASE(initialization_follows_s5) {
  s5_init init;
  init.state_size = 16;
  init.blocks = 2;
  init.seed = 7;
  const auto m = s5_mixer<double>::init(3, init);
  BOOST_TEST(m.states() == 4 * 2);  // half of each block of 8 under conjugate symmetry
  BOOST_TEST(m.channels() == 3);
  const auto e = detail::hippo_n_eigendecomposition(8);
  for (index_t p = 0; p < m.states(); ++p) {
    BOOST_TEST(m.lambda()[p].real() == -0.5);
    BOOST_TEST(m.lambda()[p].imag() == e.lambda[p % 4].imag());  // same spectrum in every block
    BOOST_TEST(m.log_step()[p] >= std::log(1e-3));
    BOOST_TEST(m.log_step()[p] <= std::log(1e-1));
  }
  const auto same = s5_mixer<double>::init(3, init);
  BOOST_TEST(same.b_tilde()(1, 2) == m.b_tilde()(1, 2));
  BOOST_TEST(same.c_tilde()(2, 3) == m.c_tilde()(2, 3));
  // Redraw the documented sequence: B (16 × 3), then C (3 × 16, Re and Im
  // interleaved), both truncated normal with std 1/sqrt(16); B̃ = V*·B, C̃ = C·V
  // with V block diagonal of the 4 kept eigenvectors per block.
  detail::splitmix64 gen(7);
  matrix<double> b(16, 3);
  for (index_t k = 0; k < b.size(); ++k) b.data()[k] = gen.truncated_normal(0.25);
  matrix<cd> c(3, 16);
  for (index_t k = 0; k < c.size(); ++k) {
    const double re = gen.truncated_normal(0.25);
    c.data()[k] = {re, gen.truncated_normal(0.25)};
  }
  double err_b = 0, err_c = 0;
  for (index_t blk = 0; blk < 2; ++blk)
    for (index_t j = 0; j < 4; ++j) {
      for (index_t h = 0; h < 3; ++h) {
        cd bt = 0, ct = 0;
        for (index_t k = 0; k < 8; ++k) {
          bt += std::conj(to_std(e.v(k, j))) * b(blk * 8 + k, h);
          ct += c(h, blk * 8 + k) * to_std(e.v(k, j));
        }
        err_b = std::max(err_b, std::abs(bt - to_std(m.b_tilde()(blk * 4 + j, h))));
        err_c = std::max(err_c, std::abs(ct - to_std(m.c_tilde()(h, blk * 4 + j))));
      }
    }
  BOOST_TEST(err_b <= 1e-14);
  BOOST_TEST(err_c <= 1e-14);
  init.seed = 8;
  const auto other = s5_mixer<double>::init(3, init);
  BOOST_TEST(other.b_tilde()(1, 2) != m.b_tilde()(1, 2));
  init.conj_sym = false;
  init.c_init = s5_c_init::complex_normal;
  const auto full = s5_mixer<float>::init(2, init);
  BOOST_TEST(full.states() == 16);
  BOOST_TEST(!full.conj_sym());
}

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive_double) {
  for (std::uint64_t seed : {1u, 2u})
    for (index_t L : testing::test_lengths()) check_against_everything(s5_mixer<double>::init(3, small_init(seed)), L, seed);
}

BOOST_AUTO_TEST_CASE(apply_matches_materialize_and_naive_float) {
  for (std::uint64_t seed : {3u, 4u})
    for (index_t L : testing::test_lengths()) check_against_everything(s5_mixer<float>::init(3, small_init(seed)), L, seed);
}

// Bidirectional S5: a second C̃ reads the reverse scan; both triangles fill,
// the blocks stay Toeplitz, and the naive two-way recurrence agrees.
BOOST_AUTO_TEST_CASE(bidirectional_against_two_recurrences) {
  for (auto disc : {s5_discretization::zoh, s5_discretization::bilinear})
    for (bool cs : {true, false}) {
      const auto base = s5_mixer<double>::init(3, small_init(9, cs, disc));
      const auto other = s5_mixer<double>::init(3, small_init(10, cs, disc));
      const s5_mixer<double> m(base.lambda(), base.b_tilde(), base.c_tilde(), base.log_step(), base.skip(), disc, cs,
                               false, other.c_tilde());
      BOOST_TEST(m.bidirectional());
      for (index_t L : testing::test_lengths(512)) {
        check_against_everything(m, L, 11);
        const auto op = m.bind(L);
        BOOST_TEST(!is_causal(op.view()));
        if (L > 1) BOOST_TEST(materialize(op, 0, 1)(0, L - 1) != 0.0);
      }
      const auto fb = s5_mixer<float>::init(3, small_init(9, cs, disc));
      const s5_mixer<float> mf(fb.lambda(), fb.b_tilde(), fb.c_tilde(), fb.log_step(), fb.skip(), disc, cs, false,
                               s5_mixer<float>::init(3, small_init(10, cs, disc)).c_tilde());
      for (index_t L : {1, 16, 257}) check_against_everything(mf, L, 12);
    }
  BOOST_TEST(is_causal(s5_mixer<double>::init(3, small_init(1)).bind(8).view()));
  const auto base = s5_mixer<double>::init(3, small_init(9));
  testing::check_error([&] {
    (void)s5_mixer<double>(base.lambda(), base.b_tilde(), base.c_tilde(), base.log_step(), base.skip(),
                           s5_discretization::zoh, true, false, matrix<complex<double>>(3, base.states() + 1));
  }, {"c_backward", "states (extent 1)"});
}

// States over threads, then channels over threads: the sequential scan's
// results bit for bit, causal and bidirectional, for any thread count.
BOOST_AUTO_TEST_CASE(threaded_apply_is_bit_identical) {
  const auto base = s5_mixer<double>::init(5, small_init(13));
  const s5_mixer<double> two_way(base.lambda(), base.b_tilde(), base.c_tilde(), base.log_step(), base.skip(),
                                 s5_discretization::zoh, true, false, s5_mixer<double>::init(5, small_init(14)).c_tilde());
  for (const auto* m : {&base, &two_way})
    for (index_t L : {1, 7, 300}) {
      const auto x = testing::random_matrix<double>(5, L, 15);
      const auto op = m->bind(L);
      matrix<double> seq(5, L);
      op->apply(x.view(), seq.view(), sequential_scan{});
      for (int threads : {1, 2, 3, 0}) {
        matrix<double> par(5, L);
        op->apply(x.view(), par.view(), sequence_parallel_scan{.threads = threads, .grain = 1});
        BOOST_TEST(std::equal(par.data(), par.data() + par.size(), seq.data()),
                   "threads " << threads << " L " << L << (m->bidirectional() ? " bidirectional" : ""));
      }
    }
}

BOOST_AUTO_TEST_CASE(larger_state_all_lengths) {
  // 64 states in one HiPPO-N block (imaginary parts up to ~10^2), 4 channels.
  s5_init init;
  init.state_size = 64;
  for (auto disc : {s5_discretization::zoh, s5_discretization::bilinear}) {
    init.discretization = disc;
    for (index_t L : testing::test_lengths()) {
      init.seed = 60 + L;
      check_against_everything(s5_mixer<double>::init(4, init), L, 7);
      check_against_everything(s5_mixer<float>::init(4, init), L, 8);
    }
  }
}

BOOST_AUTO_TEST_CASE(discretizations_and_conjugate_symmetry) {
  for (auto disc : {s5_discretization::zoh, s5_discretization::bilinear})
    for (bool cs : {true, false})
      for (index_t L : testing::test_lengths(1024)) {
        check_against_everything(s5_mixer<double>::init(2, small_init(11 + L, cs, disc)), L, 5);
        check_against_everything(s5_mixer<float>::init(2, small_init(13 + L, cs, disc)), L, 6);
      }
}

BOOST_AUTO_TEST_CASE(conjugate_symmetry_equals_explicit_pairs) {
  // P/2 states with output 2·Re equal P states holding each state and its conjugate.
  const auto half = s5_mixer<double>::init(3, small_init(21));
  const index_t P = half.states(), H = half.channels();
  std::vector<complex<double>> lambda(2 * P);
  matrix<complex<double>> b(2 * P, H), c(H, 2 * P);
  std::vector<double> log_step(2 * P);
  for (index_t p = 0; p < P; ++p) {
    lambda[p] = half.lambda()[p];
    lambda[P + p] = cuda::std::conj(half.lambda()[p]);
    log_step[p] = log_step[P + p] = half.log_step()[p];
    for (index_t h = 0; h < H; ++h) {
      b(p, h) = half.b_tilde()(p, h);
      b(P + p, h) = cuda::std::conj(half.b_tilde()(p, h));
      c(h, p) = half.c_tilde()(h, p);
      c(h, P + p) = cuda::std::conj(half.c_tilde()(h, p));
    }
  }
  const s5_mixer<double> full(lambda, b, c, log_step, half.skip(), s5_discretization::zoh, false);
  const auto x = testing::random_matrix<double>(H, 300, 5);
  const auto y_half = mix(half.bind(x.view()), x.view()), y_full = mix(full.bind(x.view()), x.view());
  BOOST_TEST(testing::relative_error(y_half, y_full) <= 1e-12);
}

BOOST_AUTO_TEST_CASE(whole_operator_applied_to_vec_x_equals_apply) {
  const auto m = s5_mixer<double>::init(3, small_init(31));
  for (index_t L : {1, 7, 64, 257}) {
    const auto x = testing::random_matrix<double>(3, L, 40 + L);
    const auto op = m.bind(L);
    const auto full = materialize_full(op);
    BOOST_TEST(full.extent(0) == 3 * L);
    const auto y = mix(op, x.view());
    matrix<double> z(3, L);
    for (index_t r = 0; r < 3 * L; ++r) {
      double acc = 0;
      for (index_t k = 0; k < 3 * L; ++k) acc += full(r, k) * x.data()[k];  // vec(x): channel-major
      z.data()[r] = acc;
    }
    BOOST_TEST(testing::relative_error(y, z) <= 1e-12, "L=" << L);
  }
}

template <class T>
void check_scan_policies() {
  const auto m = s5_mixer<T>::init(3, small_init(41));
  for (index_t L : {1, 2, 31, 1000, 2048}) {
    const auto x = testing::random_matrix<T>(3, L, 50 + L);
    const auto op = m.bind(L);
    matrix<T> ref(3, L), y(3, L);
    op->apply(x.view(), ref.view(), sequential_scan{});
    op->apply(x.view(), y.view(), blelloch_scan{});
    BOOST_TEST(testing::relative_error(y, ref) <= testing::tolerance<T>(), "blelloch L=" << L);
    for (index_t chunk : {1, 7, 64}) {
      op->apply(x.view(), y.view(), chunked_scan{chunk});
      BOOST_TEST(testing::relative_error(y, ref) <= testing::tolerance<T>(), "chunked " << chunk << " L=" << L);
    }
    op->apply(x.view(), y.view());  // default policy
    BOOST_TEST(testing::relative_error(y, ref) <= testing::tolerance<T>());
  }
}

BOOST_AUTO_TEST_CASE(scan_policies_agree) {
  check_scan_policies<double>();
  check_scan_policies<float>();
}

BOOST_AUTO_TEST_CASE(bound_operator_does_not_depend_on_the_input) {
  const auto m = s5_mixer<double>::init(3, small_init(51));
  const auto x1 = testing::random_matrix<double>(3, 100, 1), x2 = testing::random_matrix<double>(3, 100, 2, 5.0);
  const auto a = m.bind(x1.view()), b = m.bind(x2.view()), c = m.bind(100);
  for (index_t o = 0; o < 3; ++o)
    for (index_t i = 0; i < 3; ++i) {
      const auto ma = materialize(a, o, i), mb = materialize(b, o, i), mc = materialize(c, o, i);
      BOOST_TEST(std::equal(ma.data(), ma.data() + ma.size(), mb.data()));
      BOOST_TEST(std::equal(ma.data(), ma.data() + ma.size(), mc.data()));
    }
  // The owner can move; its view stays valid.
  auto moved = m.bind(100);
  const auto before = mix(moved, x1.view());
  auto target = std::move(moved);
  BOOST_TEST(testing::relative_error(mix(target, x1.view()), before) == 0.0);
}

BOOST_AUTO_TEST_CASE(bad_input_throws) {
  using C = complex<double>;
  const std::vector<C> lambda = {{-0.5, 1.0}, {-0.5, -2.0}};
  const matrix<C> b(2, 3), c(3, 2);
  const std::vector<double> ls = {-3, -4}, d = {1, 2, 3};
  auto make = [&](std::vector<C> l, matrix<C> bb, matrix<C> cc, std::vector<double> s, std::vector<double> dd) {
    return s5_mixer<double>(std::move(l), std::move(bb), std::move(cc), std::move(s), std::move(dd));
  };
  BOOST_CHECK_NO_THROW(make(lambda, b, c, ls, d));
  BOOST_CHECK_NO_THROW(make(lambda, b, c, ls, {}));  // no skip
  testing::check_error([&] { make({{-0.5, 1.0}, {0.0, 1.0}}, b, c, ls, d); }, {"lambda[1]", "Re < 0", "Re = 0"});
  testing::check_error([&] { make({{0.1, 0.0}, {-1.0, 1.0}}, b, c, ls, d); }, {"lambda[0]", "Re < 0"});
  testing::check_error([&] { make(lambda, matrix<C>(3, 3), c, ls, d); }, {"b_tilde", "states (extent 0) = 2", "= 3"});
  testing::check_error([&] { make(lambda, b, matrix<C>(2, 2), ls, d); }, {"c_tilde", "channels (extent 0) = 3", "= 2"});
  testing::check_error([&] { make(lambda, b, matrix<C>(3, 4), ls, d); }, {"c_tilde", "states (extent 1) = 2", "= 4"});
  testing::check_error([&] { make(lambda, b, c, {-3}, d); }, {"log_step", "size = 2", "size = 1"});
  testing::check_error([&] { make(lambda, b, c, ls, {1, 2}); }, {"skip", "size = 3", "size = 2"});
  testing::check_error([&] { make({}, matrix<C>(0, 3), matrix<C>(3, 0), {}, d); }, {"lambda (states)", "positive", "0"});
  testing::check_error([&] { make(lambda, matrix<C>(2, 0), matrix<C>(0, 2), ls, {}); }, {"b_tilde (channels", "positive"});

  const auto m = make(lambda, b, c, ls, d);
  testing::check_error([&] { (void)m.bind(0); }, {"'length'", "positive", "0"});
  testing::check_error([&] { (void)m.bind(index_t(-2)); }, {"'length'", "-2"});
  const matrix<double> x2(2, 5), x0(3, 0), x(3, 5);
  testing::check_error([&] { (void)m.bind(x2.view()); }, {"'x'", "channels (extent 0) = 3", "= 2"});
  testing::check_error([&] { (void)m.bind(x0.view()); }, {"'length'", "0"});
  const auto op = m.bind(5);
  matrix<double> y(3, 5), y_short(3, 4), mm(5, 5), m4(4, 4);
  testing::check_error([&] { op->apply(x2.view(), y.view()); }, {"'x'", "channels (extent 0) = 3", "= 2"});
  testing::check_error([&] { op->apply(x.view(), y_short.view()); }, {"'y'", "length (extent 1) = 5", "= 4"});
  testing::check_error([&] { op->materialize(3, 0, mm.view()); }, {"'out'", "[0, 3)", "3"});
  testing::check_error([&] { op->materialize(0, -1, mm.view()); }, {"'in'", "[0, 3)", "-1"});
  testing::check_error([&] { op->materialize(0, 0, m4.view()); }, {"'m'", "rows = 5", "rows = 4"});
  std::vector<double> r(5), r4(4);
  testing::check_error([&] { op->row(0, 0, 5, vector_view<double>(r)); }, {"'t'", "[0, 5)", "5"});
  testing::check_error([&] { op->row(0, 0, 1, vector_view<double>(r4)); }, {"'row'", "size = 5", "size = 4"});
  testing::check_error([&] { op->apply(x.view(), y.view(), chunked_scan{0}); }, {"chunk", ">= 1"});

  // The view checks its spans too.
  const std::vector<C> lb(2);
  const matrix<C> bb(2, 3), cc(3, 2);
  testing::check_error([&] { s5_operator<double>(lb, matrix_view<const C>(bb.data(), 3, 2), cc.view(), {}, 4, true); },
                       {"b_bar", "states (extent 0) = 2", "= 3"});
  testing::check_error([&] { s5_operator<double>(lb, bb.view(), cc.view(), {}, 0, true); }, {"'length'", "0"});
  // Values are validate's (bind runs it): an expanding state constructs, then fails it.
  const std::vector<C> unstable = {C(0.5, 0.0), C(1.5, 0.0)};
  const s5_operator<double> grows(unstable, bb.view(), cc.view(), {}, 4, true);
  testing::check_error([&] { grows.validate(); }, {"'lambda_bar'", "|lambda_bar| <= 1", "[1]", "1.5"});
  s5_operator<double>(lb, bb.view(), cc.view(), {}, 4, true).validate();  // Λ̄ = 0 is stable

  s5_init init;
  init.state_size = 6;
  init.blocks = 2;  // block size 3: odd, cannot pair conjugates
  testing::check_error([&] { (void)s5_mixer<double>::init(2, init); }, {"options.state_size", "even block size", "3"});
  init.blocks = 4;
  testing::check_error([&] { (void)s5_mixer<double>::init(2, init); }, {"options.blocks", "divisor of state_size 6", "4"});
  init = {};
  testing::check_error([&] { (void)s5_mixer<double>::init(0, init); }, {"'channels'", "positive", "0"});
  init.state_size = 0;
  testing::check_error([&] { (void)s5_mixer<double>::init(2, init); }, {"options.state_size", "positive", "0"});
  init = {};
  init.dt_min = 0;
  testing::check_error([&] { (void)s5_mixer<double>::init(2, init); }, {"options.dt_min", "positive"});
  init = {};
  init.dt_max = 1e-4;
  testing::check_error([&] { (void)s5_mixer<double>::init(2, init); }, {"options.dt_max", ">= dt_min"});
}
