#define BOOST_TEST_MODULE s6
#include <boost/test/unit_test.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <limits>

#include "common/oracles.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/s6.hpp"

using namespace mixlens;

namespace {

template <class State>
State draw(std::mt19937_64& gen, double scale = 1.0) {
  std::normal_distribution<double> n(0.0, scale);
  if constexpr (std::is_floating_point_v<State>) return static_cast<State>(n(gen));
  else return State(n(gen), n(gen));
}

// Control signals as a trained Mamba layer produces them: Δ in [1e-3, 0.2],
// A = −(n+1) (S4D-Real) or −1/2 + iπn (S4D-Lin), B and C standard normal.
template <class T, class State>
struct controls {
  matrix<T> delta;
  matrix<State> a;
  tensor<State, 3> b, c;
  std::vector<T> skip;
  matrix<T> gate;

  controls(index_t D, index_t N, index_t G, index_t L, std::uint64_t seed, bool with_skip = false,
           bool with_gate = false)
      : delta(D, L), a(D, N), b(G, N, L), c(G, N, L), gate(with_gate ? D : 0, with_gate ? L : 0) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> u(std::log(1e-3), std::log(0.2));
    for (index_t i = 0; i < delta.size(); ++i) delta.data()[i] = static_cast<T>(std::exp(u(gen)));
    for (index_t d = 0; d < D; ++d)
      for (index_t n = 0; n < N; ++n) {
        if constexpr (std::is_floating_point_v<State>) a(d, n) = -static_cast<T>(n + 1) * T(1 + 0.1 * d);
        else a(d, n) = State(T(-0.5), T(M_PI * n));
      }
    for (index_t i = 0; i < b.size(); ++i) b.data()[i] = draw<State>(gen);
    for (index_t i = 0; i < c.size(); ++i) c.data()[i] = draw<State>(gen);
    if (with_skip) skip = testing::random_vector<T>(D, seed + 9, 0.5, 1.5);
    for (index_t i = 0; i < gate.size(); ++i) gate.data()[i] = static_cast<T>(detail::silu(draw<double>(gen)));
  }

  s6_operator<T, State> view() const {
    return {delta.view(), a.view(), b.view(), c.view(), vector_view<const T>(skip.data(), skip.size()), gate.view()};
  }
};

// The paper's eq. 12 summed term by term in long double: the independent oracle.
template <class T, class State>
long double naive_alpha(const s6_operator<T, State>& op, index_t d, index_t i, index_t j) {
  if (j > i) return 0;
  const index_t g = op.group_of(d);
  using C = std::conditional_t<std::is_floating_point_v<State>, long double, std::complex<long double>>;
  C sum = 0;
  long double segment = 0;
  for (index_t k = j + 1; k <= i; ++k) segment += op.delta(d, k);
  for (index_t n = 0; n < op.state_size(); ++n) {
    const auto a = op.a(d, n);
    const auto bj = op.b(g, n, j), ci = op.c(g, n, i);
    if constexpr (std::is_floating_point_v<State>) {
      sum += ci * std::exp(static_cast<long double>(a) * segment) * op.delta(d, j) * bj;
    } else {
      const C ac(a.real(), a.imag()), bc(bj.real(), bj.imag()), cc(ci.real(), ci.imag());
      sum += cc * std::exp(ac * segment) * static_cast<long double>(op.delta(d, j)) * bc;
    }
  }
  if constexpr (std::is_floating_point_v<State>) return sum;
  else return 2 * sum.real();
}

template <class T, class State>
void check_s6(index_t L, index_t G, bool skip, bool gate, std::uint64_t seed) {
  const index_t D = 2 * G, N = 4;
  controls<T, State> ctl(D, N, G, L, seed, skip, gate);
  const auto op = ctl.view();
  auto u = testing::random_matrix<T>(D, L, seed + 1);
  testing::check_linear_operator(op, u.view(), testing::tolerance<T>());
}

}  // namespace

