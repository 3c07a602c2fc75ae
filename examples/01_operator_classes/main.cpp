// Operator-class comparison: every mixer of the library on the same input,
// measured with the analysis instruments, against the class it claims.
//
// The paper's classification (Ali, Zimerman, Wolf 2024): S4, DSS, S5 mix with a
// fixed matrix (class i); GSS and Hyena put data-controlled diagonal gates around
// a fixed mixer (class ii); selective SSMs have data-controlled non-diagonal
// mixers (class iii). For each operator the program binds the mixer to a seeded
// input x (or one read from .npy), materializes its mixing matrices and reports
//   Toeplitz    ‖M − Toeplitz(M)‖/‖M‖ (time invariance)
//   Δ input     ‖M(x) − M(x₀)‖/‖M(x₀)‖ for a second input x₀ (data dependence)
//   ∂M          first-order sensitivity ‖∂M/∂x[δ]‖/‖M‖, ‖δ‖ = ‖x‖
//   ratio rank  numerical rank of M(x) ∘/ M(x₀) on the support (1: diagonal control;
//               past L = 1024 on the trailing 1024 × 1024 block)
//   semisep.    largest numerical rank of strictly lower blocks (their corner
//               of at most 256 × 256 at the diagonal)
//   span90      mean distance holding 90% of a row's |mass|
//   matrices    attention matrices per layer (inner components)
// and the verdict the measurements support. It writes each operator's first
// mixing matrix as .npy and PNG heatmap into the output folder and, with
// --json, every number as JSON. The operators are those of the registry
// (mixlens/ops/registry.hpp); with --device cuda (a build with CUDA) every
// operator is applied and materialized on the GPU through the same views.
#include <mixlens/analysis/attention_count.hpp>
#include <mixlens/analysis/attention_span.hpp>
#include <mixlens/analysis/classify.hpp>
#include <mixlens/analysis/data_dependence.hpp>
#include <mixlens/analysis/diagonal_control.hpp>
#include <mixlens/analysis/semiseparable.hpp>
#include <mixlens/analysis/time_invariance.hpp>
#include <mixlens/detail/random.hpp>
#include <mixlens/io/npy.hpp>
#include <mixlens/io/figure.hpp>
#include <mixlens/ops/registry.hpp>
#ifdef MIXLENS_EXAMPLE_CUDA
#include <mixlens/mixlens.cuh>
#endif

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

using namespace mixlens;
using T = double;

