// Tutorial 03: a new operator in ~60 lines, with host and device paths from the
// concept. The operator is a gated linear recurrence with one state per channel,
//   h_t = a_t·h_{t−1} + b_t·x_t,   y_t = c_t·h_t,
// with data-controlled a (decay in (0, 1)), b and c — a minimal relative of
// RG-LRU and S6. Its matrix is M[t][s] = c_t·(Π_{k=s+1..t} a_k)·b_s for s ≤ t.
//
// Steps:
//  1. the view: data members as views, shape checks in the constructor, value
//     checks in validate(), MIXLENS_HD accessors and a scratch-free row, the host
//     fast path (apply), for_each_view, operator_traits;
//  2. the oracle on the host: apply ≡ materialize·x, rows, causality;
//  3. the device: gpu::to_device and the generic gpu::apply / materialize (built
//     with CUDA), host ≡ device;
//  4. registration: an entry with key, init and bind, the shape every
//     ops/registry.hpp entry has, measured by the analysis instruments.
#include <mixlens/analysis/classify.hpp>
#include <mixlens/analysis/data_dependence.hpp>
#include <mixlens/analysis/diagonal_control.hpp>
#include <mixlens/detail/random.hpp>
#include <mixlens/linear_operator.hpp>
#ifdef MIXLENS_EXAMPLE_CUDA
#include <mixlens/gpu/operator.cuh>
#endif

#include <cmath>
#include <cstdio>
#include <string_view>
#include <tuple>

using namespace mixlens;

// ---- 1. the view -------------------------------------------------------------------
template <class T>
struct gated_recurrence {
  using value_type = T;
  matrix_view<const T> a, b, c;  // (channels × L) each

  gated_recurrence(matrix_view<const T> a_, matrix_view<const T> b_, matrix_view<const T> c_) : a(a_), b(b_), c(c_) {
    detail::check_signal("gated_recurrence", "b", a.extent(0), a.extent(1), b.extent(0), b.extent(1));
    detail::check_signal("gated_recurrence", "c", a.extent(0), a.extent(1), c.extent(0), c.extent(1));
  }
  [[nodiscard]] MIXLENS_HD index_t length() const { return a.extent(1); }
  [[nodiscard]] MIXLENS_HD index_t in_channels() const { return a.extent(0); }
  [[nodiscard]] MIXLENS_HD index_t out_channels() const { return a.extent(0); }

  void validate() const {  // host data only: bind and to_device call it
    for (index_t d = 0; d < a.extent(0); ++d)
      for (index_t t = 0; t < a.extent(1); ++t)
        if (!(a(d, t) > T(0) && a(d, t) < T(1))) detail::fail("gated_recurrence", "a", "a decay in (0, 1)", a(d, t));
  }
  template <class F>
  void for_each_view(F&& f) {
    f(a), f(b), f(c);
  }

  void apply(matrix_view<const T> x, matrix_view<T> y) const {  // the recurrence: O(L) per channel
    detail::check_apply_args("gated_recurrence::apply", *this, "x", x, y);
    for (index_t d = 0; d < in_channels(); ++d) {
      T h = 0;
      for (index_t t = 0; t < length(); ++t) y(d, t) = c(d, t) * (h = a(d, t) * h + b(d, t) * x(d, t));
    }
  }
  // A backward running product from the diagonal: stable, and no memory but r.
  MIXLENS_HD void row(index_t out, index_t in, index_t t, vector_view<T> r) const {
    MIXLENS_HOST_CHECK(detail::check_row_args("gated_recurrence::row", *this, out, in, t, r));
    for (index_t s = 0; s < length(); ++s) r[static_cast<std::size_t>(s)] = T(0);
    if (out != in) return;
    T p = c(out, t);
    for (index_t s = t; s >= 0; --s) {
      r[static_cast<std::size_t>(s)] = p * b(out, s);
      p *= a(out, s);
    }
  }
  void materialize(index_t out, index_t in, matrix_view<T> m) const {
    detail::check_materialize_args("gated_recurrence::materialize", *this, out, in, m);
    for (index_t t = 0; t < length(); ++t) row(out, in, t, vector_view<T>(&m(t, 0), static_cast<std::size_t>(length())));
  }
};

// Its class: diagonal data control (M = diag(c·P)·tril(1)·diag(b/P)), not
// time-invariant, channel-separable.
template <class T>
struct mixlens::operator_traits<gated_recurrence<T>> : operator_class<data_control::diagonal, false, false> {
  static constexpr std::string_view name = "gated recurrence";
};
static_assert(linear_operator<gated_recurrence<double>> && rebasable<gated_recurrence<double>>);