BOOST_AUTO_TEST_CASE(concept_conformance) {
  static_assert(linear_operator<s6_operator<float>>);
  static_assert(linear_operator<s6_operator<double, complex<double>>>);
  static_assert(linear_operator<mamba_block_operator<double>>);
  static_assert(mixer<s6_mixer<double>>);
  static_assert(operator_traits<s6_operator<double>>::control == data_control::non_diagonal);
  static_assert(!operator_traits<s6_operator<double>>::time_invariant);
}

BOOST_AUTO_TEST_CASE(apply_equals_materialize_real_and_complex) {
  std::uint64_t seed = 1;
  for (index_t L : testing::test_lengths()) {
    check_s6<double, double>(L, 1, false, false, seed++);
    check_s6<float, float>(L, 1, false, false, seed++);
    if (L <= 1024) {
      check_s6<double, complex<double>>(L, 1, true, false, seed++);
      check_s6<float, complex<float>>(L, 2, false, true, seed++);
      check_s6<double, double>(L, 2, true, true, seed++);
    }
  }
}

BOOST_AUTO_TEST_CASE(alpha_matches_the_papers_formula) {
  for (std::uint64_t seed : {3, 4, 5}) {
    const index_t L = 40, D = 4, N = 5, G = 2;
    controls<double, double> real(D, N, G, L, seed);
    controls<double, complex<double>> cplx(D, N, G, L, seed);
    matrix<double> m(L, L);
    auto check = [&](const auto& op) {
      for (index_t d = 0; d < D; ++d) {
        op.alpha(d, m.view());
        double diff = 0, scale = 0;
        for (index_t i = 0; i < L; ++i)
          for (index_t j = 0; j < L; ++j) {
            const long double want = naive_alpha(op, d, i, j);
            diff = std::max(diff, double(std::abs(m(i, j) - want)));
            scale = std::max(scale, double(std::abs(want)));
          }
        BOOST_TEST(diff <= 1e-13 * scale, "channel " << d << ": " << diff << " vs scale " << scale);
      }
    };
    check(real.view());
    check(cplx.view());
  }
}

BOOST_AUTO_TEST_CASE(scan_policies_agree_with_the_recurrence) {
  controls<double, complex<double>> ctl(3, 4, 1, 777, 11, true, true);
  const auto op = ctl.view();
  auto u = testing::random_matrix<double>(3, 777, 12);
  matrix<double> seq(3, 777), chunked(3, 777), blelloch(3, 777);
  op.apply(u.view(), seq.view());
  op.apply(u.view(), chunked.view(), chunked_scan{50});
  op.apply(u.view(), blelloch.view(), blelloch_scan{});
  BOOST_TEST(testing::relative_error(chunked, seq) <= 1e-12);
  BOOST_TEST(testing::relative_error(blelloch, seq) <= 1e-12);
}

// Channels split over threads: the recurrence's results bit for bit, for any
// thread count, real and complex states, float and double; and through the
// host backend's apply.
BOOST_AUTO_TEST_CASE(channel_parallel_apply_is_bit_identical) {
  auto check = [](auto ctl, auto u) {
    const auto op = ctl.view();
    using T = std::remove_cvref_t<decltype(*u.data())>;
    const index_t D = u.extent(0), L = u.extent(1);
    matrix<T> seq(D, L);
    op.apply(u.view(), seq.view());
    for (int threads : {1, 2, 3, 0}) {
      matrix<T> par(D, L), be_out(D, L);
      op.apply(u.view(), par.view(), sequence_parallel_scan{.threads = threads, .grain = 1});
      BOOST_TEST(std::equal(par.data(), par.data() + par.size(), seq.data()), "threads " << threads);
      host_backend<T> be;
      be.threads = threads;
      be.apply(op, u.data(), be_out.data());
      BOOST_TEST(std::equal(be_out.data(), be_out.data() + be_out.size(), seq.data()), "backend, threads " << threads);
    }
  };
  check(controls<double, complex<double>>(7, 4, 1, 300, 21, true, true), testing::random_matrix<double>(7, 300, 22));
  check(controls<double, double>(5, 3, 1, 129, 23, true, false), testing::random_matrix<double>(5, 129, 24));
  check(controls<float, float>(9, 8, 1, 200, 25, false, true), testing::random_matrix<float>(9, 200, 26));
}

