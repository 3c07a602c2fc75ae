#define BOOST_TEST_MODULE analysis
#include <boost/test/unit_test.hpp>

#include <Eigen/Dense>

#include <cmath>

#include "common/oracles.hpp"
#include "mixlens/analysis/attention_count.hpp"
#include "mixlens/analysis/attention_span.hpp"
#include "mixlens/analysis/classify.hpp"
#include "mixlens/analysis/data_dependence.hpp"
#include "mixlens/analysis/diagonal_control.hpp"
#include "mixlens/analysis/rank.hpp"
#include "mixlens/analysis/semiseparable.hpp"
#include "mixlens/analysis/time_invariance.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/rg_lru.hpp"
#include "mixlens/ops/rwkv4.hpp"
#include "mixlens/ops/s5.hpp"
#include "mixlens/ops/s6.hpp"
#include "mixlens/ops/softmax_attention.hpp"
#include "mixlens/ops/ssd.hpp"

using namespace mixlens;

namespace {

Eigen::MatrixXd to_eigen(const matrix<double>& m) {
  Eigen::MatrixXd e(m.extent(0), m.extent(1));
  for (index_t i = 0; i < m.extent(0); ++i)
    for (index_t j = 0; j < m.extent(1); ++j) e(i, j) = m(i, j);
  return e;
}

// U·Vᵀ for random U (rows × r) and V (cols × r): rank r exactly.
matrix<double> low_rank(index_t rows, index_t cols, index_t r, std::uint64_t seed) {
  auto u = testing::random_matrix<double>(rows, r, seed), v = testing::random_matrix<double>(cols, r, seed + 1);
  matrix<double> m(rows, cols);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j)
      for (index_t k = 0; k < r; ++k) m(i, j) += u(i, k) * v(j, k);
  return m;
}

// Lower-triangular Toeplitz matrix of a kernel.
matrix<double> toeplitz(const std::vector<double>& k) {
  const index_t L = static_cast<index_t>(k.size());
  matrix<double> m(L, L);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j <= i; ++j) m(i, j) = k[static_cast<std::size_t>(i - j)];
  return m;
}