namespace {

constexpr const char* usage_text =
    "usage: 01_operator_classes [options]\n"
    "  --length L        sequence length (default 256)\n"
    "  --channels D      channels of the input (default 8)\n"
    "  --state N         state size of the SSMs, even (default 16)\n"
    "  --heads H         heads of the attention-like operators and SSD, dividing D (default 2)\n"
    "  --seed S          seed of the input and the initializations (default 0)\n"
    "  --operators LIST  comma-separated registry keys, or 'all' (default); keys:\n"
    "                    s4d,s4,dss,s5,gss,hyena,s6,mamba_block,causal_conv,ssd,rg_lru,rwkv4,retnet,\n"
    "                    linear_attention,softmax_attention\n"
    "  --device D        cpu (default) or cuda: where the operators are applied and materialized\n"
    "  --input FILE      the input x as a (D, L) .npy array instead of the seeded one\n"
    "  --out DIR         folder for the .npy and PNG matrices (default operator_classes_out)\n"
    "  --scale S         heatmap colour scale: log (|M| in decades, default) or linear\n"
    "  --pixels P        heatmap size in pixels (default 512; matrices are scaled to it)\n"
    "  --json FILE       also write every measurement as JSON\n"
    "  --quiet           no progress line\n";

struct options {
  index_t length = 256, channels = 8, state = 16, heads = 2;
  std::uint64_t seed = 0;
  std::vector<std::string> operators;
  std::filesystem::path out = "operator_classes_out", input, json;
  io::color_scale scale = io::color_scale::log_magnitude;
  index_t pixels = 512;
  bool quiet = false, cuda = false;
};

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The registry's keys, in its order.
const std::vector<std::string> all_keys = [] {
  std::vector<std::string> keys;
  for_each_operator<T>([&](auto entry) { keys.emplace_back(decltype(entry)::key); });
  return keys;
}();

// Standard normal entries from the platform-independent generator.
matrix<T> seeded_normal(index_t rows, index_t cols, std::uint64_t seed) { return detail::normal_matrix<T>(rows, cols, seed); }

// The inputs every operator sees: x, a second input x₀, and x ± εδ.
struct inputs {
  matrix<T> x, x0, plus, minus;
  double eps = 1e-4;
};

inputs make_inputs(matrix<T> x, std::uint64_t seed) {
  inputs in;
  const index_t D = x.extent(0), L = x.extent(1);
  in.x0 = seeded_normal(D, L, seed + 1);
  auto delta = seeded_normal(D, L, seed + 2);
  double nx = 0, nd = 0, n0 = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    nx += x.data()[i] * x.data()[i];
    nd += delta.data()[i] * delta.data()[i];
    n0 += in.x0.data()[i] * in.x0.data()[i];
  }
  // x₀ and δ get the norm of x, so that a file input meets comparable perturbations.
  const double s = nd > 0 ? std::sqrt(nx / nd) : 0.0, s0 = n0 > 0 ? std::sqrt(nx / n0) : 0.0;
  for (index_t i = 0; i < x.size(); ++i) in.x0.data()[i] *= s0;
  in.plus = matrix<T>(D, L);
  in.minus = matrix<T>(D, L);
  for (index_t i = 0; i < x.size(); ++i) {
    in.plus.data()[i] = x.data()[i] + in.eps * s * delta.data()[i];
    in.minus.data()[i] = x.data()[i] - in.eps * s * delta.data()[i];
  }
  in.x = std::move(x);
  return in;
}

// Side of the blocks of the ratio test: a rank equal to it means a full-rank ratio.
constexpr index_t ratio_block = 32;
// Largest side of the semiseparable blocks examined (their corner at the
// diagonal): keeps the SVDs small at long L; a full-rank operator reports it.
constexpr index_t semiseparable_block = 256;
// Largest window of the ratio test: past it, the test runs on the trailing
// ratio_window × ratio_window block at the diagonal (M[L−w:L, L−w:L]); diagonal
// control gives rank one on every sub-block, and the SVD count stays bounded.
constexpr index_t ratio_window = 1024;

matrix<T> trailing_window(const matrix<T>& m, index_t w) {
  const index_t L = m.extent(0), s = L - w;
  matrix<T> out(w, w);
  for (index_t i = 0; i < w; ++i)
    for (index_t j = 0; j < w; ++j) out(i, j) = m(s + i, s + j);
  return out;
}

struct measurement {
  std::string key, name;
  data_control claimed{}, verdict{};
  bool time_invariant = false, channel_mixing = false;
  double toeplitz = 0, change = 0, sensitivity = 0, apply_error = 0, span = 0, span_max = 0, ratio_sigma2 = 0;
  index_t ratio_rank = 0, ratio_blocks = 0, semiseparable = 0, examined = 0;
  analysis::attention_count_result count;
  std::vector<double> profile;  // attention-span profile of the first matrix
  double seconds = 0;
  std::string npy, png;
};

// The (output, input) channel pairs whose matrices are measured: one per head
// for head-based operators (a head's channels share it), every channel for
// channel-separable ones, and diagonal plus neighbouring blocks for
// channel-mixing ones.
template <class V>
std::vector<std::pair<index_t, index_t>> representative_pairs(const V& v) {
  std::vector<std::pair<index_t, index_t>> pairs;
  if constexpr (operator_traits<V>::channel_mixing) {
    for (index_t c = 0; c < v.in_channels(); ++c) {
      pairs.emplace_back(c, c);
      if (v.in_channels() > 1) pairs.emplace_back(c, (c + 1) % v.in_channels());
    }
  } else if constexpr (requires { v.heads(); }) {
    const index_t per_head = v.in_channels() / v.heads();
    for (index_t h = 0; h < v.heads(); ++h) pairs.emplace_back(h * per_head, h * per_head);
  } else {
    for (index_t c = 0; c < v.in_channels(); ++c) pairs.emplace_back(c, c);
  }
  return pairs;
}