BOOST_AUTO_TEST_CASE(strictly_lower_blocks_are_semiseparable_rank_n) {
  const index_t L = 96, N = 6;
  controls<double, double> ctl(1, N, 1, L, 21);
  matrix<double> m(L, L);
  ctl.view().alpha(0, m.view());
  for (index_t split : {8, 30, 48, 70}) {
    Eigen::MatrixXd block(L - split, split);
    for (index_t i = split; i < L; ++i)
      for (index_t j = 0; j < split; ++j) block(i - split, j) = m(i, j);
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(block);
    const auto& s = svd.singularValues();
    index_t rank = 0;
    for (index_t k = 0; k < s.size(); ++k) rank += s(k) > 1e-10 * s(0);
    BOOST_TEST(rank <= N, "split " << split << ": rank " << rank);
    BOOST_TEST(rank == std::min<index_t>({N, split, L - split}), "generic inputs reach rank N at split " << split);
  }
}

BOOST_AUTO_TEST_CASE(rows_of_very_long_sequences_are_finite_and_exact) {
  // L = 100000 with Δ up to 0.2 and A down to −16: Σ Δ·|A| reaches ~10^5, so
  // exp(S_i)·exp(−S_j) would overflow in any precision; running products do not.
  const index_t L = 100000, N = 16;
  controls<double, double> ctl(1, N, 1, L, 31);
  const auto op = ctl.view();
  double total = 0;
  for (index_t t = 0; t < L; ++t) total += op.delta(0, t);
  BOOST_TEST_REQUIRE(total * N > 1000.0);  // the naive product would overflow

  auto u = testing::random_matrix<double>(1, L, 32);
  matrix<double> y(1, L);
  op.apply(u.view(), y.view());
  std::vector<double> r(static_cast<std::size_t>(L));
  for (index_t t : {index_t(0), index_t(1), L / 2, L - 1}) {
    op.alpha_row(0, t, vector_view<double>(r.data(), r.size()));
    double dot = 0, scale = 0;
    bool finite = true;
    for (index_t j = 0; j < L; ++j) {
      finite = finite && std::isfinite(r[j]);
      dot += r[j] * u(0, j);
      scale += std::abs(r[j] * u(0, j));
    }
    BOOST_TEST(finite, "row " << t << " has NaN/Inf");
    BOOST_TEST(std::abs(dot - y(0, t)) <= 1e-12 * std::max(scale, 1e-300), "row " << t);
    if (t >= 3) {  // spot entries against the long-double formula
      for (index_t j : {t, t - 1, t - 3}) BOOST_TEST(std::abs(r[j] - naive_alpha(op, 0, t, j)) <= 1e-12 * std::abs(r[t]) + 1e-300);
    }
  }
  // The same in float: finite and consistent with the float recurrence.
  controls<float, float> f(1, N, 1, L, 33);
  auto uf = testing::random_matrix<float>(1, L, 34);
  matrix<float> yf(1, L);
  f.view().apply(uf.view(), yf.view());
  std::vector<float> rf(static_cast<std::size_t>(L));
  f.view().alpha_row(0, L - 1, vector_view<float>(rf.data(), rf.size()));
  double dot = 0, scale = 0;
  bool finite = true;
  for (index_t j = 0; j < L; ++j) {
    finite = finite && std::isfinite(rf[j]);
    dot += double(rf[j]) * uf(0, j);
    scale += std::abs(double(rf[j]) * uf(0, j));
  }
  BOOST_TEST(finite);
  BOOST_TEST(std::abs(dot - yf(0, L - 1)) <= 1e-5 * scale);
}