// The mixer: a, b, c from the input through per-channel weights.
struct gated_recurrence_mixer {
  std::vector<double> wa, wb, wc;
  static gated_recurrence_mixer init(index_t channels, std::uint64_t seed) {
    detail::splitmix64 rng(seed);
    gated_recurrence_mixer m;
    for (index_t d = 0; d < channels; ++d)
      m.wa.push_back(rng.uniform(-1, 1)), m.wb.push_back(rng.uniform(-1, 1)), m.wc.push_back(rng.uniform(-1, 1));
    return m;
  }
  struct storage {
    matrix<double> a, b, c;
  };
  [[nodiscard]] bound<gated_recurrence<double>, storage> bind(matrix_view<const double> x) const {
    const index_t D = x.extent(0), L = x.extent(1);
    storage s{matrix<double>(D, L), matrix<double>(D, L), matrix<double>(D, L)};
    for (index_t d = 0; d < D; ++d)
      for (index_t t = 0; t < L; ++t) {
        const std::size_t k = static_cast<std::size_t>(d);
        s.a(d, t) = 1 / (1 + std::exp(-(2 + wa[k] * x(d, t))));  // σ: a decay in (0, 1)
        s.b(d, t) = 1 + wb[k] * x(d, t);
        s.c(d, t) = 1 + wc[k] * x(d, t);
      }
    bound<gated_recurrence<double>, storage> op(std::move(s), [](const storage& st) {
      return gated_recurrence<double>(st.a.view(), st.b.view(), st.c.view());
    });
    op->validate();
    return op;
  }
};

double max_diff(const matrix<double>& p, const matrix<double>& q) {
  double e = 0;
  for (index_t i = 0; i < p.size(); ++i) e = std::fmax(e, std::abs(p.data()[i] - q.data()[i]));
  return std::isfinite(e) ? e : INFINITY;
}

// ---- 4. a registry entry: key, init, bind ---------------------------------------------
struct gated_recurrence_entry {
  static constexpr std::string_view key = "gated_recurrence";
  static auto init(index_t channels, std::uint64_t seed) { return gated_recurrence_mixer::init(channels, seed); }
  static auto bind(const gated_recurrence_mixer& m, matrix_view<const double> x) { return m.bind(x); }
};

int main() {
  const index_t D = 4, L = 200;
  const auto x = detail::normal_matrix<double>(D, L, 1), x0 = detail::normal_matrix<double>(D, L, 2);
  const auto mixer = gated_recurrence_entry::init(D, 7);
  const auto op = gated_recurrence_entry::bind(mixer, x.view());

  // ---- 2. the oracle on the host
  const auto fast = mix(op, x.view());
  matrix<double> dense(D, L);
  for (index_t d = 0; d < D; ++d) {
    const auto m = materialize(op, d, d);
    for (index_t t = 0; t < L; ++t)
      for (index_t s = 0; s <= t; ++s) dense(d, t) += m(t, s) * x(d, s);
  }
  const double host_err = max_diff(fast, dense);
  std::printf("host:   |apply - materialize*x| = %.2e\n", host_err);

  // ---- 3. the device (generic paths from row)
#ifdef MIXLENS_EXAMPLE_CUDA
  std::string reason;
  if (gpu::device_available(&reason)) {
    const auto dev = gpu::to_device(op);
    gpu::device_buffer<double> dx(D * L), dy(D * L), dm(L * L);
    dx.upload(x.data());
    gpu::apply(dev, matrix_view<const double>(dx.data(), D, L), matrix_view<double>(dy.data(), D, L));
    gpu::materialize(dev, 1, 1, matrix_view<double>(dm.data(), L, L));
    matrix<double> y(D, L), m(L, L);
    MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
    dy.download(y.data());
    dm.download(m.data());
    std::printf("device: |apply - host apply| = %.2e, |block 1 - host block 1| = %.2e\n", max_diff(y, fast),
                max_diff(m, materialize(op, 1, 1)));
  } else {
    std::printf("device: skipped (%s)\n", reason.c_str());
  }
#else
  std::printf("device: this build has no CUDA backend\n");
#endif

  // ---- 4. measured like every registry operator
  const auto op0 = gated_recurrence_entry::bind(mixer, x0.view());
  const auto m = materialize(op, 0, 0), m0 = materialize(op0, 0, 0);
  const double change = analysis::relative_change(m.view(), m0.view());
  const auto ratio = analysis::ratio_rank(m.view(), m0.view(), {.block = 32});
  const auto verdict = analysis::classify(change, ratio.rank, ratio.blocks);
  std::printf("%s: claimed %s, measured %s (data dependence %.2f, ratio rank %lld)\n",
              std::string(gated_recurrence_entry::key).c_str(),
              std::string(to_string(operator_traits<gated_recurrence<double>>::control)).c_str(),
              std::string(to_string(verdict)).c_str(), change, static_cast<long long>(ratio.rank));
  return host_err < 1e-10 && verdict == operator_traits<gated_recurrence<double>>::control ? 0 : 1;
}
