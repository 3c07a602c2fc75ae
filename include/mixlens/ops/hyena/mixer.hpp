// The hyena mixer: parameters, init and bind (the view is ops/hyena/operator.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/detail/enum_name.hpp"
#include "mixlens/detail/fft.hpp"
#include "mixlens/ops/hyena/filter.hpp"
#include "mixlens/detail/random.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/hyena/operator.hpp"

namespace mixlens {

// ---- the mixer ---------------------------------------------------------------

// HyenaFilter's optional L1 normalization of the implicit filter (`normalized`
// there): h(t, ·) /= Σ_j |h(t, j)|, the sum over the d_model·(order−1) filter
// channels at each step t. Upstream ports disagree on where it sits relative to
// the exponential window, and the window differs per channel, so the two orders
// give different filters; a checkpoint trained with normalized = True needs the
// order of the code that trained it.
// (docs/architecture.md, "Hyena's filter normalization".)
enum class hyena_normalization {
  none,           // no normalization: normalized = False, the upstream default
  before_window,  // the norm of the MLP output, then the window: HazyResearch/safari
                  // src/models/sequence/hyena.py at c1b5c7b, HyenaFilter.filter
  after_window,   // the window, then the norm of the windowed filter: NVIDIA/NeMo
                  // nemo/collections/nlp/modules/common/hyena/hyena_filter.py at
                  // b1e6c64 (HyenaFilter.forward), HazyResearch/hyena-dna
                  // src/models/sequence/hyena.py at b5e5556 (HyenaFilter.filter)
};

[[nodiscard]] constexpr std::string_view to_string(hyena_normalization n) {
  return detail::enum_name(n, {"none", "before_window", "after_window"});
}

// Hyperparameters, named and defaulted as safari's HyenaOperator / HyenaFilter /
// ExponentialModulation.
struct hyena_config {
  index_t d_model = 0;
  index_t l_max = 0;                // longest sequence; the filter grid is built for it
  index_t order = 2;                // gates x^0 … x^{order−1}, order−1 long filters
  index_t filter_order = 64;        // width of the implicit MLP
  index_t emb_dim = 3;              // odd, ≥ 3: time plus (emb_dim−1)/2 cos/sin bands
  index_t num_inner_mlps = 2;       // hidden Linear+Sin layers after the first
  index_t short_filter_order = 3;   // taps of the depthwise short conv
  double w = 1;                     // initial frequency of the Sin activation
  bool filter_bias = true;          // HyenaFilter `bias`: use the per-channel skip b_o
  // L1 normalization of the filter over its channels, and where (see hyena_normalization)
  hyena_normalization normalization = hyena_normalization::none;
  bool modulate = true;             // multiply by the decay window
  double shift = 0;                 // window = exp(−t·|δ|) + shift
  double fast_decay_pct = 0.3;
  double slow_decay_pct = 1.5;
  double target = 1e-2;
  std::uint64_t seed = 0;           // for the random initialization
};

// Every learned (or registered) tensor, in PyTorch's layouts so that a safari
// state dict loads directly: Linear weights are (out × in); the filter channel j
// of the MLP output, the decay rates and the filter bias are ordered
// j = c·(order−1) + o (safari's "(v o)"), c the model channel, o the filter.
template <class T>
struct hyena_weights {
  matrix<T> in_proj_weight;        // (order+1)·d_model × d_model
  std::vector<T> in_proj_bias;     // (order+1)·d_model
  matrix<T> short_filter_weight;   // (order+1)·d_model × K; tap K−1 weighs the current step
  std::vector<T> short_filter_bias;
  matrix<T> pos_z;                 // l_max × emb_dim (trainable in safari, lr 1e-5)
  std::vector<T> pos_t;            // l_max: t/(l_max−1), drives the decay window
  std::vector<matrix<T>> mlp_weight;        // 1 + num_inner_mlps layers: F × emb_dim, then F × F
  std::vector<std::vector<T>> mlp_bias;     // F each
  std::vector<T> sin_freq;         // F: one Sin module shared by every activation
  matrix<T> mlp_out_weight;        // d_model·(order−1) × F, no bias
  std::vector<T> deltas;           // d_model·(order−1) decay rates
  std::vector<T> filter_bias;      // d_model·(order−1)
  matrix<T> out_proj_weight;       // d_model × d_model
  std::vector<T> out_proj_bias;    // d_model
};

// Long filters for a length L, rearranged for the loop: k(o, c, t) and bias(o, c).
template <class T>
struct hyena_filters {
  tensor<T, 3> k;  // (order−1) × d_model × L
  matrix<T> bias;  // (order−1) × d_model (zero when the config disables the bias)
};

// What a bound Hyena operator owns: gates, the value v it acts on, and filters.
template <class T>
struct hyena_storage {
  tensor<T, 3> gates;  // order × d_model × L
  matrix<T> value;     // v, d_model × L: out_proj(apply(value)) is the layer output
  hyena_filters<T> filters;
};

template <class T>
using bound_hyena = bound<hyena_operator<T>, hyena_storage<T>>;

template <class T>
class hyena_mixer {
 public:
  using value_type = T;