// Where the operators run: apply and materialize on the host, or on the device
// through the same view (to_device, gpu::apply, gpu::materialize), results
// copied back for the host-side instruments.
template <class V>
class runner {
 public:
  runner(const V& v, bool cuda) : host_(v) {
#ifdef MIXLENS_EXAMPLE_CUDA
    if (cuda) device_.emplace(gpu::to_device(v));
#else
    if (cuda) throw mixlens::error("--device cuda: this build has no CUDA backend");
#endif
  }
  [[nodiscard]] matrix<T> apply(const matrix<T>& x) const {
#ifdef MIXLENS_EXAMPLE_CUDA
    if (device_) {
      gpu::device_buffer<T> dx(x.size()), dy(host_.out_channels() * host_.length());
      dx.upload(x.data());
      gpu::apply(*device_, matrix_view<const T>(dx.data(), x.extent(0), x.extent(1)),
                 matrix_view<T>(dy.data(), host_.out_channels(), host_.length()));
      matrix<T> y(host_.out_channels(), host_.length());
      MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
      dy.download(y.data());
      return y;
    }
#endif
    return mix(host_, x.view());
  }
  void materialize(index_t o, index_t i, matrix<T>& m) const {
#ifdef MIXLENS_EXAMPLE_CUDA
    if (device_) {
      const index_t L = host_.length();
      if (!block_.size()) block_ = gpu::device_buffer<T>(L * L);
      gpu::materialize(*device_, o, i, matrix_view<T>(block_.data(), L, L));
      MIXLENS_CUDA_CHECK(cudaDeviceSynchronize());
      block_.download(m.data());
      return;
    }
#endif
    host_.materialize(o, i, m.view());
  }

 private:
  V host_;
#ifdef MIXLENS_EXAMPLE_CUDA
  std::optional<bound<V, gpu::device_storage>> device_;
  mutable gpu::device_buffer<T> block_;
#endif
};

// ‖apply(x) − M·x‖ / ‖M·x‖ over every channel.
template <class V>
double apply_error(const V& v, const runner<V>& run, const matrix<T>& x) {
  const auto fast = run.apply(x);
  const index_t L = v.length();
  matrix<T> dense(v.out_channels(), L), block(L, L);
  for (index_t o = 0; o < v.out_channels(); ++o)
    for (index_t i = 0; i < v.in_channels(); ++i) {
      if (!operator_traits<V>::channel_mixing && o != i) continue;
      run.materialize(o, i, block);
      for (index_t t = 0; t < L; ++t) {
        double acc = 0;
        for (index_t s = 0; s <= t; ++s) acc += block(t, s) * x(i, s);
        dense(o, t) += acc;
      }
    }
  return analysis::relative_change(fast.view(), dense.view());
}