// diag(g)·K·diag(h): a gate–mixer–gate component.
matrix<double> gated(const matrix<double>& k, const std::vector<double>& g, const std::vector<double>& h) {
  matrix<double> m(k.extent(0), k.extent(1));
  for (index_t i = 0; i < k.extent(0); ++i)
    for (index_t j = 0; j < k.extent(1); ++j) m(i, j) = g[static_cast<std::size_t>(i)] * k(i, j) * h[static_cast<std::size_t>(j)];
  return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(jacobi_svd_matches_eigen) {
  for (auto [rows, cols] : {std::pair<index_t, index_t>{1, 1}, {7, 3}, {3, 7}, {40, 40}, {65, 20}}) {
    auto a = testing::random_matrix<double>(rows, cols, 10 * rows + cols);
    auto mine = detail::jacobi_svd(a.view(), true);
    Eigen::JacobiSVD<Eigen::MatrixXd> ref(to_eigen(a));
    const auto s = ref.singularValues();
    BOOST_TEST_REQUIRE(mine.s.size() == static_cast<std::size_t>(s.size()));
    for (index_t k = 0; k < s.size(); ++k) BOOST_TEST(std::abs(mine.s[k] - s(k)) <= 1e-13 * s(0));
    // A = U Σ Vᵀ with orthonormal columns.
    const index_t r = static_cast<index_t>(mine.s.size());
    double err = 0, orth = 0;
    for (index_t i = 0; i < rows; ++i)
      for (index_t j = 0; j < cols; ++j) {
        double acc = 0;
        for (index_t k = 0; k < r; ++k) acc += mine.u(i, k) * mine.s[k] * mine.v(j, k);
        err = std::max(err, std::abs(acc - a(i, j)));
      }
    for (index_t p = 0; p < r; ++p)
      for (index_t q = 0; q < r; ++q) {
        double uu = 0, vv = 0;
        for (index_t i = 0; i < rows; ++i) uu += mine.u(i, p) * mine.u(i, q);
        for (index_t j = 0; j < cols; ++j) vv += mine.v(j, p) * mine.v(j, q);
        orth = std::max({orth, std::abs(uu - (p == q)), std::abs(vv - (p == q))});
      }
    BOOST_TEST(err <= 1e-13 * s(0));
    BOOST_TEST(orth <= 1e-13);
  }
}

BOOST_AUTO_TEST_CASE(numerical_rank_of_known_matrices) {
  for (index_t r : {0, 1, 3, 8}) {
    auto m = low_rank(30, 20, r, 5 + r);
    BOOST_TEST(analysis::numerical_rank(m.view()) == r);
    Eigen::JacobiSVD<Eigen::MatrixXd> ref(to_eigen(m));
    auto mine = analysis::singular_values(m.view());
    for (index_t k = 0; k < 20; ++k) BOOST_TEST(std::abs(mine[k] - ref.singularValues()(k)) <= 1e-12 * (1 + mine[0]));
  }
  // Graded singular values 10^{−k}: the tolerance decides.
  matrix<double> d(6, 6);
  for (index_t k = 0; k < 6; ++k) d(k, k) = std::pow(10.0, -2.0 * double(k));
  BOOST_TEST(analysis::numerical_rank(d.view(), 1e-5) == 3);
  BOOST_TEST(analysis::numerical_rank(d.view(), 0.0) == 6);
}

BOOST_AUTO_TEST_CASE(toeplitz_distance_known_values) {
  auto k = testing::random_vector<double>(50, 3, -1, 1);
  BOOST_TEST(analysis::toeplitz_distance(toeplitz(k).view()) <= 1e-15);
  matrix<double> e(2, 2);
  e(0, 0) = 1;  // diagonal mean 1/2: residual (±1/2), distance √(1/2)
  BOOST_TEST(std::abs(analysis::toeplitz_distance(e.view()) - std::sqrt(0.5)) <= 1e-15);
  matrix<double> zero(4, 4);
  BOOST_TEST(analysis::toeplitz_distance(zero.view()) == 0.0);
  // A materialized LTI operator.
  auto kernel = testing::random_matrix<double>(1, 20, 4);
  causal_conv_operator<double, short_conv_kind> conv(kernel.view(), {}, 20);
  BOOST_TEST(analysis::toeplitz_distance(materialize(conv, 0, 0).view()) <= 1e-15);
  // A gate destroys it: diag(1, 2) on an all-ones lower triangle.
  matrix<double> g(2, 2);
  g(0, 0) = 1;
  g(1, 0) = 2;
  g(1, 1) = 2;  // main diagonal (1, 2): mean 1.5, residual ±0.5; sub-diagonal exact
  BOOST_TEST(std::abs(analysis::toeplitz_distance(g.view()) - std::sqrt(0.5 / 9.0)) <= 1e-15);
}

BOOST_AUTO_TEST_CASE(data_dependence_known_values) {
  auto a = testing::random_matrix<double>(8, 8, 1), b = testing::random_matrix<double>(8, 8, 2);
  BOOST_TEST(analysis::relative_change(a.view(), a.view()) == 0.0);
  matrix<double> two(8, 8);
  for (index_t i = 0; i < a.size(); ++i) two.data()[i] = 2 * a.data()[i];
  BOOST_TEST(std::abs(analysis::relative_change(two.view(), a.view()) - 1.0) <= 1e-15);
  // M(x) = A + x·B at x = 0.3: the central difference is exact, ‖B‖/‖A + 0.3B‖.
  const double x = 0.3, eps = 1e-3;
  matrix<double> mp(8, 8), mm(8, 8), m(8, 8);
  double nb = 0, nm = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    mp.data()[i] = a.data()[i] + (x + eps) * b.data()[i];
    mm.data()[i] = a.data()[i] + (x - eps) * b.data()[i];
    m.data()[i] = a.data()[i] + x * b.data()[i];
    nb += b.data()[i] * b.data()[i];
    nm += m.data()[i] * m.data()[i];
  }
  BOOST_TEST(std::abs(analysis::sensitivity(mp.view(), mm.view(), m.view(), eps) - std::sqrt(nb / nm)) <= 1e-9);
  BOOST_TEST(analysis::sensitivity(a.view(), a.view(), a.view(), eps) == 0.0);
}