  // A randomly initialized mixer for `cfg` (as the constructor): every mixer is
  // made by <mixer>::init.
  [[nodiscard]] static hyena_mixer init(const hyena_config& cfg) { return hyena_mixer(cfg); }

  // Initialization as PyTorch's defaults in safari's module (same distributions,
  // not torch's random stream): Linear weights and biases and the short conv
  // U(±1/√fan_in); filter bias N(0, 1); Sin frequency w; pos_z, pos_t and deltas
  // by their formulas.
  explicit hyena_mixer(const hyena_config& cfg) : cfg_(cfg) {
    constexpr std::string_view where = "mixlens::hyena_mixer";
    detail::check_positive(where, "d_model", cfg.d_model);
    detail::check_positive(where, "l_max", cfg.l_max);
    if (cfg.order < 2) detail::fail(where, "order", "order >= 2", cfg.order);
    detail::check_positive(where, "filter_order", cfg.filter_order);
    if (cfg.emb_dim < 3 || cfg.emb_dim % 2 == 0) detail::fail(where, "emb_dim", "an odd value >= 3", cfg.emb_dim);
    if (cfg.num_inner_mlps < 0) detail::fail(where, "num_inner_mlps", "a non-negative value", cfg.num_inner_mlps);
    detail::check_positive(where, "short_filter_order", cfg.short_filter_order);
    if (!(cfg.fast_decay_pct > 0) || !(cfg.slow_decay_pct > 0))
      detail::fail(where, "fast_decay_pct/slow_decay_pct", "positive values",
                   std::to_string(cfg.fast_decay_pct) + "/" + std::to_string(cfg.slow_decay_pct));
    if (!(cfg.target > 0)) detail::fail(where, "target", "a positive value", cfg.target);
    if (cfg.normalization != hyena_normalization::none && cfg.normalization != hyena_normalization::before_window &&
        cfg.normalization != hyena_normalization::after_window)
      detail::fail(where, "normalization", "one of none, before_window, after_window",
                   static_cast<int>(cfg.normalization));

    const index_t D = cfg.d_model, W = (cfg.order + 1) * D, F = cfg.filter_order, DF = D * (cfg.order - 1);
    detail::splitmix64 gen(cfg.seed);
    auto uniform = [&](double limit) {
      return [&gen, limit] { return static_cast<T>(gen.uniform(-limit, limit)); };
    };
    auto fill = [](auto& range, auto draw) {
      for (auto& e : range) e = draw();
    };
    auto fill_matrix = [](matrix<T>& m, auto draw) {
      for (index_t i = 0; i < m.size(); ++i) m.data()[i] = draw();
    };
    w_.out_proj_weight = matrix<T>(D, D);
    w_.out_proj_bias.resize(static_cast<std::size_t>(D));
    fill_matrix(w_.out_proj_weight, uniform(1 / std::sqrt(double(D))));
    fill(w_.out_proj_bias, uniform(1 / std::sqrt(double(D))));
    w_.in_proj_weight = matrix<T>(W, D);
    w_.in_proj_bias.resize(static_cast<std::size_t>(W));
    fill_matrix(w_.in_proj_weight, uniform(1 / std::sqrt(double(D))));
    fill(w_.in_proj_bias, uniform(1 / std::sqrt(double(D))));
    const double conv_bound = 1 / std::sqrt(double(cfg.short_filter_order));
    w_.short_filter_weight = matrix<T>(W, cfg.short_filter_order);
    w_.short_filter_bias.resize(static_cast<std::size_t>(W));
    fill_matrix(w_.short_filter_weight, uniform(conv_bound));
    fill(w_.short_filter_bias, uniform(conv_bound));
    w_.filter_bias.resize(static_cast<std::size_t>(DF));
    fill(w_.filter_bias, [&] { return static_cast<T>(gen.normal()); });
    detail::hyena_positional_embedding(cfg.emb_dim, cfg.l_max, w_.pos_z, w_.pos_t);
    for (index_t layer = 0; layer <= cfg.num_inner_mlps; ++layer) {
      const index_t fan_in = layer == 0 ? cfg.emb_dim : F;
      w_.mlp_weight.emplace_back(F, fan_in);
      w_.mlp_bias.emplace_back(static_cast<std::size_t>(F));
      fill_matrix(w_.mlp_weight.back(), uniform(1 / std::sqrt(double(fan_in))));
      fill(w_.mlp_bias.back(), uniform(1 / std::sqrt(double(fan_in))));
    }
    w_.sin_freq.assign(static_cast<std::size_t>(F), static_cast<T>(cfg.w));
    w_.mlp_out_weight = matrix<T>(DF, F);
    fill_matrix(w_.mlp_out_weight, uniform(1 / std::sqrt(double(F))));
    w_.deltas = detail::hyena_decay_rates<T>(DF, cfg.fast_decay_pct, cfg.slow_decay_pct, cfg.target);
  }