BOOST_AUTO_TEST_CASE(mixer_computes_controls_from_the_input) {
  const index_t D = 6, N = 4, R = 2, L = 50;
  const auto mixer = s6_mixer<double>::init(D, N, R, 7);
  auto u = testing::random_matrix<double>(D, L, 8);
  auto op = mixer.bind(u.view());
  // Δ, B, C by hand from the projections.
  for (index_t t : {0, 17, 49}) {
    std::vector<double> p(static_cast<std::size_t>(R + 2 * N), 0.0);
    for (index_t r = 0; r < R + 2 * N; ++r)
      for (index_t d = 0; d < D; ++d) p[r] += mixer.x_proj(r, d) * u(d, t);
    for (index_t n = 0; n < N; ++n) {
      BOOST_TEST(op->b(0, n, t) == p[R + n], boost::test_tools::tolerance(1e-14));
      BOOST_TEST(op->c(0, n, t) == p[R + N + n], boost::test_tools::tolerance(1e-14));
    }
    for (index_t d = 0; d < D; ++d) {
      double pre = mixer.dt_bias[d];
      for (index_t r = 0; r < R; ++r) pre += mixer.dt_proj(d, r) * p[r];
      BOOST_TEST(op->delta(d, t) == std::log1p(std::exp(pre)), boost::test_tools::tolerance(1e-12));
    }
  }
  for (index_t d = 0; d < D; ++d)
    for (index_t n = 0; n < N; ++n) BOOST_TEST(op->a(d, n) == -double(n + 1), boost::test_tools::tolerance(1e-14));
  testing::check_linear_operator(op, u.view(), 1e-12);
  // Data control: a different input gives a different operator.
  auto u2 = testing::random_matrix<double>(D, L, 9);
  auto op2 = mixer.bind(u2.view());
  BOOST_TEST(testing::relative_error(materialize(op, 0, 0), materialize(op2, 0, 0)) > 1e-3);
  // Complex-state mixers bind too.
  const auto cmixer = s6_mixer<double, complex<double>>::init(D, N, R, 7);
  auto cop = cmixer.bind(u.view(), {.skip = true});
  BOOST_TEST(cop->a(0, 3).imag() == 3 * M_PI, boost::test_tools::tolerance(1e-14));
  testing::check_linear_operator(cop, u.view(), 1e-12);
}

BOOST_AUTO_TEST_CASE(fold_options_add_skip_and_gate) {
  const index_t D = 3, N = 4, L = 33;
  const auto mixer = s6_mixer<double>::init(D, N, 1, 17);
  auto u = testing::random_matrix<double>(D, L, 18), z = testing::random_matrix<double>(D, L, 19);
  auto paper = mixer.bind(u.view());
  auto full = mixer.bind(u.view(), {.skip = true, .gate = true}, z.view());
  matrix<double> alpha(L, L);
  paper->alpha(1, alpha.view());
  BOOST_TEST(testing::relative_error(materialize(paper, 1, 1), alpha) == 0.0);
  auto folded = materialize(full, 1, 1);
  double diff = 0;
  for (index_t t = 0; t < L; ++t)
    for (index_t s = 0; s < L; ++s) {
      const double want = detail::silu(z(1, t)) * (alpha(t, s) + (t == s ? mixer.skip[1] : 0.0));
      diff = std::max(diff, std::abs(folded(t, s) - want));
    }
  BOOST_TEST(diff <= 1e-14);
}