BOOST_AUTO_TEST_CASE(ratio_rank_known_values) {
  const index_t L = 64;
  auto k = testing::random_vector<double>(L, 7, 0.5, 1.5);
  for (index_t d = 0; d < L; ++d) k[static_cast<std::size_t>(d)] *= std::exp(-0.05 * double(d));
  const auto K = toeplitz(k);
  auto gates = [](std::uint64_t seed) { return testing::random_vector<double>(L, seed, 0.2, 2.0); };
  // Gate–mixer–gate with different gates: rank one exactly.
  auto m = gated(K, gates(1), gates(2)), m0 = gated(K, gates(3), gates(4));
  auto rr = analysis::ratio_rank(m.view(), m0.view());
  BOOST_TEST(rr.rank == 1);
  BOOST_TEST(rr.second_singular <= 1e-13);
  BOOST_TEST(rr.blocks == 6);  // 16-blocks below the diagonal of a 64 × 64 matrix: 1 + 2 + 3
  // Fixed: R ≡ 1.
  BOOST_TEST(analysis::ratio_rank(K.view(), K.view()).rank == 1);
  // Two gate pairs: K ∘ (g₁h₁ᵀ + g₂h₂ᵀ) against K gives rank two.
  auto two = gated(K, gates(5), gates(6)), second = gated(K, gates(7), gates(8));
  for (index_t i = 0; i < two.size(); ++i) two.data()[i] += second.data()[i];
  BOOST_TEST(analysis::ratio_rank(two.view(), K.view()).rank == 2);
  // A generic data-controlled matrix: full rank blocks.
  auto random = testing::random_matrix<double>(L, L, 9);
  BOOST_TEST(analysis::ratio_rank(random.view(), K.view()).rank == 16);
  // A banded mixer (3 taps): no 16-block inside the support, the test is inconclusive.
  std::vector<double> band(L, 0.0);
  band[0] = band[1] = band[2] = 1;
  auto b = toeplitz(band);
  auto inconclusive = analysis::ratio_rank(b.view(), b.view());
  BOOST_TEST(inconclusive.blocks == 0);
  BOOST_TEST(inconclusive.rank == 0);
  auto small = analysis::ratio_rank(b.view(), b.view(), {.block = 1});
  BOOST_TEST(small.blocks > 0);
  BOOST_TEST(small.rank == 1);
}

BOOST_AUTO_TEST_CASE(semiseparable_rank_known_values) {
  const index_t L = 48, N = 3;
  // tril(C Bᵀ) times a scalar decay: rank ≤ N off the diagonal (= N generically).
  auto c = testing::random_matrix<double>(L, N, 1), b = testing::random_matrix<double>(L, N, 2);
  matrix<double> m(L, L);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j <= i; ++j) {
      for (index_t n = 0; n < N; ++n) m(i, j) += c(i, n) * b(j, n);
      m(i, j) *= std::pow(0.97, double(i - j));
    }
  auto r = analysis::semiseparable_rank(m.view());
  BOOST_TEST(r.rank == N);
  BOOST_TEST(r.splits.size() == 7u);
  BOOST_TEST(analysis::semiseparable_rank(m.view(), {.splits = 0}).splits.size() == std::size_t(L - 1));
  BOOST_TEST(analysis::semiseparable_rank(m.view(), {.splits = 0}).rank == N);
  // An exponential Toeplitz matrix ρ^{i−j}: rank one.
  std::vector<double> k(L);
  for (index_t d = 0; d < L; ++d) k[static_cast<std::size_t>(d)] = std::pow(0.9, double(d));
  BOOST_TEST(analysis::semiseparable_rank(toeplitz(k).view()).rank == 1);
  // A random lower-triangular matrix: the blocks have full rank; the middle split (24 × 24) is the largest.
  auto full = testing::random_matrix<double>(L, L, 3);
  auto fr = analysis::semiseparable_rank(full.view(), {.splits = 0});
  BOOST_TEST(fr.rank == L / 2);
  BOOST_TEST(fr.split == L / 2 - 1);
  // Capped blocks: the corner at the diagonal keeps the low-rank bound and caps the full rank.
  BOOST_TEST(analysis::semiseparable_rank(m.view(), {.splits = 0, .max_block = 8}).rank == N);
  BOOST_TEST(analysis::semiseparable_rank(full.view(), {.splits = 0, .max_block = 8}).rank == 8);
  BOOST_TEST(analysis::semiseparable_rank(full.view(), {.splits = 0, .max_block = 100}).rank == L / 2);
  // S6 with real A and N states per channel: rank ≤ N.
  const index_t D = 1, S = 4;
  matrix<double> delta(D, L), a(D, S);
  tensor<double, 3> bb(1, S, L), cc(1, S, L);
  for (index_t t = 0; t < L; ++t) delta(0, t) = 0.02 + 0.01 * std::sin(double(t));
  for (index_t n = 0; n < S; ++n) a(0, n) = -double(n + 1);
  auto rb = testing::random_matrix<double>(S, L, 4), rc = testing::random_matrix<double>(S, L, 5);
  std::copy(rb.data(), rb.data() + rb.size(), bb.data());
  std::copy(rc.data(), rc.data() + rc.size(), cc.data());
  s6_operator<double> s6(delta.view(), a.view(), bb.view(), cc.view());
  BOOST_TEST(analysis::semiseparable_rank(materialize(s6, 0, 0).view()).rank == S);
}

