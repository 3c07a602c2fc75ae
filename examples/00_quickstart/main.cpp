// Quickstart: three operator classes on one input. S4D (fixed mixing), Hyena
// (diagonal data control) and S6 (non-diagonal data control) are bound to the
// same seeded signal, applied with their fast algorithms, materialized, and
// compared. Matrices of channel 0 are written as .npy and PNG heatmaps.
//
//   00_quickstart [--length L] [--channels D] [--seed S] [--out DIR]
#include <mixlens/io/npy.hpp>
#include <mixlens/io/figure.hpp>
#include <mixlens/mixlens.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

using namespace mixlens;
using T = double;

namespace {

matrix<T> seeded_input(index_t channels, index_t length, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  matrix<T> x(channels, length);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = normal(gen);
  return x;
}

// ‖M − Toeplitz(M)‖_F / ‖M‖_F, the Toeplitz matrix averaging each diagonal.
double toeplitz_distance(const matrix<T>& m) {
  const index_t L = m.extent(0);
  double off = 0, norm = 0;
  for (index_t k = 0; k < L; ++k) {
    double mean = 0;
    for (index_t t = k; t < L; ++t) mean += m(t, t - k);
    mean /= double(L - k);
    for (index_t t = k; t < L; ++t) off += (m(t, t - k) - mean) * (m(t, t - k) - mean);
  }
  for (index_t i = 0; i < m.size(); ++i) norm += m.data()[i] * m.data()[i];
  return norm > 0 ? std::sqrt(off / norm) : 0.0;
}

double relative_difference(const matrix<T>& a, const matrix<T>& b) {
  double diff = 0, norm = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    diff += (a.data()[i] - b.data()[i]) * (a.data()[i] - b.data()[i]);
    norm += b.data()[i] * b.data()[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// ‖apply(x) − M·x‖ / ‖M·x‖ over all channels.
template <class Op>
double apply_error(const Op& op, const matrix<T>& x) {
  const auto& v = view_of(op);
  auto fast = mix(v, x.view());
  matrix<T> dense(v.out_channels(), v.length());
  for (index_t c = 0; c < v.out_channels(); ++c) {
    auto m = materialize(v, c, c);
    for (index_t t = 0; t < v.length(); ++t)
      for (index_t s = 0; s <= t; ++s) dense(c, t) += m(t, s) * x(c, s);
  }
  return relative_difference(fast, dense);
}

template <class Op>
void report(const char* label, const Op& op, const Op& other, const matrix<T>& x, const std::filesystem::path& out) {
  using traits = operator_traits<std::remove_cvref_t<decltype(view_of(op))>>;
  auto m = materialize(op, 0, 0), m2 = materialize(other, 0, 0);
  std::printf("| %-6s | %-13s | %-14s | %10.2e | %9.2e | %12.2e |\n", label, std::string(to_string(traits::control)).c_str(),
              traits::time_invariant ? "yes" : "no", apply_error(op, x), toeplitz_distance(m), relative_difference(m2, m));
  const std::string stem = std::string(label);
  io::write_npy(out / (stem + ".npy"), m);
  io::write_heatmap_png(out / (stem + ".png"), matrix_view<const T>(m.view()),
                        {.scale = io::color_scale::log_magnitude, .title = stem + " \u00b7 |entry|, log scale"});
}

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr, "00_quickstart: %s\nusage: 00_quickstart [--length L] [--channels D] [--seed S] [--out DIR]\n",
               problem.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  index_t L = 128, D = 4;
  std::uint64_t seed = 0;
  std::filesystem::path out = "quickstart_out";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage("option " + arg + " needs a value");
    const std::string value = argv[++i];
    try {
      if (arg == "--length") L = std::stoll(value);
      else if (arg == "--channels") D = std::stoll(value);
      else if (arg == "--seed") seed = std::stoull(value);
      else if (arg == "--out") out = value;
      else usage("unknown option " + arg);
    } catch (const std::logic_error&) {
      usage("option " + arg + " expects a number, got '" + value + "'");
    }
  }
  if (L < 1 || L > 4096) usage("--length must be in [1, 4096], got " + std::to_string(L));
  if (D < 1 || D > 256) usage("--channels must be in [1, 256], got " + std::to_string(D));
  std::filesystem::create_directories(out);

  const auto x = seeded_input(D, L, seed), x2 = seeded_input(D, L, seed + 1);
  std::printf("mixlens quickstart: L = %lld, D = %lld, seed = %llu; matrices of channel 0 in %s/\n\n",
              static_cast<long long>(L), static_cast<long long>(D), static_cast<unsigned long long>(seed),
              out.string().c_str());
  std::printf("| op     | data control  | time-invariant | apply err  | Toeplitz  | Δ other input |\n");
  std::printf("|--------|---------------|----------------|------------|-----------|---------------|\n");

  const auto s4d = s4d_mixer<T>::init(D, 16, s4d_init::lin, seed);
  report("S4D", s4d.bind(x.view()), s4d.bind(x2.view()), x, out);

  hyena_config cfg;
  cfg.d_model = D;
  cfg.l_max = L;
  cfg.seed = seed;
  const hyena_mixer<T> hyena(cfg);
  auto hy = hyena.bind(x.view()), hy2 = hyena.bind(x2.view());
  report("Hyena", hy, hy2, hy.storage().value, out);

  const auto s6 = s6_mixer<T>::init(D, 16, std::max<index_t>(1, D / 16), seed);
  report("S6", s6.bind(x.view()), s6.bind(x2.view()), x, out);

  std::printf("\napply err: fast path vs materialized matrix; Toeplitz: distance of M to the nearest Toeplitz\n"
              "matrix; Δ other input: relative change of M when the input changes (0 for fixed mixing).\n");
  return 0;
}
