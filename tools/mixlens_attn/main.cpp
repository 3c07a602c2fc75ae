// mixlens-attn: the hidden attention of a Mamba, Falcon-Mamba or Mamba-2
// language model checkpoint (the family is read from config.json).
//
//   mixlens-attn --model DIR (--tokens 3,17,5 | --tokens-file t.npy) --out DIR
//                [--device cpu|cuda] [--form paper|unified] [--layers all|0,3,5]
//                [--save-alpha all|none|0,3] [--no-png] [--self-test]
//                [--reference-logits FILE] [--strict] [--max-memory BYTES]
//
// Writes logits.npy (L × V), alpha_{k}.npy (D × L × L; for Mamba-2's paper
// form heads × L × L) per selected layer (those of --save-alpha), raw.npy and
// rollout.npy (L × L) over the selected
// layers, and PNG heatmaps alpha_{k}.png (channel mean) and rollout.png. With
// --device cuda (builds with CUDA) the forward pass, the matrices, their channel
// means, raw attention and rollout are computed on the GPU; D × L × L tensors
// are copied to the host only for alpha_{k}.npy. Every input is checked before
// any output is written; the outputs are written to a fresh folder beside --out
// that replaces it only when the run completes (see output_folder). Exit status:
// 0 success, 1 a failure (bad model, tokens, output folder, not enough memory,
// failed check, no usable GPU), 2 bad usage.
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mixlens/io/npy.hpp"
#include "mixlens/io/png.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"
#ifdef MIXLENS_ATTN_CUDA
#include "mixlens/gpu/models/mamba.cuh"
#endif

namespace fs = std::filesystem;
using mixlens::index_t;
using mixlens::matrix;
using namespace mixlens::models;

namespace {

constexpr std::string_view usage_text =
    "usage: mixlens-attn --model DIR (--tokens 3,17,5 | --tokens-file t.npy) --out DIR\n"
    "                    [--device cpu|cuda] [--form paper|unified] [--layers all|0,3,5]\n"
    "                    [--save-alpha all|none|0,3] [--no-png] [--self-test]\n"
    "                    [--reference-logits FILE] [--strict] [--max-memory BYTES]\n"
    "\n"
    "  --model DIR             config.json + model.safetensors or its shards: Mamba, Falcon-Mamba or\n"
    "                          Mamba-2 (Hugging Face or state-spaces layout, told by config.json)\n"
    "  --tokens LIST           comma-separated token ids\n"
    "  --tokens-file FILE      token ids as a 1-D int32/int64 .npy\n"
    "  --out DIR               output folder (created if missing; replaced only if empty or a former output)\n"
    "  --device cpu|cuda       where to compute (default cpu)\n"
    "  --form paper|unified    alpha_{k}.npy: the paper's alpha (per channel; per head for Mamba-2),\n"
    "                          or the whole block's unified form (per channel)\n"
    "  --layers all|LIST       layers to analyse, 0-based (default all); raw and rollout use them\n"
    "  --save-alpha all|none|LIST  analysed layers whose alpha_{k}.npy is written (default all)\n"
    "  --no-png                skip the PNG heatmaps\n"
    "  --self-test             check per layer that the matrices reproduce the layer output\n"
    "  --reference-logits FILE compare the logits with a (L x V) .npy, fail above 1e-4 relative\n"
    "  --strict                refuse checkpoint tensors the model does not use (default: a warning)\n"
    "  --max-memory BYTES      memory budget, e.g. 8G or 512M (default: MemAvailable); a run that\n"
    "                          needs more is refused before it starts\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct options {
  fs::path model, out, tokens_file, reference_logits;
  std::string tokens_list, device = "cpu", layers = "all", save_alpha = "all";
  attention_form form = attention_form::paper;
  bool png = true, self_test = false, strict = false;
  std::optional<double> max_memory;  // bytes
};