  [[nodiscard]] const hyena_config& config() const { return cfg_; }
  [[nodiscard]] index_t d_model() const { return cfg_.d_model; }
  [[nodiscard]] index_t order() const { return cfg_.order; }
  // Mutable so trained weights can be loaded; shapes are checked on every use.
  [[nodiscard]] hyena_weights<T>& weights() { return w_; }
  [[nodiscard]] const hyena_weights<T>& weights() const { return w_; }

  // HyenaFilter.filter(L) rearranged per filter: h = the implicit MLP on pos_z's
  // first L rows; with before_window, h(t, ·) /= Σ_j |h(t, j)| (L1 over the
  // d_model·(order−1) filter channels, at each step); then, if modulate,
  // h(t, j) *= exp(−t_norm·|δ_j|) + shift; with after_window, the same division
  // now of the windowed h; finally k(o, c, t) = h(t, c·(order−1) + o).
  [[nodiscard]] hyena_filters<T> filter(index_t length) const {
    constexpr std::string_view where = "mixlens::hyena_mixer::filter";
    check_length(where, "length", length);
    validate(where);
    const index_t D = cfg_.d_model, N = cfg_.order, F = cfg_.filter_order, DF = D * (N - 1), E = cfg_.emb_dim;
    hyena_filters<T> out{tensor<T, 3>(N - 1, D, length), matrix<T>(N - 1, D)};
    std::vector<T> a(static_cast<std::size_t>(F)), b(static_cast<std::size_t>(F)), h(static_cast<std::size_t>(DF));
    for (index_t t = 0; t < length; ++t) {
      for (index_t i = 0; i < F; ++i) {
        T acc = w_.mlp_bias[0][static_cast<std::size_t>(i)];
        for (index_t e = 0; e < E; ++e) acc += w_.mlp_weight[0](i, e) * w_.pos_z(t, e);
        a[static_cast<std::size_t>(i)] = std::sin(w_.sin_freq[static_cast<std::size_t>(i)] * acc);
      }
      for (index_t layer = 1; layer <= cfg_.num_inner_mlps; ++layer) {
        const auto& wl = w_.mlp_weight[static_cast<std::size_t>(layer)];
        const auto& bl = w_.mlp_bias[static_cast<std::size_t>(layer)];
        for (index_t i = 0; i < F; ++i) {
          T acc = bl[static_cast<std::size_t>(i)];
          for (index_t j = 0; j < F; ++j) acc += wl(i, j) * a[static_cast<std::size_t>(j)];
          b[static_cast<std::size_t>(i)] = std::sin(w_.sin_freq[static_cast<std::size_t>(i)] * acc);
        }
        a.swap(b);
      }
      for (index_t j = 0; j < DF; ++j) {
        T acc = 0;
        for (index_t i = 0; i < F; ++i) acc += w_.mlp_out_weight(j, i) * a[static_cast<std::size_t>(i)];
        h[static_cast<std::size_t>(j)] = acc;
      }
      if (cfg_.normalization == hyena_normalization::before_window) divide_by_l1(h);
      if (cfg_.modulate)
        for (index_t j = 0; j < DF; ++j)
          h[static_cast<std::size_t>(j)] *=
              std::exp(-w_.pos_t[static_cast<std::size_t>(t)] * std::abs(w_.deltas[static_cast<std::size_t>(j)])) +
              static_cast<T>(cfg_.shift);
      if (cfg_.normalization == hyena_normalization::after_window) divide_by_l1(h);
      for (index_t j = 0; j < DF; ++j) out.k(j % (N - 1), j / (N - 1), t) = h[static_cast<std::size_t>(j)];
    }
    for (index_t j = 0; j < DF; ++j)
      out.bias(j % (N - 1), j / (N - 1)) = cfg_.filter_bias ? w_.filter_bias[static_cast<std::size_t>(j)] : T(0);
    return out;
  }