template <class Bind>
measurement measure(const std::string& key, Bind bind, const inputs& in, const options& opt) {
  const auto start = std::chrono::steady_clock::now();
  auto op = bind(in.x);
  auto op0 = bind(in.x0);
  auto op_plus = bind(in.plus);
  auto op_minus = bind(in.minus);
  const auto& v = view_of(op);
  using V = std::remove_cvref_t<decltype(v)>;
  using traits = operator_traits<V>;
  measurement r;
  r.key = key;
  r.name = std::string(traits::name);
  r.claimed = traits::control;
  r.time_invariant = traits::time_invariant;
  r.channel_mixing = traits::channel_mixing;
  r.count = analysis::attention_count(v);
  const runner<V> run(v, opt.cuda), run0(view_of(op0), opt.cuda), run_plus(view_of(op_plus), opt.cuda),
      run_minus(view_of(op_minus), opt.cuda);
  r.apply_error = apply_error(v, run, in.x);

  const index_t L = v.length();
  matrix<T> m(L, L), m0(L, L), mp(L, L), mm(L, L);
  double span_sum = 0;
  for (auto [o, i] : representative_pairs(v)) {
    run.materialize(o, i, m);
    run0.materialize(o, i, m0);
    run_plus.materialize(o, i, mp);
    run_minus.materialize(o, i, mm);
    r.toeplitz = std::max(r.toeplitz, analysis::toeplitz_distance(m.view()));
    r.change = std::max(r.change, analysis::relative_change(m.view(), m0.view()));
    r.sensitivity = std::max(r.sensitivity, analysis::sensitivity(mp.view(), mm.view(), m.view(), in.eps));
    const auto rr = L > ratio_window ? analysis::ratio_rank(trailing_window(m, ratio_window).view(),
                                                            trailing_window(m0, ratio_window).view(), {.block = ratio_block})
                                     : analysis::ratio_rank(m.view(), m0.view(), {.block = ratio_block});
    r.ratio_rank = std::max(r.ratio_rank, rr.rank);
    r.ratio_blocks += rr.blocks;
    r.ratio_sigma2 = std::max(r.ratio_sigma2, rr.second_singular);
    r.semiseparable = std::max(r.semiseparable, analysis::semiseparable_rank(m.view(), {.splits = 3, .max_block = semiseparable_block}).rank);
    const auto span = analysis::attention_span(m.view(), 0.9);
    span_sum += span.mass_distance;
    r.span_max = std::max(r.span_max, span.max_distance);
    if (r.examined == 0) {
      r.profile = span.profile;
      r.npy = key + ".npy";
      r.png = key + ".png";
      io::write_npy(opt.out / r.npy, m);
      io::write_heatmap_png(opt.out / r.png, matrix_view<const T>(m.view()),
                            {.scale = opt.scale, .target_pixels = opt.pixels, .max_pixels = opt.pixels, .title = key});
    }
    ++r.examined;
  }
  r.span = r.examined > 0 ? span_sum / double(r.examined) : 0.0;
  r.verdict = analysis::classify(r.change, r.ratio_rank, r.ratio_blocks);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

// Measures the registry operator `key`, initialized as its reference code does
// with D channels and state size N; head-based operators use H heads of D/H channels.
measurement measure_key(const std::string& key, const inputs& in, const options& o) {
  const operator_options options{.channels = o.channels, .state = o.state, .heads = o.heads, .max_length = o.length,
                                 .seed = o.seed};
  std::optional<measurement> r;
  for_each_operator<T>([&](auto entry) {
    using E = decltype(entry);
    if (r || E::key != key) return;
    const auto mixer = E::init(options);
    r = measure(key, [&](const matrix<T>& x) { return E::bind(mixer, x.view()); }, in, o);
  });
  if (!r) throw usage_error("unknown operator '" + key + "'");
  return *r;
}

index_t parse_count(const std::string& option, const std::string& value, index_t lo, index_t hi) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::logic_error&) {
    used = 0;
  }
  if (used != value.size() || value.empty()) throw usage_error(option + " expects an integer, got '" + value + "'");
  if (v < lo || v > hi)
    throw usage_error(option + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + value);
  return v;
}