// "8G", "512M", "1.5GiB", "4096": a positive byte count, binary suffixes.
double parse_bytes(const std::string& text) {
  double v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  std::string_view unit(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
  if (unit.ends_with("iB")) unit.remove_suffix(2);
  else if (unit.ends_with("B") && unit.size() > 1) unit.remove_suffix(1);
  static constexpr std::pair<std::string_view, double> units[] = {
      {"", 1}, {"B", 1}, {"K", 0x1p10}, {"M", 0x1p20}, {"G", 0x1p30}, {"T", 0x1p40}};
  for (const auto& [name, scale] : units)
    if (ec == std::errc() && unit == name && v > 0 && std::isfinite(v)) return v * scale;
  throw usage_error("--max-memory: expected a positive size like 8G, 512M or 4096, not '" + text + "'");
}

options parse_args(int argc, char** argv) {
  options o;
  bool has_tokens = false, has_tokens_file = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") o.model = value();
    else if (arg == "--out") o.out = value();
    else if (arg == "--tokens") { o.tokens_list = value(); has_tokens = true; }
    else if (arg == "--tokens-file") { o.tokens_file = value(); has_tokens_file = true; }
    else if (arg == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda") throw usage_error("--device must be cpu or cuda, not '" + o.device + "'");
    } else if (arg == "--form") {
      const std::string f = value();
      if (f == "paper") o.form = attention_form::paper;
      else if (f == "unified") o.form = attention_form::unified;
      else throw usage_error("--form must be paper or unified, not '" + f + "'");
    } else if (arg == "--layers") o.layers = value();
    else if (arg == "--save-alpha") o.save_alpha = value();
    else if (arg == "--no-png") o.png = false;
    else if (arg == "--self-test") o.self_test = true;
    else if (arg == "--reference-logits") o.reference_logits = value();
    else if (arg == "--strict") o.strict = true;
    else if (arg == "--max-memory") o.max_memory = parse_bytes(value());
    else throw usage_error("unknown argument '" + std::string(arg) + "'");
  }
  if (o.model.empty()) throw usage_error("--model is required");
  if (o.out.empty()) throw usage_error("--out is required");
  if (has_tokens == has_tokens_file) throw usage_error("give exactly one of --tokens and --tokens-file");
  return o;
}

// "3,17,5" → ids; every item must be a whole integer.
std::vector<index_t> parse_list(const std::string& text, const char* what) {
  std::vector<index_t> out;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(',', begin);
    const std::string item = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    index_t v = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
      throw mixlens::error(std::string(what) + ": '" + item + "' is not an integer");
    out.push_back(v);
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return out;
}

std::vector<index_t> read_tokens(const options& o) {
  if (o.tokens_file.empty()) return parse_list(o.tokens_list, "--tokens");
  const auto a = mixlens::io::read_npy(o.tokens_file);
  if (a.descr != "<i4" && a.descr != "<i8")
    throw mixlens::error("token file '" + o.tokens_file.string() + "': dtype " + a.descr + " (expected int32 or int64)");
  const bool vector = a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[0] == 1);
  if (!vector) throw mixlens::error("token file '" + o.tokens_file.string() + "': expected a 1-D array of token ids");
  return a.as<index_t>();
}