  // in_proj, short conv and split for input u (d_model × L, L ≤ l_max); the bound
  // operator acts on storage().value.
  [[nodiscard]] bound_hyena<T> bind(matrix_view<const T> u) const {
    constexpr std::string_view where = "mixlens::hyena_mixer::bind";
    check_input(where, u);
    validate(where);
    const index_t D = cfg_.d_model, N = cfg_.order, L = u.extent(1), W = (N + 1) * D, K = cfg_.short_filter_order;
    hyena_storage<T> st{tensor<T, 3>(N, D, L), matrix<T>(D, L), filter(L)};
    // in_proj, then the depthwise short conv (cross-correlation with K−1 zeros of
    // left padding: tap q of PyTorch's weight is lag K−1−q) as the library's one
    // causal convolution.
    matrix<T> z(W, L), zc(W, L), taps(W, K);
    for (index_t j = 0; j < W; ++j) {
      for (index_t t = 0; t < L; ++t) {
        T acc = w_.in_proj_bias[static_cast<std::size_t>(j)];
        for (index_t i = 0; i < D; ++i) acc += w_.in_proj_weight(j, i) * u(i, t);
        z(j, t) = acc;
      }
      for (index_t q = 0; q < K; ++q) taps(j, K - 1 - q) = w_.short_filter_weight(j, q);
    }
    const causal_conv_operator<T, short_conv_kind> conv(taps.view(), {}, L);
    conv.apply(z.view(), zc.view());
    for (index_t j = 0; j < W; ++j)
      for (index_t t = 0; t < L; ++t) {
        const T acc = zc(j, t) + w_.short_filter_bias[static_cast<std::size_t>(j)];
        if (j < N * D)
          st.gates(j / D, j % D, t) = acc;
        else
          st.value(j - N * D, t) = acc;
      }
    return bound_hyena<T>(std::move(st), [](const hyena_storage<T>& s) {
      return hyena_operator<T>(s.gates.view(), s.filters.k.view(), s.filters.bias.view());
    });
  }