BOOST_AUTO_TEST_CASE(attention_span_known_values) {
  const index_t L = 40, s = 5;
  matrix<double> shift(L, L);
  for (index_t i = s; i < L; ++i) shift(i, i - s) = 1;
  auto sp = analysis::attention_span(shift.view());
  BOOST_TEST(sp.mass_distance == double(s));
  BOOST_TEST(sp.max_distance == double(s));
  BOOST_TEST(sp.rows == L - s);
  for (index_t k = 0; k < L; ++k) BOOST_TEST(sp.profile[k] == (k == s ? 1.0 : 0.0));
  // ρ^{i−j}: row i holds 90% of its mass within the smallest k with
  // 1 − ρ^{k+1} ≥ 0.9 (1 − ρ^{i+1}).
  const double rho = 0.8;
  std::vector<double> k(L);
  for (index_t d = 0; d < L; ++d) k[static_cast<std::size_t>(d)] = std::pow(rho, double(d));
  auto dm = analysis::attention_span(toeplitz(k).view(), 0.9);
  double expected = 0;
  for (index_t i = 0; i < L; ++i) {
    index_t d = 0;
    while (1 - std::pow(rho, double(d + 1)) < 0.9 * (1 - std::pow(rho, double(i + 1))) * (1 - 1e-12)) ++d;
    expected += double(d);
  }
  BOOST_TEST(std::abs(dm.mass_distance - expected / L) <= 1e-12);
  BOOST_TEST(dm.max_distance == 10.0);  // 0.8^11 = 0.086 ≤ 0.1 < 0.8^10
  for (index_t d = 0; d < L; ++d) BOOST_TEST(std::abs(dm.profile[d] - std::pow(rho, double(d))) <= 1e-15);
  // Identity: span 0.
  matrix<double> eye(L, L);
  for (index_t i = 0; i < L; ++i) eye(i, i) = 1;
  BOOST_TEST(analysis::attention_span(eye.view()).mass_distance == 0.0);
}

BOOST_AUTO_TEST_CASE(attention_counts) {
  const index_t D = 6, N = 4, L = 8;
  matrix<double> delta(D, L), a(D, N);
  tensor<double, 3> b(1, N, L), c(1, N, L);
  for (index_t i = 0; i < delta.size(); ++i) delta.data()[i] = 0.1;
  for (index_t i = 0; i < a.size(); ++i) a.data()[i] = -1;
  s6_operator<double> s6(delta.view(), a.view(), b.view(), c.view());
  auto cs6 = analysis::attention_count(s6);
  BOOST_TEST(cs6.matrices == D);
  BOOST_TEST(cs6.inner == D * N);
  auto attn = softmax_attention_mixer<double>::init(D, 3, 2, 2, 1);
  auto x = testing::random_matrix<double>(D, L, 2);
  auto ca = analysis::attention_count(attn.bind(x.view()));
  BOOST_TEST(ca.matrices == 3);
  BOOST_TEST(ca.inner == 3);
  auto ssd = ssd_mixer<double>::init(3, 2, N, 1);
  auto cs = analysis::attention_count(ssd.bind(x.view()));
  BOOST_TEST(cs.matrices == 3);
  BOOST_TEST(cs.inner == 3 * N);
  // S5 mixes channels: D² blocks, each a sum over its stored states (before, its
  // view named them states() and the inner count silently equalled the blocks).
  auto s5 = s5_mixer<double>::init(D, {.state_size = 8});
  auto c5 = analysis::attention_count(s5.bind(L));
  BOOST_TEST(c5.matrices == D * D);
  BOOST_TEST(c5.inner == D * D * s5.bind(L)->states());
  BOOST_TEST(s5.bind(L)->states() == 4);  // 8 states, conjugate pairs stored once
  auto kernel = testing::random_matrix<double>(D, 3, 4);
  BOOST_TEST(analysis::attention_count(causal_conv_operator<double, short_conv_kind>(kernel.view(), {}, L)).matrices == D);
  // Mamba-130m (d_model 768, expand 2, N 16) against a 12-head transformer layer.
  static_assert(analysis::mamba_layer_count(768, 2, 16).matrices == 1536);
  static_assert(analysis::mamba_layer_count(768, 2, 16).inner == 24576);
  static_assert(analysis::transformer_layer_count(12).matrices == 12);
}