std::vector<index_t> parse_layers(const std::string& text, index_t layers) {
  std::vector<index_t> out;
  if (text == "all") {
    for (index_t k = 0; k < layers; ++k) out.push_back(k);
    return out;
  }
  for (index_t k : parse_list(text, "--layers")) {
    if (k < 0 || k >= layers)
      throw mixlens::error("--layers: layer " + std::to_string(k) + " is outside [0, " + std::to_string(layers) + ")");
    out.push_back(k);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// The analysed layers whose alpha_{k}.npy is written.
std::vector<index_t> parse_save_alpha(const std::string& text, const std::vector<index_t>& layers) {
  if (text == "all") return layers;
  if (text == "none") return {};
  std::vector<index_t> out;
  for (index_t k : parse_list(text, "--save-alpha")) {
    if (std::find(layers.begin(), layers.end(), k) == layers.end())
      throw mixlens::error("--save-alpha: layer " + std::to_string(k) + " is not among the analysed layers (--layers)");
    out.push_back(k);
  }
  return out;
}

// The output folder. The run writes into a fresh folder beside --out (so on
// the same file system) and renames it into place when every file is written:
// a failed run leaves nothing, and a rerun leaves no file of an earlier one.
// An existing --out is replaced only when it is empty or a former output (its
// manifest lists every file in it); anything else is refused before any work
// is done, so that no file of the user's is ever removed.
class output_folder {
 public:
  static constexpr std::string_view manifest = "mixlens-attn.manifest";
  static constexpr std::string_view manifest_magic = "mixlens-attn output";

  explicit output_folder(fs::path out) : out_(std::move(out)) {
    if (!out_.has_filename()) out_ = out_.parent_path();  // "dir/" names dir
    check_replaceable();
    const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");
    std::error_code ec;
    fs::create_directories(parent, ec);
    std::string pattern = (parent / ("." + out_.filename().string() + ".partial-XXXXXX")).string();
    if (ec || !::mkdtemp(pattern.data()))
      throw mixlens::error("output folder '" + out_.string() + "' cannot be created: " +
                           (ec ? ec.message() : std::string(std::strerror(errno))));
    staging_ = pattern;
    // mkdtemp makes the folder private (0700); outputs get the usual umask.
    const ::mode_t mask = ::umask(0);
    ::umask(mask);
    fs::permissions(staging_, fs::perms::all & ~static_cast<fs::perms>(mask), ec);
  }
  output_folder(const output_folder&) = delete;
  output_folder& operator=(const output_folder&) = delete;
  ~output_folder() {
    std::error_code ec;
    if (!staging_.empty()) fs::remove_all(staging_, ec);
  }

  // Where the run writes its files until commit().
  [[nodiscard]] const fs::path& staging() const { return staging_; }

  // Writes the manifest and moves the files into place as --out.
  void commit() {
    {
      std::ofstream m(staging_ / manifest);
      m << manifest_magic << "\n";
      for (const auto& e : fs::directory_iterator(staging_))
        if (e.path().filename() != manifest) m << e.path().filename().string() << "\n";
      if (!m.flush()) throw mixlens::error("cannot write the manifest in '" + staging_.string() + "'");
    }
    check_replaceable();  // again: the folder may have changed during the run
    std::error_code ec;
    fs::path old;
    if (fs::exists(out_) && !fs::is_empty(out_)) {
      old = staging_.string() + ".old";
      fs::rename(out_, old, ec);
      if (ec) throw mixlens::error("cannot replace output folder '" + out_.string() + "': " + ec.message());
    }
    fs::rename(staging_, out_, ec);  // replaces an empty folder
    if (ec) {
      if (!old.empty()) fs::rename(old, out_);
      throw mixlens::error("cannot move the outputs to '" + out_.string() + "': " + ec.message());
    }
    staging_.clear();
    if (!old.empty()) fs::remove_all(old, ec);
  }

 private:
  void check_replaceable() const {
    std::error_code ec;
    const auto st = fs::symlink_status(out_, ec);
    if (st.type() == fs::file_type::not_found) return;
    if (st.type() != fs::file_type::directory)
      throw mixlens::error("output folder '" + out_.string() + "' exists and is not a folder");
    if (fs::is_empty(out_)) return;
    std::ifstream in(out_ / manifest);
    std::string line;
    if (!std::getline(in, line) || line != manifest_magic)
      throw mixlens::error("output folder '" + out_.string() + "' is not empty and holds no " + std::string(manifest) +
                           ": it is not a former mixlens-attn output, and nothing in it is replaced; choose another --out");
    std::vector<std::string> listed;
    while (std::getline(in, line)) listed.push_back(line);
    for (const auto& e : fs::directory_iterator(out_)) {
      const std::string name = e.path().filename().string();
      if (name != manifest && std::find(listed.begin(), listed.end(), name) == listed.end())
        throw mixlens::error("output folder '" + out_.string() + "' holds '" + name +
                             "', which no mixlens-attn run wrote; nothing in it is replaced; choose another --out");
    }
  }

  fs::path out_, staging_;
};

// The reference logits, checked (dtype, shape L x V, finite) before any work.
std::vector<double> read_reference(const fs::path& file, index_t L, index_t V) {
  const std::string who = "reference logits '" + file.string() + "'";
  const auto ref = mixlens::io::read_npy(file);
  if (ref.descr != "<f4" && ref.descr != "<f8")
    throw mixlens::error(who + ": dtype " + ref.descr + ", expected float32 or float64 (<f4 or <f8)");
  if (ref.shape != std::vector<index_t>{L, V}) {
    std::string got;
    for (index_t e : ref.shape) got += (got.empty() ? "" : ", ") + std::to_string(e);
    throw mixlens::error(who + ": shape does not match: (" + got + "), expected (L, V) = (" + std::to_string(L) + ", " +
                         std::to_string(V) + ")");
  }
  auto want = ref.as<double>();
  if (const std::string at = mixlens::detail::find_non_finite(want.data(), {L, V}); !at.empty())
    throw mixlens::error(who + ": expected finite values, got " + at);
  return want;
}

// Memory the system can give: MemAvailable, lowered by a cgroup v2 limit;
// nullopt where neither is known.
std::optional<double> available_memory() {
  std::optional<double> avail;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kb = 0;
    if (key == "MemAvailable:" && meminfo >> kb) avail = kb * 1024;
    meminfo.ignore(1 << 10, '\n');
  }
  double limit = 0, used = 0;
  std::ifstream max("/sys/fs/cgroup/memory.max"), current("/sys/fs/cgroup/memory.current");
  if (max >> limit && current >> used && limit > used) avail = std::min(avail.value_or(limit - used), limit - used);
  return avail;
}

std::string human_bytes(double bytes) {
  std::ostringstream os;
  os.precision(3);
  if (bytes < 1e6) os << bytes / 1e3 << " kB";
  else if (bytes < 1e9) os << bytes / 1e6 << " MB";
  else os << bytes / 1e9 << " GB";
  return os.str();
}

// Refuses a run whose buffers would not fit, before anything is allocated:
// out of memory, the process would be killed without a word. The estimate
// counts what the run holds at once: the D x L x L tensor of a saved layer,
// one chunk of blocks (at most 2 GiB), the layer signals, the logits and maps.
struct memory_sizes {
  index_t channels, hidden, projections;  // the widest α tensor's channels, d_model, x_proj / in_proj rows
};
memory_sizes memory_rows(const mamba_config& c) {
  return {c.intermediate_size, c.hidden_size, c.time_step_rank + 2 * c.state_size};
}
memory_sizes memory_rows(const mamba2_config& c) { return {c.ssm_channels(), c.hidden_size, c.in_proj_rows()}; }

void check_memory(const options& o, const memory_sizes& c, index_t V, index_t L, bool saving) {
  const std::optional<double> budget = o.max_memory ? o.max_memory : available_memory();
  if (!budget) return;
  const double f = sizeof(float), Ld = double(L), D = double(c.channels), H = double(c.hidden),
               P = double(c.projections);
  const double alpha = f * D * Ld * Ld;
  const double chunk = std::min(alpha, double(mixlens::analysis::default_chunk_bytes));
  const double signals = f * Ld * (2 * H + 9 * D + P + V) + f * 8 * Ld * Ld + f * Ld * V;
  const double needed = (saving ? alpha : 0) + chunk + signals;
  if (needed <= *budget) return;
  const std::string source = o.max_memory ? "--max-memory" : "available memory (MemAvailable)";
  std::ostringstream os;
  os << "the run needs about " << human_bytes(needed) << " of memory, more than the " << human_bytes(*budget) << " of "
     << source << "; ";
  if (saving)
    os << "alpha_{k}.npy alone is D x L x L float32 = " << c.channels << " x " << L << " x " << L << " x 4 B = "
       << human_bytes(alpha) << ": --save-alpha none keeps only the L x L maps (then about "
       << human_bytes(chunk + signals) << ")";
  else
    os << "use fewer tokens";
  os << (o.max_memory ? "" : ", or set the budget with --max-memory");
  throw mixlens::error(os.str());
}

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

// A max that keeps NaN (std::max(e, NaN) is e): a check built on it cannot
// pass on NaN.
void keep_worst(double& e, double v) {
  if (std::isnan(v) || v > e) e = v;
}

// max |got − want| / max |want|; NaN or infinite when either side is not finite.
double relative_error(const matrix<float>& got, const std::vector<double>& want) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    keep_worst(diff, std::abs(double(got.data()[i]) - want[i]));
    keep_worst(scale, std::abs(want[i]));
  }
  return diff / (scale > 0 ? scale : 1);
}

