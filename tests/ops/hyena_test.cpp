#define BOOST_TEST_MODULE hyena
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <numbers>
#include <vector>

#include "common/oracles.hpp"
#include "common/threading.hpp"
#include "mixlens/ops/hyena.hpp"

using namespace mixlens;

static_assert(linear_operator<hyena_operator<float>>);
static_assert(linear_operator<hyena_operator<double>>);
static_assert(mixer<hyena_mixer<double>>);
static_assert(operator_traits<hyena_operator<double>>::name == "Hyena");
static_assert(operator_traits<hyena_operator<double>>::control == data_control::diagonal);
static_assert(!operator_traits<hyena_operator<double>>::time_invariant);
static_assert(!operator_traits<hyena_operator<double>>::channel_mixing);
static_assert(hyena_config{}.normalization == hyena_normalization::none);  // HyenaFilter's normalized=False
static_assert(to_string(hyena_normalization::before_window) == "before_window");
static_assert(to_string(hyena_normalization::after_window) == "after_window");
static_assert(to_string(hyena_normalization::none) == "none");

namespace {

using dmat = std::vector<std::vector<double>>;  // [row][col]

dmat zeros(index_t r, index_t c) { return dmat(static_cast<std::size_t>(r), std::vector<double>(static_cast<std::size_t>(c), 0.0)); }

// torch.linspace(start, end, n).
std::vector<double> lin(double a, double b, index_t n) {
  std::vector<double> v;
  for (index_t i = 0; i < n; ++i) v.push_back(n == 1 ? a : a + (b - a) * double(i) / double(n - 1));
  return v;
}

// safari's HyenaFilter.implicit_filter on PositionalEmbedding(emb_dim, l_max)'s
// first L rows, in double: the raw MLP output h (L × DF), before any
// normalization or window. Learned weights come from the mixer; the embedding is
// rebuilt here from its formula.
template <class T>
dmat reference_mlp(const hyena_mixer<T>& mx, index_t L) {
  const auto& c = mx.config();
  const auto& w = mx.weights();
  const index_t F = c.filter_order, DF = c.d_model * (c.order - 1), E = c.emb_dim;

  // PositionalEmbedding(emb_dim, l_max): z = [t, Re, Im of exp(-i f w)] on l_max points, first L used.
  const index_t bands = (E - 1) / 2;
  const auto t = lin(0, 1, c.l_max);
  const auto trs = lin(0, double(c.l_max - 1), c.l_max);
  const auto f = lin(1e-4, double(bands - 1), bands);
  auto z = zeros(L, E);
  for (index_t i = 0; i < L; ++i) {
    const double wi = 2 * std::numbers::pi * trs[i] / double(c.l_max);
    z[i][0] = t[i];
    for (index_t b = 0; b < bands; ++b) {
      z[i][1 + b] = std::cos(f[b] * wi);          // real part
      z[i][1 + bands + b] = -std::sin(f[b] * wi);  // imaginary part of exp(-i f w)
    }
  }
  // implicit_filter: Linear(E, F), Sin, [Linear(F, F), Sin] x num_inner, Linear(F, DF, bias=False)
  auto h = zeros(L, DF);
  for (index_t i = 0; i < L; ++i) {
    std::vector<double> a(z[i]);
    for (index_t layer = 0; layer <= c.num_inner_mlps; ++layer) {
      std::vector<double> next(F);
      for (index_t o = 0; o < F; ++o) {
        double s = w.mlp_bias[layer][o];
        for (std::size_t j = 0; j < a.size(); ++j) s += double(w.mlp_weight[layer](o, j)) * a[j];
        next[o] = std::sin(double(w.sin_freq[o]) * s);
      }
      a = next;
    }
    for (index_t j = 0; j < DF; ++j) {
      double s = 0;
      for (index_t o = 0; o < F; ++o) s += double(w.mlp_out_weight(j, o)) * a[o];
      h[i][j] = s;
    }
  }
  return h;
}

// ExponentialModulation(DF)'s window exp(-t_i·|δ_j|) + shift (L × DF), t_i = i/(l_max−1).
dmat reference_window(const hyena_config& c, index_t L) {
  const index_t DF = c.d_model * (c.order - 1);
  const auto t = lin(0, 1, c.l_max);
  const auto deltas = lin(std::log(c.target) / c.slow_decay_pct, std::log(c.target) / c.fast_decay_pct, DF);
  auto win = zeros(L, DF);
  for (index_t i = 0; i < L; ++i)
    for (index_t j = 0; j < DF; ++j) win[i][j] = std::exp(-t[i] * std::abs(deltas[j])) + c.shift;
  return win;
}

// h(t, ·) / ‖h(t, ·)‖₁ at each step: torch.norm(h, dim=-1, p=1) over the channel
// axis of (1, L, DF).
void reference_l1_rows(dmat& h) {
  for (auto& row : h) {
    double n1 = 0;
    for (double e : row) n1 += std::abs(e);
    for (double& e : row) e /= n1;
  }
}

// HyenaFilter's filter (L × DF) in double: the MLP; then the L1 norm before the
// window (safari c1b5c7b, HyenaFilter.filter), the window, or the L1 norm after it
// (NeMo's hyena_filter.py, hyena-dna's hyena.py).
template <class T>
dmat reference_filter(const hyena_mixer<T>& mx, index_t L) {
  const auto& c = mx.config();
  auto h = reference_mlp(mx, L);
  if (c.normalization == hyena_normalization::before_window) reference_l1_rows(h);
  if (c.modulate) {
    const auto win = reference_window(c, L);
    for (index_t i = 0; i < L; ++i)
      for (std::size_t j = 0; j < h[i].size(); ++j) h[i][j] *= win[i][j];
  }
  if (c.normalization == hyena_normalization::after_window) reference_l1_rows(h);
  return h;
}

// safari's HyenaOperator.forward for one batch element, in double, step for step,
// with loops and direct convolutions. Input and output are (d_model × L).
template <class T>
dmat reference_forward(const hyena_mixer<T>& mx, const matrix<T>& u_in) {
  const auto& c = mx.config();
  const auto& w = mx.weights();
  const index_t D = c.d_model, N = c.order, L = u_in.extent(1), W = (N + 1) * D, K = c.short_filter_order;

  // HyenaFilter.filter: the MLP, the window and the chosen L1 normalization.
  const auto h = reference_filter(mx, L);

  // in_proj on (L × D) rows, then (W × L)
  auto zp = zeros(W, L);
  for (index_t j = 0; j < W; ++j)
    for (index_t i = 0; i < L; ++i) {
      double s = w.in_proj_bias[j];
      for (index_t q = 0; q < D; ++q) s += double(w.in_proj_weight(j, q)) * double(u_in(q, i));
      zp[j][i] = s;
    }
  // Conv1d(groups=W, kernel K, padding K-1): output length L+K-1, keep the first L.
  auto uc = zeros(W, L);
  for (index_t j = 0; j < W; ++j) {
    std::vector<double> padded(L + 2 * (K - 1), 0.0);
    for (index_t i = 0; i < L; ++i) padded[i + K - 1] = zp[j][i];
    for (index_t i = 0; i < L; ++i) {
      double s = w.short_filter_bias[j];
      for (index_t q = 0; q < K; ++q) s += double(w.short_filter_weight(j, q)) * padded[i + q];
      uc[j][i] = s;
    }
  }
  // *x, v = uc.split(D)
  std::vector<dmat> x;
  for (index_t i = 0; i < N; ++i) x.emplace_back(uc.begin() + i * D, uc.begin() + (i + 1) * D);
  dmat v(uc.begin() + N * D, uc.end());
  // k: 'l (v o) -> o v l', bias: '(v o) -> o v'
  for (index_t o = 0; o < N - 1; ++o) {
    const dmat& xi = x[N - 1 - o];  // enumerate(reversed(x[1:]))
    for (index_t ch = 0; ch < D; ++ch) {
      std::vector<double> g(L), y(L);
      for (index_t i = 0; i < L; ++i) g[i] = v[ch][i] * xi[ch][i];
      const double bias = c.filter_bias ? double(w.filter_bias[ch * (N - 1) + o]) : 0.0;
      for (index_t i = 0; i < L; ++i) {
        double s = 0;
        for (index_t j = 0; j <= i; ++j) s += h[i - j][ch * (N - 1) + o] * g[j];
        y[i] = s + g[i] * bias;  // fftconv_ref: y + u * D
      }
      v[ch] = y;
    }
  }
  auto out = zeros(D, L);
  for (index_t i = 0; i < D; ++i)
    for (index_t l = 0; l < L; ++l) {
      double s = w.out_proj_bias[i];
      for (index_t j = 0; j < D; ++j) s += double(w.out_proj_weight(i, j)) * v[j][l] * x[0][j][l];
      out[i][l] = s;
    }
  return out;
}

template <class T>
double error_vs(const matrix<T>& got, const dmat& want) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < got.extent(0); ++i)
    for (index_t t = 0; t < got.extent(1); ++t) {
      diff = std::max(diff, std::abs(double(got(i, t)) - want[i][t]));
      scale = std::max(scale, std::abs(want[i][t]));
    }
  return diff / scale;
}