BOOST_AUTO_TEST_CASE(classification) {
  using analysis::classify;
  BOOST_TEST((classify(0.0, 1, 10) == data_control::none));
  BOOST_TEST((classify(0.3, 1, 10) == data_control::diagonal));
  BOOST_TEST((classify(0.3, 5, 10) == data_control::non_diagonal));
  BOOST_TEST((classify(0.3, 0, 0) == data_control::non_diagonal));  // inconclusive ratio test
}

// The instruments on real operators: the classes their traits claim.
BOOST_AUTO_TEST_CASE(operator_verdicts) {
  const index_t D = 4, L = 96;
  auto x = testing::random_matrix<double>(D, L, 1), x0 = testing::random_matrix<double>(D, L, 2);
  auto verdict = [&](const auto& bind) {
    auto op = bind(x), op0 = bind(x0);
    using V = std::remove_cvref_t<decltype(view_of(op))>;
    auto m = materialize(op, 0, 0), m0 = materialize(op0, 0, 0);
    const auto rr = analysis::ratio_rank(m.view(), m0.view());
    const auto got = analysis::classify(analysis::relative_change(m.view(), m0.view()), rr.rank, rr.blocks);
    BOOST_TEST((got == operator_traits<V>::control), operator_traits<V>::name << ": ratio rank " << rr.rank);
  };
  const auto rg = rg_lru_mixer<double>::init(D, 3);
  verdict([&](const matrix<double>& u) { return rg.bind(u.view()); });
  const auto rw = rwkv4_mixer<double>::init(D, 4);
  verdict([&](const matrix<double>& u) { return rw.bind(u.view(), {.receptance = true}); });
  const auto sd = ssd_mixer<double>::init(2, 2, 4, 5);
  verdict([&](const matrix<double>& u) { return sd.bind(u.view()); });
  const auto sa = softmax_attention_mixer<double>::init(D, 2, 2, 2, 6);
  verdict([&](const matrix<double>& u) { return sa.bind(u.view()); });
  const auto s6 = s6_mixer<double>::init(D, 8, 1, 7);
  verdict([&](const matrix<double>& u) { return s6.bind(u.view()); });
}

BOOST_AUTO_TEST_CASE(bad_inputs_throw) {
  matrix<double> rect(3, 4), sq(4, 4), sq3(3, 3);
  testing::check_error([&] { (void)analysis::toeplitz_distance(rect.view()); }, {"toeplitz_distance", "'m'", "columns = 3", "= 4"});
  testing::check_error([&] { (void)analysis::relative_change(sq.view(), sq3.view()); }, {"relative_change", "'m_x'", "rows = 3", "= 4"});
  testing::check_error([&] { (void)analysis::sensitivity(sq.view(), sq.view(), sq.view(), 0.0); }, {"'eps'", "positive"});
  testing::check_error([&] { (void)analysis::sensitivity(sq.view(), sq3.view(), sq.view(), 1.0); }, {"'m_minus'", "rows = 4", "= 3"});
  testing::check_error([&] { (void)analysis::ratio_rank(sq.view(), sq3.view()); }, {"ratio_rank", "'m_x'"});
  testing::check_error([&] { (void)analysis::ratio_rank(sq.view(), sq.view(), {.block = 0}); }, {"'block'", "positive"});
  testing::check_error([&] { (void)analysis::semiseparable_rank(rect.view()); }, {"semiseparable_rank", "'m'"});
  testing::check_error([&] { (void)analysis::semiseparable_rank(sq.view(), {.splits = -1}); }, {"'splits'", "-1"});
  testing::check_error([&] { (void)analysis::semiseparable_rank(sq.view(), {.max_block = -2}); }, {"'max_block'", "-2"});
  testing::check_error([&] { (void)analysis::attention_span(sq.view(), 1.5); }, {"'mass'", "(0, 1]", "1.5"});
  testing::check_error([&] { (void)analysis::numerical_rank(sq.view(), -1.0); }, {"'rel_tol'"});
}