// "NaN at [3][17]" for the first non-finite entry of an (L × V) matrix, or "".
std::string non_finite_entry(const matrix<float>& m) {
  return mixlens::detail::find_non_finite(m.data(), {m.extent(0), m.extent(1)});
}

bool contains(const std::vector<index_t>& v, index_t k) { return std::find(v.begin(), v.end(), k) != v.end(); }

// What both devices produce, and the time spent.
struct results {
  matrix<float> logits, raw, roll;
  double compute_s = 0, write_s = 0, check_s = 0, worst_check = 0, upload_s = 0;
};

void report_self_test(results& r, index_t layer, const reconstruction_error& e) {
  std::cout << "self-test layer " << layer << ": (alpha*u + D*u)*gate vs output " << e.paper
            << ", unified A*x + offset vs output " << e.unified << "\n";
  keep_worst(r.worst_check, e.paper);
  keep_worst(r.worst_check, e.unified);
}

// The whole analysis on one backend (host or device): per analysed layer the
// matrices in chunks of channels, their channel mean, min / max, raw map and
// rollout step; the D × L × L tensor reaches host memory only for alpha_{k}.npy,
// the L × L mean only for its heatmap.
template <class Backend, class Weights>
results run_on(const Backend& be, const Weights& weights, const options& o, const std::vector<index_t>& tokens,
               const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  results r;
  const index_t L = static_cast<index_t>(tokens.size());
  const auto t = clock_type::now();
  mixlens::analysis::rollout_accumulator<Backend> roll(be, L);
  mixlens::analysis::map_average<Backend> raw_average(be, L * L);
  auto map = be.alloc(L * L), raw = be.alloc(L * L), minmax = be.alloc(3);
  std::vector<float> alpha;
  const auto logits = mamba_forward(be, weights, std::span<const index_t>(tokens), [&](const auto& s) {
    if (!contains(layers, s.layer)) return;
    const bool keep = contains(save, s.layer);
    const std::string k = std::to_string(s.layer);
    index_t D = 0;  // matrices of the layer: channels, or Mamba-2's heads in the paper form
    const auto maps = [&](const auto& op) {
      D = mixlens::view_of(op).out_channels();
      if (keep) alpha.resize(static_cast<std::size_t>(D * L * L));
      mixlens::analysis::aggregate_operator(be, op, mixlens::channel_reduction::mean, map.data(), minmax.data(),
                                            keep ? alpha.data() : nullptr);
      try {  // raw attention is undefined on NaN / inf: name the first one
        mixlens::analysis::check_finite_blocks(be, op, minmax.data(), "mixlens::analysis::raw_attention");
      } catch (const mixlens::error& e) {
        throw mixlens::error("layer " + k + ": " + e.what());
      }
    };
    if (o.form == attention_form::paper) maps(s.ssm());
    else maps(unified_operator(be, s, {.offset = false}));
    mixlens::analysis::raw_attention(be, map.data(), minmax.data(), L, raw.data());
    raw_average.add(raw.data());
    roll.add(map.data());
    auto tw = clock_type::now();
    if (keep) mixlens::io::write_npy(o.out / ("alpha_" + k + ".npy"), alpha.data(), {D, L, L});
    if (o.png) {
      const auto mean = be.download(map.data(), L * L);
      mixlens::io::write_heatmap_png(o.out / ("alpha_" + k + ".png"), mixlens::matrix_view<const float>(mean.data(), L, L));
    }
    r.write_s += seconds_since(tw);
    if (o.self_test) {
      tw = clock_type::now();
      const auto e = check_reconstruction(be, s);
      r.check_s += seconds_since(tw);
      report_self_test(r, s.layer, e);
      if (!std::isfinite(e.paper) || !std::isfinite(e.unified)) {
        const auto y = be.download(s.y.data_handle(), s.y.size());
        const std::string at = mixlens::detail::find_non_finite(y.data(), {s.y.extent(0), s.y.extent(1)});
        std::cout << "self-test layer " << s.layer << ": "
                  << (at.empty() ? "the reconstruction is not finite" : "output y contains " + at) << "\n";
      }
    }
  });
  r.logits = matrix<float>(L, weights.vocab_size());
  const auto host_logits = be.download(logits.data(), r.logits.size());
  std::copy(host_logits.begin(), host_logits.end(), r.logits.data());
  if (!layers.empty()) {
    raw_average.result(raw.data());
    r.raw = matrix<float>(L, L);
    r.roll = matrix<float>(L, L);
    const auto raw_host = be.download(raw.data(), L * L), roll_host = be.download(roll.result(), L * L);
    std::copy(raw_host.begin(), raw_host.end(), r.raw.data());
    std::copy(roll_host.begin(), roll_host.end(), r.roll.data());
  }
  r.compute_s = seconds_since(t) - r.write_s - r.check_s;  // forward pass and attention together
  return r;
}