BOOST_AUTO_TEST_CASE(mamba_block_unified_form_reproduces_the_block) {
  const index_t D = 4, N = 3, R = 2, K = 4;
  const auto mixer = s6_mixer<double>::init(D, N, R, 40);
  auto conv_w = testing::random_matrix<double>(D, K, 41, 0.5);
  auto conv_b = testing::random_vector<double>(D, 42, -0.5, 0.5);
  for (index_t L : {1, 2, 5, 64, 200}) {
    auto x = testing::random_matrix<double>(D, L, 43 + L), z = testing::random_matrix<double>(D, L, 44 + L);
    // The block step by step, as Mamba's reference computes it.
    matrix<double> u(D, L);
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) {
        double pre = conv_b[d];
        for (index_t k = 0; k < K; ++k) {
          const index_t s = t - (K - 1) + k;
          if (s >= 0) pre += conv_w(d, k) * x(d, s);
        }
        u(d, t) = pre / (1 + std::exp(-pre));
      }
    auto ssm = mixer.bind(u.view(), {.skip = true, .gate = true}, z.view());
    auto want = mix(ssm, u.view());

    auto block = bind_mamba_block(mixer, conv_w.view(), vector_view<const double>(conv_b), x.view(), z.view());
    auto linear = mix(block, x.view());
    for (index_t i = 0; i < linear.size(); ++i) linear.data()[i] += block->offset.data_handle()[i];
    BOOST_TEST(testing::relative_error(linear, want) <= 1e-12, "L=" << L);
    testing::check_linear_operator(block, x.view(), 1e-12);
    // Without the bias the block is linear: zero offset.
    auto unbiased = bind_mamba_block(mixer, conv_w.view(), vector_view<const double>(), x.view(), z.view());
    double offset = 0;
    for (index_t i = 0; i < D * L; ++i) offset = std::max(offset, std::abs(unbiased->offset.data_handle()[i]));
    BOOST_TEST(offset == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(bad_input_is_rejected_with_a_clear_message) {
  controls<double, double> ok(4, 3, 2, 10, 1);
  using op_t = s6_operator<double>;
  auto bad_delta = ok.delta;
  bad_delta(1, 5) = -1.0;
  testing::check_error([&] { op_t(bad_delta.view(), ok.a.view(), ok.b.view(), ok.c.view()).validate(); },
                       {"'delta'", "delta >= 0 at [1][5]", "got -1"});
  auto bad_a = ok.a;
  bad_a(2, 1) = 0.5;
  testing::check_error([&] { op_t(ok.delta.view(), bad_a.view(), ok.b.view(), ok.c.view()).validate(); },
                       {"'a'", "Re(A) <= 0", "[2][1]", "0.5"});
  tensor<double, 3> b3(3, 3, 10), short_c(2, 3, 9);
  testing::check_error([&] { op_t(ok.delta.view(), ok.a.view(), b3.view(), ok.c.view()); },
                       {"'b'", "group count dividing the 4 channels", "got 3"});
  testing::check_error([&] { op_t(ok.delta.view(), ok.a.view(), ok.b.view(), short_c.view()); },
                       {"'c'", "length (extent 2) = 10", "= 9"});
  std::vector<double> skip(3);
  testing::check_error([&] { op_t(ok.delta.view(), ok.a.view(), ok.b.view(), ok.c.view(), skip); },
                       {"'skip'", "size = 4", "size = 3"});
  matrix<double> gate(4, 11), empty_delta(4, 0);
  testing::check_error([&] { op_t(ok.delta.view(), ok.a.view(), ok.b.view(), ok.c.view(), {}, gate.view()); },
                       {"'gate'", "length (extent 1) = 10", "= 11"});
  testing::check_error([&] { op_t(empty_delta.view(), ok.a.view(), ok.b.view(), ok.c.view()); },
                       {"delta (length, extent 1)", "a positive value", "got 0"});
  const auto op = ok.view();
  matrix<double> u(4, 9), y(4, 10), m(10, 9);
  testing::check_error([&] { op.apply(u.view(), y.view()); }, {"'u'", "length (extent 1) = 10", "= 9"});
  testing::check_error([&] { op.alpha(4, matrix<double>(10, 10).view()); }, {"'d'", "[0, 4)", "got 4"});
  testing::check_error([&] { op.materialize(0, 0, m.view()); }, {"'m'", "columns = 10", "columns = 9"});
  std::vector<double> r(10);
  testing::check_error([&] { op.row(0, 0, 10, vector_view<double>(r)); }, {"'t'", "[0, 10)", "got 10"});

  auto mixer = s6_mixer<double>::init(4, 3, 2, 1);
  testing::check_error([&] { (void)mixer.bind(u.view(), {.gate = true}); }, {"'z'", "fold.gate"});
  matrix<double> u3(3, 9);
  testing::check_error([&] { (void)mixer.bind(u3.view()); }, {"'u'", "channels (extent 0) = 4", "= 3"});
  mixer.dt_bias.pop_back();
  testing::check_error([&] { (void)mixer.bind(u.view()); }, {"'dt_bias'", "size = 4", "size = 3"});
  testing::check_error([&] { (void)s6_mixer<double>::init(4, 0, 2, 1); }, {"state_size", "got 0"});
  matrix<double> w(4, 0);
  auto good = s6_mixer<double>::init(4, 3, 2, 1);
  testing::check_error([&] { (void)bind_mamba_block(good, w.view(), {}, u.view(), u.view()); },
                       {"conv_weight (taps, extent 1)", "got 0"});
}

// Δ = 0 (softplus underflows below about −104 in float) is a step without
// update, A = −0 (−exp of a very negative A_log) a state without decay: valid
// SSMs, formerly refused. Non-finite values are refused as such: with Δ = +inf,
// alpha gave NaN (inf · 0) where alpha_row gave 0.
BOOST_AUTO_TEST_CASE(zero_steps_and_zero_decay_are_valid_non_finite_values_are_not) {
  controls<double, double> ctl(4, 3, 1, 10, 3);
  ctl.delta(1, 5) = 0.0;
  ctl.a(2, 1) = -0.0;
  ctl.a(3, 0) = 0.0;
  const auto op = ctl.view();
  op.validate();
  testing::check_linear_operator(op, testing::random_matrix<double>(4, 10, 5).view(), 1e-12);
  matrix<double> m(10, 10);
  std::vector<double> r(10);
  for (index_t d = 0; d < 4; ++d) {
    op.alpha(d, m.view());
    for (index_t t = 0; t < 10; ++t) {
      op.alpha_row(d, t, vector_view<double>(r));
      for (index_t j = 0; j < 10; ++j) BOOST_TEST(std::abs(r[std::size_t(j)] - m(t, j)) <= 1e-12 * (1 + std::abs(m(t, j))));
    }
  }
  op.alpha(1, m.view());
  for (index_t t = 0; t < 10; ++t) BOOST_TEST(m(t, 5) == 0.0);  // Δ_5 = 0: input 5 enters nothing

  // Through the mixer: dt_bias = −200 makes softplus exactly 0 in float.
  auto mixer = s6_mixer<float>::init(4, 3, 2, 1);
  for (auto& b : mixer.dt_bias) b = -200.0f;
  matrix<float> u(4, 6);
  for (index_t i = 0; i < u.size(); ++i) u.data()[i] = 0.1f * float(i % 7);
  const auto bound = mixer.bind(u.view());
  for (std::size_t i = 0; i < bound->delta.size(); ++i) BOOST_TEST(bound->delta.data_handle()[i] == 0.0f);

  using op_t = s6_operator<double>;
  for (double bad : {std::numeric_limits<double>::infinity(), std::nan("")}) {
    auto delta = ctl.delta;
    delta(2, 7) = bad;
    testing::check_error([&] { op_t(delta.view(), ctl.a.view(), ctl.b.view(), ctl.c.view()).validate(); },
                         {"'delta'", "finite values at [2][7]"});
    auto a = ctl.a;
    a(0, 2) = -bad;
    testing::check_error([&] { op_t(ctl.delta.view(), a.view(), ctl.b.view(), ctl.c.view()).validate(); },
                         {"'a'", "finite values at [0][2]"});
  }
}