  // out_proj: y (d_model × L) ↦ W·y + b.
  [[nodiscard]] matrix<T> project_out(matrix_view<const T> y) const {
    constexpr std::string_view where = "mixlens::hyena_mixer::project_out";
    check_input(where, y, "y");
    validate(where);
    const index_t D = cfg_.d_model, L = y.extent(1);
    matrix<T> out(D, L);
    for (index_t i = 0; i < D; ++i)
      for (index_t t = 0; t < L; ++t) {
        T acc = w_.out_proj_bias[static_cast<std::size_t>(i)];
        for (index_t j = 0; j < D; ++j) acc += w_.out_proj_weight(i, j) * y(j, t);
        out(i, t) = acc;
      }
    return out;
  }

  // The HyenaOperator's output for u (d_model × L): out_proj(M·v).
  [[nodiscard]] matrix<T> forward(matrix_view<const T> u) const {
    const auto op = bind(u);
    return project_out(mix(op, op.storage().value.view()).view());
  }

 private:
  // h /= Σ_j |h_j| (torch.norm(h, dim=-1, p=1): a zero row gives NaN, as there).
  static void divide_by_l1(std::vector<T>& h) {
    T l1 = 0;
    for (const T& e : h) l1 += std::abs(e);
    for (T& e : h) e /= l1;
  }

  void check_length(std::string_view where, std::string_view argument, index_t length) const {
    detail::check_positive(where, argument, length);
    if (length > cfg_.l_max)
      detail::fail(where, argument, "a length <= l_max = " + std::to_string(cfg_.l_max), length);
  }

  void check_input(std::string_view where, matrix_view<const T> u, std::string_view argument = "u") const {
    detail::check_equal(where, argument, "channels (extent 0)", cfg_.d_model, u.extent(0));
    check_length(where, argument, u.extent(1));
  }

  void validate(std::string_view where) const {
    const index_t D = cfg_.d_model, W = (cfg_.order + 1) * D, F = cfg_.filter_order, DF = D * (cfg_.order - 1);
    auto mat = [&](std::string_view name, const matrix<T>& m, index_t rows, index_t cols) {
      detail::check_equal(where, name, "rows", rows, m.extent(0));
      detail::check_equal(where, name, "columns", cols, m.extent(1));
    };
    auto vec = [&](std::string_view name, const std::vector<T>& v, index_t n) {
      detail::check_equal(where, name, "size", n, static_cast<index_t>(v.size()));
    };
    mat("in_proj_weight", w_.in_proj_weight, W, D);
    vec("in_proj_bias", w_.in_proj_bias, W);
    mat("short_filter_weight", w_.short_filter_weight, W, cfg_.short_filter_order);
    vec("short_filter_bias", w_.short_filter_bias, W);
    mat("pos_z", w_.pos_z, cfg_.l_max, cfg_.emb_dim);
    vec("pos_t", w_.pos_t, cfg_.l_max);
    detail::check_equal(where, "mlp_weight", "layers", cfg_.num_inner_mlps + 1, static_cast<index_t>(w_.mlp_weight.size()));
    detail::check_equal(where, "mlp_bias", "layers", cfg_.num_inner_mlps + 1, static_cast<index_t>(w_.mlp_bias.size()));
    for (std::size_t l = 0; l < w_.mlp_weight.size(); ++l) {
      mat("mlp_weight", w_.mlp_weight[l], F, l == 0 ? cfg_.emb_dim : F);
      vec("mlp_bias", w_.mlp_bias[l], F);
    }
    vec("sin_freq", w_.sin_freq, F);
    mat("mlp_out_weight", w_.mlp_out_weight, DF, F);
    vec("deltas", w_.deltas, DF);
    vec("filter_bias", w_.filter_bias, DF);
    mat("out_proj_weight", w_.out_proj_weight, D, D);
    vec("out_proj_bias", w_.out_proj_bias, D);
  }

  hyena_config cfg_;
  hyena_weights<T> w_;
};

}  // namespace mixlens