template <class Model>
results run_cpu(const options& o, const Model& model, const std::vector<index_t>& tokens,
                const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  const auto weights = host_weights(model);
  return run_on(mixlens::host_backend<float>{}, weights.view(), o, tokens, layers, save);
}

#ifdef MIXLENS_ATTN_CUDA
namespace gpu = mixlens::gpu;

template <class Model>
results run_cuda(const options& o, const Model& model, const std::vector<index_t>& tokens,
                 const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  std::string reason;
  if (!gpu::device_available(&reason)) throw mixlens::error("--device cuda: " + reason);
  const auto t = clock_type::now();
  const auto weights = gpu::to_device(model);
  const double upload_s = seconds_since(t);
  results r = run_on(gpu::device_backend{}, weights.view(), o, tokens, layers, save);
  r.upload_s = upload_s;
  return r;
}
#endif

// The sizes of the summary line, and the matrices per alpha_{k}.npy.
std::string sizes(const mamba_config& c) {
  return "d_model " + std::to_string(c.hidden_size) + ", d_inner " + std::to_string(c.intermediate_size) + ", N " +
         std::to_string(c.state_size);
}
std::string sizes(const mamba2_config& c) {
  return "d_model " + std::to_string(c.hidden_size) + ", " + std::to_string(c.num_heads) + " heads x " +
         std::to_string(c.head_dim) + ", " + std::to_string(c.n_groups) + " group(s), N " + std::to_string(c.state_size) +
         (c.d_mlp ? ", d_mlp " + std::to_string(c.d_mlp) : "");
}
index_t alpha_matrices(const mamba_config& c, attention_form) { return c.intermediate_size; }
index_t alpha_matrices(const mamba2_config& c, attention_form f) {
  return f == attention_form::paper ? c.num_heads : c.ssm_channels();
}