hyena_config small_config(index_t d_model, index_t order, index_t l_max, std::uint64_t seed) {
  hyena_config c;
  c.d_model = d_model;
  c.order = order;
  c.l_max = l_max;
  c.filter_order = 16;
  c.seed = seed;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(bound_operator_is_a_linear_operator) {
  for (std::uint64_t seed : {1u, 2u})
    for (index_t order : {2, 3}) {
      const hyena_mixer<double> md(small_config(2, order, 2048, seed));
      const hyena_mixer<float> mf(small_config(2, order, 2048, seed));
      for (index_t L : testing::test_lengths()) {
        auto ud = testing::random_matrix<double>(2, L, 100 * seed + L);
        auto uf = testing::random_matrix<float>(2, L, 100 * seed + L);
        const auto bd = md.bind(ud.view());
        const auto bf = mf.bind(uf.view());
        auto vd = testing::random_matrix<double>(2, L, 7 + L);
        auto vf = testing::random_matrix<float>(2, L, 7 + L);
        BOOST_TEST_CONTEXT("order=" << order << " seed=" << seed << " L=" << L) {
          testing::check_linear_operator(bd, vd.view(), testing::tolerance<double>());
          testing::check_linear_operator(bf, vf.view(), testing::tolerance<float>());
        }
      }
    }
}

// Channels split over threads (5 channels on 2 and 3, each block with its own
// FFT plans): the single-threaded results bit for bit, order 2 and 3; and
// through the host backend's apply.
BOOST_AUTO_TEST_CASE(channel_parallel_apply_is_bit_identical) {
  for (index_t order : {2, 3}) {
    const hyena_mixer<double> md(small_config(5, order, 512, 80 + order));
    const hyena_mixer<float> mf(small_config(5, order, 512, 81 + order));
    const auto ud = testing::random_matrix<double>(5, 300, 82), vd = testing::random_matrix<double>(5, 300, 83);
    const auto uf = testing::random_matrix<float>(5, 300, 84), vf = testing::random_matrix<float>(5, 300, 85);
    testing::check_threaded_apply(md.bind(ud.view()), vd.view(), "double, order " + std::to_string(order));
    testing::check_threaded_apply(mf.bind(uf.view()), vf.view(), "float, order " + std::to_string(order));
  }
}

BOOST_AUTO_TEST_CASE(forward_matches_naive_safari_reference) {
  struct variant {
    index_t order, l_max, L;
    void (*tweak)(hyena_config&);
  };
  const variant variants[] = {
      {2, 64, 1, [](hyena_config&) {}},
      {2, 300, 257, [](hyena_config&) {}},
      {3, 128, 97, [](hyena_config&) {}},
      {4, 64, 64, [](hyena_config&) {}},
      {3, 100, 31, [](hyena_config& c) { c.normalization = hyena_normalization::before_window; c.emb_dim = 5; }},
      {3, 100, 31, [](hyena_config& c) { c.normalization = hyena_normalization::after_window; c.emb_dim = 5; }},
      {2, 40, 33, [](hyena_config& c) { c.normalization = hyena_normalization::after_window; c.shift = 0.5; }},
      {2, 50, 50, [](hyena_config& c) { c.modulate = false; c.num_inner_mlps = 0; }},
      {3, 40, 33, [](hyena_config& c) { c.shift = 0.5; c.filter_bias = false; c.short_filter_order = 1; }},
      {2, 17, 16, [](hyena_config& c) { c.short_filter_order = 4; c.emb_dim = 7; c.w = 3; c.num_inner_mlps = 1; }},
      {2, 1, 1, [](hyena_config&) {}},
      {3, 2048, 2048, [](hyena_config&) {}},
      {2, 2048, 1000, [](hyena_config& c) { c.filter_order = 64; }},
  };
  for (const auto& var : variants) {
    auto cfg = small_config(3, var.order, var.l_max, 5 + var.L);
    var.tweak(cfg);
    const hyena_mixer<double> md(cfg);
    const hyena_mixer<float> mf(cfg);
    auto ud = testing::random_matrix<double>(3, var.L, 11 + var.L);
    auto uf = testing::random_matrix<float>(3, var.L, 11 + var.L);
    BOOST_TEST_CONTEXT("order=" << var.order << " l_max=" << var.l_max << " L=" << var.L) {
      BOOST_TEST(error_vs(md.forward(ud.view()), reference_forward(md, ud)) <= 1e-12);
      BOOST_TEST(error_vs(mf.forward(uf.view()), reference_forward(mf, uf)) <= 1e-5);
    }
  }
}

BOOST_AUTO_TEST_CASE(projected_operator_is_the_forward_pass) {
  for (index_t order : {2, 3, 4}) {
    const hyena_mixer<double> mx(small_config(3, order, 512, order));
    for (index_t L : {1, 7, 100, 512}) {
      auto u = testing::random_matrix<double>(3, L, 3 + L);
      const auto op = mx.bind(u.view());
      const auto via_operator = mx.project_out(mix(op, op.storage().value.view()).view());
      // the same through the dense matrices, channel by channel
      const auto dense = mx.project_out(testing::dense_apply(op, op.storage().value.view()).view());
      const auto y = mx.forward(u.view());
      BOOST_TEST(testing::relative_error(via_operator, y) <= 1e-14);
      BOOST_TEST(testing::relative_error(dense, y) <= 1e-12);
    }
  }
}

BOOST_AUTO_TEST_CASE(fft_convolution_is_linear_not_circular) {
  // A value concentrated at the last step: a linear convolution leaves every
  // earlier output at zero, a circular one of size L would wrap the filter around.
  for (index_t L : {5, 64, 100, 1024}) {
    const hyena_mixer<double> mx(small_config(1, 2, L, 9));
    auto u = testing::random_matrix<double>(1, L, 2);
    const auto op = mx.bind(u.view());
    matrix<double> v(1, L);
    v(0, L - 1) = 1;
    const auto y = mix(op, v.view());
    const auto& k = op.storage().filters.k;
    double kmax = 0;
    for (index_t t = 0; t < L; ++t) kmax = std::max(kmax, std::abs(k(0, 0, t)));
    double early = 0, x0max = 0;
    for (index_t t = 0; t + 1 < L; ++t) early = std::max(early, std::abs(y(0, t)));
    for (index_t t = 0; t < L; ++t) x0max = std::max(x0max, std::abs(op->gate(0, 0, t)));
    const auto x0 = [&](index_t t) { return op->gate(0, 0, t); };
    const double last = x0(L - 1) * (k(0, 0, 0) + op->bias(0, 0)) * op->gate(1, 0, L - 1);
    BOOST_TEST(early <= 1e-13 * x0max * kmax * std::abs(op->gate(1, 0, L - 1)));
    BOOST_TEST(std::abs(y(0, L - 1) - last) <= 1e-13 * std::abs(last));
    // what wrap-around would have put at t = 0: x^0_0 · k_1 · x^1_{L−1}
    if (L > 1) BOOST_TEST(std::abs(x0(0) * k(0, 0, 1) * op->gate(1, 0, L - 1)) > 1e3 * early);
    // and the whole layer agrees with the direct-convolution reference there too
    matrix<double> late(1, L);
    for (index_t t = L - 3; t < L; ++t) late(0, t) = 1;
    BOOST_TEST(error_vs(mx.forward(late.view()), reference_forward(mx, late)) <= 1e-12);
  }
}

BOOST_AUTO_TEST_CASE(filters_decay_as_the_modulation_says) {
  for (index_t order : {2, 3}) {
    auto cfg = small_config(3, order, 11, 4);  // t_norm = i/10: the grid hits 0.3
    auto plain = cfg;
    plain.modulate = false;
    const hyena_mixer<double> on(cfg), off(plain);
    const auto& d = on.weights().deltas;
    const index_t DF = 3 * (order - 1);
    BOOST_REQUIRE_EQUAL(static_cast<index_t>(d.size()), DF);
    BOOST_TEST(std::abs(d.front() - std::log(1e-2) / 1.5) <= 1e-15);
    BOOST_TEST(std::abs(d.back() - std::log(1e-2) / 0.3) <= 1e-15);
    // the fastest window has reached the target at t_norm = fast_decay_pct
    BOOST_TEST(std::abs(std::exp(-0.3 * std::abs(d.back())) - 1e-2) <= 1e-15);
    for (double shift : {0.0, 0.25}) {
      auto sc = cfg;
      sc.shift = shift;
      const hyena_mixer<double> shifted(sc);
      const auto km = shifted.filter(11), kp = off.filter(11);
      for (index_t o = 0; o < order - 1; ++o)
        for (index_t c = 0; c < 3; ++c) {
          const double delta = std::abs(d[static_cast<std::size_t>(c * (order - 1) + o)]);
          for (index_t t = 0; t < 11; ++t) {
            const double window = std::exp(-double(t) / 10 * delta) + shift;
            BOOST_TEST(std::abs(km.k(o, c, t) - window * kp.k(o, c, t)) <= 1e-14 * std::abs(kp.k(o, c, t)) + 1e-300);
          }
          // the filter bias is (v o)-interleaved too
          BOOST_TEST(km.bias(o, c) == shifted.weights().filter_bias[static_cast<std::size_t>(c * (order - 1) + o)]);
        }
    }
  }
  // The filter of a shorter sequence is the prefix of the l_max filter.
  const hyena_mixer<double> mx(small_config(2, 3, 300, 1));
  const auto full = mx.filter(300), part = mx.filter(77);
  for (index_t o = 0; o < 2; ++o)
    for (index_t c = 0; c < 2; ++c)
      for (index_t t = 0; t < 77; ++t) BOOST_TEST(part.k(o, c, t) == full.k(o, c, t));
  // Without the bias option the skip is zero.
  auto nb = small_config(2, 2, 8, 1);
  nb.filter_bias = false;
  const auto fb = hyena_mixer<double>(nb).filter(8);
  BOOST_TEST(fb.bias(0, 0) == 0.0);
  BOOST_TEST(fb.bias(0, 1) == 0.0);
}

BOOST_AUTO_TEST_CASE(normalized_filter_follows_the_chosen_order) {
  // HyenaFilter's h = h / ‖h‖₁ over dim −1 (the DF filter channels, at each step):
  //   before_window: safari c1b5c7b, HyenaFilter.filter: h = implicit_filter(z);
  //                  h = h / ‖h‖₁; h = modulation(t, h)
  //   after_window:  NeMo's hyena_filter.py, hyena-dna's hyena.py: h = mlp(z);
  //                  h = modulation(t, h); h = h / ‖h‖₁
  // Both are rebuilt here step by step from the raw MLP output and the window. The
  // window differs per channel, so the two orders give different filters.
  using hn = hyena_normalization;
  for (double shift : {0.0, 0.5})
    for (index_t order : {2, 3}) {
      auto cfg = small_config(2, order, 9, 17);
      cfg.filter_order = 8;
      cfg.shift = shift;
      const index_t L = 9, N = order, DF = 2 * (N - 1);
      const auto raw = reference_mlp(hyena_mixer<double>(cfg), L);  // the weights do not depend on the option
      const auto win = reference_window(cfg, L);
      auto plain = zeros(L, DF), before = zeros(L, DF), after = zeros(L, DF);
      for (index_t i = 0; i < L; ++i) {
        double n_raw = 0, n_windowed = 0;
        for (index_t j = 0; j < DF; ++j) {
          n_raw += std::abs(raw[i][j]);
          n_windowed += std::abs(raw[i][j] * win[i][j]);
        }
        for (index_t j = 0; j < DF; ++j) {
          plain[i][j] = raw[i][j] * win[i][j];
          before[i][j] = raw[i][j] / n_raw * win[i][j];
          after[i][j] = raw[i][j] * win[i][j] / n_windowed;
        }
      }
      // k(o, c, t) = h(t, c·(N−1) + o)
      auto filter_of = [&](hn n) {
        auto c = cfg;
        c.normalization = n;
        return hyena_mixer<double>(c).filter(L).k;
      };
      const auto k_none = filter_of(hn::none), k_before = filter_of(hn::before_window),
                 k_after = filter_of(hn::after_window);
      auto at = [&](const tensor<double, 3>& k, index_t i, index_t j) { return k(j % (N - 1), j / (N - 1), i); };
      double err_none = 0, err_before = 0, err_after = 0, gap = 0, scale = 0, scale_none = 0, unit_before = 0,
             unit_after = 0;
      for (index_t i = 0; i < L; ++i) {
        double n_unwindowed = 0, n_filter = 0;
        for (index_t j = 0; j < DF; ++j) {
          err_none = std::max(err_none, std::abs(at(k_none, i, j) - plain[i][j]));
          err_before = std::max(err_before, std::abs(at(k_before, i, j) - before[i][j]));
          err_after = std::max(err_after, std::abs(at(k_after, i, j) - after[i][j]));
          gap = std::max(gap, std::abs(at(k_after, i, j) - at(k_before, i, j)));
          scale = std::max({scale, std::abs(before[i][j]), std::abs(after[i][j])});
          scale_none = std::max(scale_none, std::abs(plain[i][j]));
          n_unwindowed += std::abs(at(k_before, i, j) / win[i][j]);
          n_filter += std::abs(at(k_after, i, j));
        }
        unit_before = std::max(unit_before, std::abs(n_unwindowed - 1));  // the MLP output has unit L1 norm
        unit_after = std::max(unit_after, std::abs(n_filter - 1));        // the filter itself has unit L1 norm
      }
      BOOST_TEST_CONTEXT("order=" << order << " shift=" << shift) {
        BOOST_TEST(err_none <= 1e-12 * scale_none);
        BOOST_TEST(err_before <= 1e-12 * scale);
        BOOST_TEST(err_after <= 1e-12 * scale);
        BOOST_TEST(unit_before <= 1e-12);
        BOOST_TEST(unit_after <= 1e-12);
        BOOST_TEST(gap >= 0.1 * scale);  // the two orders are far apart on this input
      }
    }
  // Without the window the two orders are one filter.
  auto cfg = small_config(2, 3, 9, 17);
  cfg.modulate = false;
  cfg.normalization = hn::before_window;
  const auto kb = hyena_mixer<double>(cfg).filter(9).k;
  cfg.normalization = hn::after_window;
  const auto ka = hyena_mixer<double>(cfg).filter(9).k;
  BOOST_TEST(testing::relative_error(kb.data(), ka.data(), kb.size()) == 0.0);
}

BOOST_AUTO_TEST_CASE(operator_depends_on_the_input) {
  const hyena_mixer<double> mx(small_config(2, 3, 64, 3));
  auto u1 = testing::random_matrix<double>(2, 64, 1), u2 = testing::random_matrix<double>(2, 64, 2);
  const auto a = materialize(mx.bind(u1.view()), 0, 0), b = materialize(mx.bind(u2.view()), 0, 0);
  BOOST_TEST(testing::relative_error(a, b) > 1e-3);
  // ... while the filters do not
  const auto fa = mx.bind(u1.view()), fb = mx.bind(u2.view());
  const auto& ka = fa.storage().filters.k;
  const auto& kb = fb.storage().filters.k;
  BOOST_TEST(testing::relative_error(ka.data(), kb.data(), ka.size()) == 0.0);
}

BOOST_AUTO_TEST_CASE(init_makes_the_constructed_mixer) {
  const auto cfg = small_config(2, 4, 64, 4);
  const auto made = hyena_mixer<double>::init(cfg);
  const hyena_mixer<double> constructed(cfg);
  auto u = testing::random_matrix<double>(2, 64, 8);
  BOOST_TEST(testing::relative_error(made.forward(u.view()), constructed.forward(u.view())) == 0.0);
  // order 4: rows go through two in-place Toeplitz products after the closed-form one
  for (index_t L : {1, 7, 64}) {
    auto ul = testing::random_matrix<double>(2, L, 20 + L), v = testing::random_matrix<double>(2, L, 30 + L);
    BOOST_TEST_CONTEXT("L=" << L) { testing::check_linear_operator(made.bind(ul.view()), v.view(), 1e-12); }
  }
}

BOOST_AUTO_TEST_CASE(bad_input_throws) {
  auto make = [](auto tweak) {
    auto c = small_config(2, 2, 16, 1);
    tweak(c);
    return [c] { hyena_mixer<double> m(c); };
  };
  testing::check_error(make([](hyena_config& c) { c.order = 1; }), {"'order'", "order >= 2", "1"});
  testing::check_error(make([](hyena_config& c) { c.d_model = 0; }), {"'d_model'", "positive"});
  testing::check_error(make([](hyena_config& c) { c.l_max = 0; }), {"'l_max'", "positive"});
  testing::check_error(make([](hyena_config& c) { c.filter_order = 0; }), {"'filter_order'"});
  testing::check_error(make([](hyena_config& c) { c.emb_dim = 4; }), {"'emb_dim'", "odd", "4"});
  testing::check_error(make([](hyena_config& c) { c.emb_dim = 1; }), {"'emb_dim'", "1"});
  testing::check_error(make([](hyena_config& c) { c.num_inner_mlps = -1; }), {"'num_inner_mlps'"});
  testing::check_error(make([](hyena_config& c) { c.short_filter_order = 0; }), {"'short_filter_order'"});
  testing::check_error(make([](hyena_config& c) { c.target = 0; }), {"'target'"});
  testing::check_error(make([](hyena_config& c) { c.normalization = static_cast<hyena_normalization>(7); }),
                       {"'normalization'", "none, before_window, after_window", "7"});

  hyena_mixer<double> mx(small_config(2, 2, 16, 1));
  matrix<double> u3(3, 8), u0(2, 0), u_long(2, 17), u(2, 8);
  testing::check_error([&] { (void)mx.bind(u3.view()); }, {"'u'", "channels (extent 0) = 2", "= 3"});
  testing::check_error([&] { (void)mx.forward(u3.view()); }, {"'u'", "channels"});
  testing::check_error([&] { (void)mx.bind(u0.view()); }, {"'u'", "positive", "0"});
  testing::check_error([&] { (void)mx.bind(u_long.view()); }, {"'u'", "l_max = 16", "17"});
  testing::check_error([&] { (void)mx.filter(0); }, {"'length'", "positive"});
  testing::check_error([&] { (void)mx.filter(17); }, {"'length'", "l_max = 16"});
  testing::check_error([&] { (void)mx.project_out(u3.view()); }, {"'y'", "channels"});

  auto op = mx.bind(u.view());
  matrix<double> v(2, 8), y(2, 8), y_short(2, 7), m(8, 8), m_bad(8, 7);
  std::vector<double> r(8), r_bad(7);
  testing::check_error([&] { op->apply(v.view(), y_short.view()); }, {"'y'", "length (extent 1) = 8", "= 7"});
  testing::check_error([&] { op->apply(u3.view(), y.view()); }, {"'x'", "channels"});
  testing::check_error([&] { op->materialize(2, 0, m.view()); }, {"'out'", "[0, 2)", "2"});
  testing::check_error([&] { op->materialize(0, -1, m.view()); }, {"'in'", "-1"});
  testing::check_error([&] { op->materialize(0, 0, m_bad.view()); }, {"'m'", "columns"});
  testing::check_error([&] { op->row(0, 0, 8, vector_view<double>(r.data(), r.size())); }, {"'t'", "[0, 8)"});
  testing::check_error([&] { op->row(0, 0, 1, vector_view<double>(r_bad.data(), r_bad.size())); }, {"'row'", "size"});

  // the view checks its own shapes
  tensor<double, 3> g1(1, 2, 8), g(2, 2, 8), k(1, 2, 8), k7(1, 2, 7);
  matrix<double> b(1, 2), b3(1, 3);
  testing::check_error([&] { hyena_operator<double>(g1.view(), k.view(), b.view()); }, {"'gates'", "order >= 2"});
  testing::check_error([&] { hyena_operator<double>(g.view(), k7.view(), b.view()); }, {"'filters'", "length"});
  testing::check_error([&] { hyena_operator<double>(g.view(), k.view(), b3.view()); }, {"'bias'", "channels"});

  // loaded weights of the wrong shape are caught before use
  mx.weights().mlp_out_weight = matrix<double>(3, 16);
  testing::check_error([&] { (void)mx.filter(8); }, {"'mlp_out_weight'", "rows = 2", "= 3"});
  hyena_mixer<double> mx2(small_config(2, 2, 16, 1));
  mx2.weights().in_proj_bias.pop_back();
  testing::check_error([&] { (void)mx2.bind(u.view()); }, {"'in_proj_bias'", "size = 6", "= 5"});
}