options parse(int argc, char** argv) {
  options o;
  bool length_set = false, channels_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    }
    if (arg == "--quiet") {
      o.quiet = true;
      continue;
    }
    if (arg == "--device") {
      if (i + 1 >= argc) throw usage_error("option --device needs a value");
      const std::string value = argv[++i];
      if (value != "cpu" && value != "cuda") throw usage_error("--device expects 'cpu' or 'cuda', got '" + value + "'");
      o.cuda = value == "cuda";
      continue;
    }
    if (arg.rfind("--", 0) != 0) throw usage_error("unexpected argument '" + arg + "'");
    if (i + 1 >= argc) throw usage_error("option " + arg + " needs a value");
    const std::string value = argv[++i];
    if (arg == "--length") {
      o.length = parse_count(arg, value, 1, 8192);
      length_set = true;
    } else if (arg == "--channels") {
      o.channels = parse_count(arg, value, 1, 1024);
      channels_set = true;
    } else if (arg == "--state") {
      o.state = parse_count(arg, value, 2, 256);
      if (o.state % 2 != 0) throw usage_error("--state must be even (S4, S4D and S5 store conjugate pairs), got " + value);
    } else if (arg == "--heads") {
      o.heads = parse_count(arg, value, 1, 1024);
    } else if (arg == "--seed") {
      o.seed = static_cast<std::uint64_t>(parse_count(arg, value, 0, std::numeric_limits<long long>::max()));
    } else if (arg == "--operators") {
      std::stringstream ss(value);
      std::string key;
      while (std::getline(ss, key, ',')) {
        if (key == "all") {
          o.operators.insert(o.operators.end(), all_keys.begin(), all_keys.end());
        } else if (std::find(all_keys.begin(), all_keys.end(), key) != all_keys.end()) {
          o.operators.push_back(key);
        } else {
          std::string known;
          for (const auto& k : all_keys) known += (known.empty() ? "" : ", ") + k;
          throw usage_error("unknown operator '" + key + "' in --operators (known: " + known + ", all)");
        }
      }
      if (o.operators.empty()) throw usage_error("--operators needs at least one operator");
    } else if (arg == "--input") {
      o.input = value;
    } else if (arg == "--out") {
      o.out = value;
    } else if (arg == "--json") {
      o.json = value;
    } else if (arg == "--pixels") {
      o.pixels = parse_count(arg, value, 16, 4096);
    } else if (arg == "--scale") {
      if (value == "log") o.scale = io::color_scale::log_magnitude;
      else if (value == "linear") o.scale = io::color_scale::linear;
      else throw usage_error("--scale expects 'log' or 'linear', got '" + value + "'");
    } else {
      throw usage_error("unknown option " + arg);
    }
  }
  if (o.operators.empty()) o.operators = all_keys;
  if (!o.input.empty() && (length_set || channels_set))
    throw usage_error("--input fixes the length and channels; drop --length/--channels");
  return o;
}

matrix<T> load_input(const options& o) {
  const auto a = io::read_npy(o.input);
  if (a.shape.size() != 2)
    throw usage_error("--input " + o.input.string() + ": expected a 2-D (channels, length) array, got " +
                      std::to_string(a.shape.size()) + " dimensions");
  if (a.shape[0] < 1 || a.shape[1] < 1) throw usage_error("--input " + o.input.string() + ": empty array");
  const auto data = a.as<T>();
  matrix<T> x(a.shape[0], a.shape[1]);
  std::copy(data.begin(), data.end(), x.data());
  for (index_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x.data()[i]))
      throw usage_error("--input " + o.input.string() + ": non-finite value at flat index " + std::to_string(i));
  return x;
}

std::string sci(double v) {
  char buf[32];
  if (v == 0) return "0";
  std::snprintf(buf, sizeof buf, "%.1e", v);
  return buf;
}

void print_table(const std::vector<measurement>& ms, const options& o) {
  const index_t side = std::min(ratio_block, o.length);
  std::printf("| operator | claimed | Toeplitz | Δ input | ∂M | ratio rank | semisep. rank | span90 | matrices (inner) | apply err | verdict |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& m : ms) {
    const std::string ratio =
        m.ratio_blocks > 0 ? std::to_string(m.ratio_rank) + "/" + std::to_string(std::min(ratio_block, o.length)) : "n/a";
    std::printf("| %s | %s | %s | %s | %s | %s | %lld | %.1f | %lld (%lld) | %s | %s %s |\n", m.name.c_str(),
                std::string(to_string(m.claimed)).c_str(), sci(m.toeplitz).c_str(), sci(m.change).c_str(),
                sci(m.sensitivity).c_str(), ratio.c_str(), static_cast<long long>(m.semiseparable), m.span,
                static_cast<long long>(m.count.matrices), static_cast<long long>(m.count.inner), sci(m.apply_error).c_str(),
                std::string(to_string(m.verdict)).c_str(), m.verdict == m.claimed ? "✓" : "✗ (differs)");
  }
  std::printf("\nL = %lld, D = %lld, N = %lld, H = %lld, seed = %llu, device %s. Toeplitz: ‖M − Toeplitz(M)‖/‖M‖; Δ input: "
              "‖M(x) − M(x₀)‖/‖M(x₀)‖;\n∂M: ‖∂M/∂x[δ]‖/‖M‖ with ‖δ‖ = ‖x‖; ratio rank: numerical rank of M(x) ∘/ M(x₀) on "
              "%lld×%lld blocks of the support\n(1 = diagonal data control, %lld = full);\nsemisep. rank: largest numerical rank of strictly lower blocks (corners of at most %lld × %lld); span90: "
              "mean distance holding 90%% of a row's |mass|;\nmatrices: attention matrices per layer (inner components); "
              "apply err: fast path vs materialized matrix. Maxima over the matrices examined.\n",
              static_cast<long long>(o.length), static_cast<long long>(o.channels), static_cast<long long>(o.state),
              static_cast<long long>(o.heads), static_cast<unsigned long long>(o.seed), o.cuda ? "cuda" : "cpu",
              static_cast<long long>(side),
              static_cast<long long>(side), static_cast<long long>(side), static_cast<long long>(semiseparable_block),
              static_cast<long long>(semiseparable_block));
}