template <class Model>
int run_model(const options& o, const Model& model, clock_type::time_point start, double load_s) {
  // Every input is checked before anything is written.
  auto t = clock_type::now();
  if (!model.unused_tensors.empty()) {
    std::string names;
    for (const auto& n : model.unused_tensors) names += (names.empty() ? "'" : ", '") + n + "'";
    const std::string what = "model.safetensors holds " + std::to_string(model.unused_tensors.size()) +
                             " tensor(s) the model does not use: " + names;
    if (o.strict) throw mixlens::error(what + " (--strict)");
    std::cerr << "mixlens-attn: warning: " << what << " (--strict refuses them)\n";
  }
  const auto tokens = read_tokens(o);
  check_tokens(model.vocab_size(), std::span<const index_t>(tokens), "tokens");
  const auto layers = parse_layers(o.layers, model.num_layers());
  const auto save = parse_save_alpha(o.save_alpha, layers);
  const auto& c = model.config;
  const index_t L = static_cast<index_t>(tokens.size()), D = alpha_matrices(c, o.form);
  std::vector<double> want;
  if (!o.reference_logits.empty()) want = read_reference(o.reference_logits, L, model.vocab_size());
  check_memory(o, memory_rows(c), model.vocab_size(), L, !save.empty());
  output_folder folder(o.out);
  options work = o;  // the run writes into the staging folder
  work.out = folder.staging();

  std::cout << "model     " << o.model.string() << " (" << c.family() << ", "
            << (c.naming == mamba_naming::state_spaces ? "state-spaces" : "Hugging Face")
            << " layout): " << model.parameter_count() << " parameters, " << c.num_layers << " layers, " << sizes(c)
            << ", vocab " << model.vocab_size() << "\n"
            << "input     L = " << L << " tokens; form " << to_string(o.form) << "; device " << o.device << "; "
            << layers.size() << " layer(s) analysed; alpha_{k}.npy " << D << " x " << L << " x " << L << " float32 ("
            << 4.0 * double(D) * double(L) * double(L) / 1e6 << " MB each, " << save.size() << " written)\n";

#ifdef MIXLENS_ATTN_CUDA
  results r = o.device == "cuda" ? run_cuda(work, model, tokens, layers, save) : run_cpu(work, model, tokens, layers, save);
#else
  results r = run_cpu(work, model, tokens, layers, save);
#endif

  t = clock_type::now();
  mixlens::io::write_npy(work.out / "logits.npy", r.logits);
  if (!layers.empty()) {
    mixlens::io::write_npy(work.out / "raw.npy", r.raw);
    mixlens::io::write_npy(work.out / "rollout.npy", r.roll);
    if (o.png) mixlens::io::write_heatmap_png(work.out / "rollout.png", mixlens::matrix_view<const float>(r.roll.view()));
  }
  folder.commit();
  r.write_s += seconds_since(t);

  std::cout << "time      load " << load_s << " s, "
            << (o.device == "cuda" ? "upload " + std::to_string(r.upload_s) + " s, " : std::string())
            << "forward + attention " << r.compute_s << " s, writing " << r.write_s << " s"
            << (o.self_test ? ", self-test " + std::to_string(r.check_s) + " s" : std::string()) << ", total "
            << seconds_since(start) << " s\n"
            << "wrote     " << o.out.string() << ": logits.npy, " << save.size() << " alpha_{k}.npy"
            << (layers.empty() ? "" : ", raw.npy, rollout.npy") << (o.png ? " and PNG heatmaps" : "") << "\n";

  int status = 0;
  const auto& logits = r.logits;
  // Non-finite logits fail either check (the per-layer errors do not see the
  // final norm and head); without a check they are only reported.
  const std::string bad_logits = non_finite_entry(logits);
  if (o.self_test) {
    const bool ok = r.worst_check <= 1e-4 && bad_logits.empty();
    std::cout << "self-test " << (ok ? "passed" : "FAILED") << ": worst relative error " << r.worst_check << " (limit 1e-4)"
              << (bad_logits.empty() ? "" : "; logits contain " + bad_logits) << "\n";
    if (!ok) status = 1;
  }
  if (!o.reference_logits.empty()) {
    const double err = relative_error(logits, want);
    const bool ok = err <= 1e-4 && bad_logits.empty();
    std::cout << "logits    max relative error vs reference " << err
              << (ok ? " (ok)" : bad_logits.empty() ? " (FAILED, limit 1e-4)" : " (FAILED: logits contain " + bad_logits + ")")
              << "\n";
    if (!ok) status = 1;
  }
  if (!bad_logits.empty() && !o.self_test && o.reference_logits.empty())
    std::cerr << "mixlens-attn: warning: logits contain " << bad_logits << "\n";
  return status;
}

int run(const options& o) {
#ifndef MIXLENS_ATTN_CUDA
  if (o.device == "cuda")
    throw mixlens::error("--device cuda: this mixlens-attn was built without CUDA (no CUDA path); use --device cpu");
#endif
  const auto start = clock_type::now();
  const auto model = load_language_model<float>(o.model);
  const double load_s = seconds_since(start);
  return std::visit([&](const auto& m) { return run_model(o, m, start, load_s); }, model);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    if (argc == 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
      std::cout << usage_text;
      return 0;
    }
    o = parse_args(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "mixlens-attn: " << e.what() << "\n" << usage_text;
    return 2;
  }
  try {
    return run(o);
  } catch (const std::bad_alloc&) {
    std::cerr << "mixlens-attn: error: out of memory; try --save-alpha none or fewer tokens\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mixlens-attn: error: " << e.what() << "\n";
    return 1;
  }
}