void write_json(const std::vector<measurement>& ms, const options& o) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& m : ms) {
    const std::size_t lags = std::min<std::size_t>(m.profile.size(), 64);
    j[m.key] = {
        {"name", m.name},
        {"claimed_class", std::string(to_string(m.claimed))},
        {"measured",
         {{"toeplitz_distance", m.toeplitz},
          {"relative_change", m.change},
          {"sensitivity", m.sensitivity},
          {"ratio_rank", m.ratio_blocks > 0 ? nlohmann::ordered_json(m.ratio_rank) : nlohmann::ordered_json(nullptr)},
          {"ratio_second_singular", m.ratio_sigma2},
          {"ratio_blocks", m.ratio_blocks},
          {"ratio_block_side", std::min(ratio_block, o.length)},
          {"semiseparable_rank", m.semiseparable},
          {"attention_span_90", m.span},
          {"attention_span_90_max", m.span_max},
          {"attention_span_profile", std::vector<double>(m.profile.begin(), m.profile.begin() + static_cast<std::ptrdiff_t>(lags))},
          {"attention_matrices", m.count.matrices},
          {"inner_matrices", m.count.inner},
          {"apply_error", m.apply_error},
          {"matrices_examined", m.examined},
          {"time_invariant_claimed", m.time_invariant},
          {"channel_mixing", m.channel_mixing},
          {"seconds", m.seconds}}},
        {"verdict", std::string(to_string(m.verdict))},
        {"agrees", m.verdict == m.claimed},
        {"files", {{"npy", (o.out / m.npy).string()}, {"png", (o.out / m.png).string()}}},
    };
  }
  std::ofstream f(o.json);
  if (!f) throw mixlens::error("cannot write --json file '" + o.json.string() + "'");
  f << j.dump(2) << '\n';
  if (!f) throw mixlens::error("writing --json file '" + o.json.string() + "' failed");
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    o = parse(argc, argv);
    matrix<T> x = o.input.empty() ? seeded_normal(o.channels, o.length, o.seed) : load_input(o);
    o.channels = x.extent(0);
    o.length = x.extent(1);
    if (o.channels % o.heads != 0)
      throw usage_error("--heads " + std::to_string(o.heads) + " must divide the " + std::to_string(o.channels) + " channels");
    std::filesystem::create_directories(o.out);
    const auto in = make_inputs(std::move(x), o.seed);
    std::vector<measurement> results;
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < o.operators.size(); ++k) {
      const auto& key = o.operators[k];
      if (!o.quiet) {
        std::fprintf(stderr, "\r[%2zu/%zu] %-18s %6.1f s", k + 1, o.operators.size(), key.c_str(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        std::fflush(stderr);
      }
      results.push_back(measure_key(key, in, o));
    }
    if (!o.quiet)
      std::fprintf(stderr, "\r%zu operators measured in %.1f s%-20s\n", results.size(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), "");
    print_table(results, o);
    if (!o.json.empty()) write_json(results, o);
    std::printf("\nmatrices (first block of each operator, %s scale) in %s/\n",
                o.scale == io::color_scale::linear ? "linear" : "log-magnitude", o.out.string().c_str());
  } catch (const usage_error& e) {
    std::fprintf(stderr, "01_operator_classes: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\n01_operator_classes: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
