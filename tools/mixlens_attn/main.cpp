// mixlens-attn: the hidden attention of a Mamba, Falcon-Mamba or Mamba-2
// language model checkpoint, or of a Vision Mamba classifier (the family is
// read from config.json).
//
//   mixlens-attn --model DIR (--tokens 3,17,5 | --tokens-file t.npy | --image x.png) --out DIR
//                [--device cpu|cuda] [--form paper|unified] [--layers all|0,3,5]
//                [--save-alpha all|none|0,3] [--no-png] [--self-test] [--normalize]
//                [--reference-logits FILE] [--strict] [--max-memory BYTES]
//                [--rows last|cls|i,j,... [--raw-range tensor|rows]]
//
// Writes logits.npy (L × V; a classifier's: classes), alpha_{k}.npy (D × L × L;
// for Mamba-2's paper form heads × L × L; for Vision Mamba the two branches
// combined as the block combines them) per selected layer (those of
// --save-alpha), raw.npy and rollout.npy (L × L) over the selected layers, and
// PNG heatmaps alpha_{k}.png (channel mean) and rollout.png; for Vision Mamba
// also cls_raw.npy and cls_rollout.npy (the CLS row over the patch grid) and
// overlay.png; with --method, attribution.png (a bar chart of attribution.npy) and,
// for Vision Mamba, attribution_overlay.png (the scores over the image).
// The heatmaps are titled with layer, form and reduction; the causal maps of
// language models have their upper triangle masked. With --device cuda (builds
// with CUDA) the forward pass, the matrices, their channel means, raw attention
// and rollout are computed on the GPU; D × L × L tensors are copied to the host only for alpha_{k}.npy.
// A CUDA build makes two executables of this file: mixlens-attn, compiled
// without CUDA, hands a --device cuda run to mixlens-attn-cuda beside it (the
// same arguments, by exec), so that a CPU run never loads the CUDA libraries. Every
// input is checked before any output is written; the outputs are written to a
// fresh folder beside --out that replaces it only when the run completes (see
// output_folder). A B x L --tokens-file is a batch: each sequence's outputs in
// seq_0000, seq_0001, ... (each with its manifest), the dataset means
// (<name>_mean.npy) and sequences.json beside them. --rows writes only the
// selected rows of every map (map_rows_{k}.npy, alpha_rows_{k}.npy, raw_rows.npy,
// rows.json; no rollout), with no L x L array. Exit status: 0 success, 1 a failure (bad model, tokens, image,
// output folder, not enough memory, failed check, no usable GPU), 2 bad usage.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
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
#include <map>
#include <new>
#include <numeric>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "common/tokens.hpp"
#include "mixlens_attn/html_report.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/io/figure.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/models/attribute.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/rows.hpp"
#include "mixlens/models/vim_attention.hpp"
#include "mixlens/models/vim_attribution.hpp"
#ifdef MIXLENS_TOOL_CUDA
#include "mixlens/gpu/models/mamba.cuh"
#include "mixlens/gpu/models/vim.cuh"
#endif

namespace fs = std::filesystem;
using mixlens::index_t;
using mixlens::matrix;
using namespace mixlens::models;
using mixlens::tools::argument_cursor;
using mixlens::tools::output_folder;
using mixlens::tools::parse_count;
using mixlens::tools::parse_list;
using mixlens::tools::usage_error;

namespace {

constexpr std::string_view usage_text =
    "usage: mixlens-attn --model DIR (--tokens 3,17,5 | --tokens-file t.npy | --image x.png) --out DIR\n"
    "                    [--device cpu|cuda] [--form paper|unified] [--layers all|0,3,5]\n"
    "                    [--save-alpha all|none|0,3] [--no-png] [--self-test] [--normalize]\n"
    "                    [--reference-logits FILE] [--strict] [--max-memory BYTES]\n"
    "                    [--method raw|rollout|mamba-attr|attn-grad|grad-input|lrp]\n"
    "                    [--target-position P]\n"
    "                    [--target-token T] [--start-layer K] [--attn-grad-without-d] [--tokenizer FILE]\n"
    "                    [--html FILE] [--rows last|cls|i,j,... [--raw-range tensor|rows]]\n"
    "\n"
    "  --model DIR             config.json + model.safetensors or its shards: Mamba, Falcon-Mamba or\n"
    "                          Mamba-2 (Hugging Face or state-spaces layout), or Vision Mamba\n"
    "                          (tools/convert_vim.py), told by config.json\n"
    "  --tokens LIST           comma-separated token ids (language models)\n"
    "  --tokens-file FILE      token ids as a 1-D int32/int64 .npy (language models), or a B x L one of B\n"
    "                          sequences: outputs per sequence in seq_0000, seq_0001, ..., the dataset\n"
    "                          means (raw_mean.npy, rollout_mean.npy, ...) and sequences.json beside them\n"
    "  --image FILE            Vision Mamba's input: a PNG (pixels / 255, then ImageNet-normalized)\n"
    "                          or a height x width x 3 .npy (the model input as stored)\n"
    "  --normalize             ImageNet-normalize a .npy image of values in [0, 1] first\n"
    "  --out DIR               output folder (created if missing; replaced only if empty or a former output)\n"
    "  --device cpu|cuda       where to compute (default cpu)\n"
    "  --form paper|unified    alpha_{k}.npy: the paper's alpha (per channel; per head for Mamba-2),\n"
    "                          or the whole block's unified form (per channel)\n"
    "  --layers all|LIST       layers to analyse, 0-based (default all); raw and rollout use them\n"
    "  --save-alpha all|none|LIST  analysed layers whose alpha_{k}.npy is written (default all)\n"
    "  --no-png                skip the PNG heatmaps and the attribution bar chart\n"
    "  --self-test             check per layer that the matrices reproduce the layer output\n"
    "  --reference-logits FILE compare the logits with a .npy of the same shape (L x V, or the\n"
    "                          classes), fail above 1e-4 relative\n"
    "  --strict                refuse checkpoint tensors the model does not use (default: a warning)\n"
    "  --max-memory BYTES      memory budget, e.g. 8G or 512M (default: MemAvailable); a run that\n"
    "                          needs more is refused before it starts\n"
    "  --method M              attribution.npy (L) and target.json for the target logit: the target\n"
    "                          row of raw.npy (raw) or rollout.npy (rollout, default), or, for Mamba,\n"
    "                          Falcon-Mamba, Mamba-2 and Vision Mamba, a gradient method (also residual_grad_{k}.npy\n"
    "                          per analysed layer): Mamba-Attr (mamba-attr, also mamba_attr.npy, L x L),\n"
    "                          attention x gradient on the unified form (attn-grad, also attn_grad.npy),\n"
    "                          Gradient x Input (grad-input) or MambaLRP (lrp); every\n"
    "                          method also draws attribution.png unless --no-png\n"
    "  --target-position P     the target logit's position (default: the last)\n"
    "  --target-token T        the target logit's token (default: the argmax at P); Vision Mamba:\n"
    "                          the class (default: the argmax), read at the CLS token, and with\n"
    "                          --method also attribution_overlay.png (the scores over the image)\n"
    "  --start-layer K         mamba-attr, attn-grad: the first layer of the rollout (default 0)\n"
    "  --attn-grad-without-d   attn-grad: the unified matrices without the skip D, as the authors' code\n"
    "                          forms them (default: with D, so that they reproduce the block's output)\n"
    "  --tokenizer FILE        a Hugging Face tokenizer.json for the token strings (default: the model\n"
    "                          folder's tokenizer.json, when there is one): tokens.json and the figures'\n"
    "                          labels. Text is not tokenized here: python -m mixlens --text does that\n"
    "  --html FILE             also write one self-contained HTML page of the run: every analysed layer's\n"
    "                          map, raw, rollout and the attribution, with the token strings (Vision\n"
    "                          Mamba: the positions, CLS and the patches by row,col)\n"
    "  --rows last|cls|LIST    only these rows of every map, from the signals (no L x L array): map_rows_{k}.npy\n"
    "                          (R x L), alpha_rows_{k}.npy (D x R x L, layers of --save-alpha), raw_rows.npy,\n"
    "                          rows.json; no rollout. last: L - 1; cls: Vision Mamba's CLS position\n"
    "  --raw-range tensor|rows raw_rows.npy normalized by each layer's whole-tensor range (tensor, default: one\n"
    "                          pass over every entry, the time of the whole maps), or raw_rows_rowrange.npy\n"
    "                          by the selected rows' own range (rows: O(rows) time)\n";

// The --method values that need the backward pass.
bool gradient_method(std::string_view method) {
  return method == "mamba-attr" || method == "attn-grad" || method == "grad-input" || method == "lrp";
}


struct options {
  fs::path model, out, tokens_file, reference_logits, image, tokenizer, html;
  std::vector<std::string> labels;  // the figures' token labels (empty: positions)
  const mixlens::io::token_vocabulary* vocab = nullptr;  // the tokenizer's vocabulary, when there is one
  std::string tokens_list, device = "cpu", layers = "all", save_alpha = "all", method = "rollout";
  std::optional<index_t> target_position, target_token;
  bool method_given = false;  // --method on the command line (Vision Mamba writes attribution.npy only then)
  index_t start_layer = 0;
  bool attn_grad_without_d = false;
  attention_form form = attention_form::paper;
  bool png = true, self_test = false, strict = false, normalize = false;
  std::optional<double> max_memory;  // bytes
  std::optional<std::string> rows;   // --rows as given
  std::string raw_range = "tensor";  // --raw-range: what raw_rows normalizes by
  std::vector<index_t> row_positions;  // --rows resolved for the sequence (empty: the whole maps)
  char** argv = nullptr;             // the command line, for the hand-over to the CUDA build

  [[nodiscard]] bool row_mode() const { return rows.has_value(); }
  // raw_rows.npy, or raw_rows_rowrange.npy when normalized by the rows' own range.
  [[nodiscard]] std::string raw_rows_file() const { return raw_range == "rows" ? "raw_rows_rowrange.npy" : "raw_rows.npy"; }
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
  o.argv = argv;
  int inputs = 0;  // --tokens, --tokens-file, --image
  bool raw_range_given = false;
  for (argument_cursor args(argc, argv); args.next();) {
    const std::string_view arg = args.option();
    if (arg == "--model") o.model = args.value();
    else if (arg == "--out") o.out = args.value();
    else if (arg == "--tokens") { o.tokens_list = args.value(); ++inputs; }
    else if (arg == "--tokens-file") { o.tokens_file = args.value(); ++inputs; }
    else if (arg == "--image") { o.image = args.value(); ++inputs; }
    else if (arg == "--normalize") o.normalize = true;
    else if (arg == "--tokenizer") o.tokenizer = args.value();
    else if (arg == "--html") o.html = args.value();
    else if (arg == "--text" || arg == "--texts") throw usage_error(mixlens::tools::text_input_refusal(arg));
    else if (arg == "--method") {
      o.method = args.value();
      o.method_given = true;
      if (o.method != "raw" && o.method != "rollout" && !gradient_method(o.method))
        throw usage_error("--method must be raw, rollout, mamba-attr, attn-grad, grad-input or lrp, not '" + o.method +
                          "'");
    } else if (arg == "--target-position") o.target_position = parse_count(args.value(), "--target-position");
    else if (arg == "--target-token") o.target_token = parse_count(args.value(), "--target-token");
    else if (arg == "--start-layer") o.start_layer = parse_count(args.value(), "--start-layer");
    else if (arg == "--attn-grad-without-d") o.attn_grad_without_d = true;
    else if (arg == "--device") {
      o.device = args.value();
      if (o.device != "cpu" && o.device != "cuda") throw usage_error("--device must be cpu or cuda, not '" + o.device + "'");
    } else if (arg == "--form") {
      const std::string f = args.value();
      if (f == "paper") o.form = attention_form::paper;
      else if (f == "unified") o.form = attention_form::unified;
      else throw usage_error("--form must be paper or unified, not '" + f + "'");
    } else if (arg == "--layers") o.layers = args.value();
    else if (arg == "--save-alpha") o.save_alpha = args.value();
    else if (arg == "--no-png") o.png = false;
    else if (arg == "--self-test") o.self_test = true;
    else if (arg == "--reference-logits") o.reference_logits = args.value();
    else if (arg == "--strict") o.strict = true;
    else if (arg == "--max-memory") o.max_memory = parse_bytes(args.value());
    else if (arg == "--rows") o.rows = args.value();
    else if (arg == "--raw-range") {
      o.raw_range = args.value();
      if (o.raw_range != "tensor" && o.raw_range != "rows")
        throw usage_error("--raw-range must be tensor or rows, not '" + o.raw_range + "'");
      raw_range_given = true;
    } else args.unknown();
  }
  if (raw_range_given && !o.rows) throw usage_error("--raw-range is for --rows (raw_rows.npy's normalization)");
  if (o.rows && !o.html.empty())
    throw usage_error("--html draws every layer's whole map and the rollout: not with --rows");
  if (o.rows && o.method_given && !gradient_method(o.method))
    throw usage_error("--method " + o.method + " reads a row of " + (o.method == "raw" ? "raw.npy" : "rollout.npy") +
                      ", which --rows does not write: leave --method out, or give a gradient method "
                      "(mamba-attr, attn-grad, grad-input, lrp)");
  if (o.rows && !gradient_method(o.method) && (o.target_position || o.target_token))
    throw usage_error(std::string(o.target_token ? "--target-token" : "--target-position") +
                      " without a gradient --method reads the target row of rollout.npy, which --rows does not "
                      "write: give --method grad-input, lrp, mamba-attr or attn-grad");
  if (o.attn_grad_without_d && o.method != "attn-grad") throw usage_error("--attn-grad-without-d is for --method attn-grad");
  if (o.model.empty()) throw usage_error("--model is required");
  if (o.out.empty()) throw usage_error("--out is required");
  if (inputs != 1) throw usage_error("give exactly one of --tokens, --tokens-file (language models) and --image (Vision Mamba)");
  return o;
}


// The token sequences: --tokens, or --tokens-file's 1-D (or 1 x L) array (one
// sequence, written into --out itself) or B x L array with B >= 2 (a batch: each
// row's outputs in seq_0000, seq_0001, ..., the dataset means beside them).
struct token_input {
  std::vector<std::vector<index_t>> sequences;
  bool batch = false;
};

token_input read_tokens(const options& o) {
  if (o.tokens_file.empty()) return {{parse_list(o.tokens_list, "--tokens")}, false};
  const std::string who = "token file '" + o.tokens_file.string() + "'";
  mixlens::io::npy_array a;
  try {
    a = mixlens::io::read_npy(o.tokens_file);
  } catch (const mixlens::error& e) {  // numpy stores ragged sequences as an object array
    if (std::string_view(e.what()).find("'|O'") == std::string_view::npos) throw;
    throw mixlens::error(std::string(e.what()) + ": an object array (sequences of different lengths?) holds no token "
                         "ids; give a 1-D array or one B x L int32/int64 array of equal-length sequences");
  }
  if (a.descr != "<i4" && a.descr != "<i8")
    throw mixlens::error(who + ": dtype " + a.descr + " (expected int32 or int64)");
  if (a.shape.size() != 1 && a.shape.size() != 2) {
    std::string shape;
    for (index_t e : a.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(e);
    throw mixlens::error(who + ": expected a 1-D array of token ids or a B x L array of B sequences, got shape (" +
                         shape + ")");
  }
  const auto ids = a.as<index_t>();
  if (a.shape.size() == 1) return {{ids}, false};
  const index_t B = a.shape[0], L = a.shape[1];
  if (B == 0) throw mixlens::error(who + ": shape (0, " + std::to_string(L) + ") holds no sequence (expected B >= 1 rows)");
  if (L == 0) throw mixlens::error(who + ": shape (" + std::to_string(B) + ", 0): the sequences hold no tokens");
  token_input in{{}, B > 1};
  for (index_t b = 0; b < B; ++b) in.sequences.emplace_back(ids.begin() + b * L, ids.begin() + (b + 1) * L);
  return in;
}

// A batch's per-sequence folder: seq_0000, seq_0001, ... (python -m mixlens --texts names them so too).
std::string sequence_folder(std::size_t n) {
  char name[32];
  std::snprintf(name, sizeof name, "seq_%04zu", n);
  return name;
}

// rows.json: the positions of the rows of map_rows_{k}.npy, raw_rows.npy and alpha_rows_{k}.npy, in order.
void write_rows_json(const fs::path& file, const std::vector<index_t>& rows) {
  std::ofstream json(file);
  json << "{\"rows\": [";
  for (std::size_t k = 0; k < rows.size(); ++k) json << (k ? ", " : "") << rows[k];
  json << "]}\n";
  if (!json.flush()) throw mixlens::error("cannot write '" + file.string() + "'");
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


// The reference logits, checked (dtype, shape: L x V for a language model,
// classes for a classifier; finite) before any work.
std::vector<double> read_reference(const fs::path& file, const std::vector<index_t>& shape, std::string_view names) {
  const std::string who = "reference logits '" + file.string() + "'";
  const auto ref = mixlens::io::read_npy(file);
  if (ref.descr != "<f4" && ref.descr != "<f8")
    throw mixlens::error(who + ": dtype " + ref.descr + ", expected float32 or float64 (<f4 or <f8)");
  const auto text = [](const std::vector<index_t>& v) {
    std::string out;
    for (index_t e : v) out += (out.empty() ? "" : ", ") + std::to_string(e);
    return "(" + out + ")";
  };
  if (ref.shape != shape)
    throw mixlens::error(who + ": shape does not match: " + text(ref.shape) + ", expected " + std::string(names) +
                         " = " + text(shape));
  auto want = ref.as<double>();
  const std::string at = shape.size() == 2 ? mixlens::detail::find_non_finite(want.data(), {shape[0], shape[1]})
                                            : mixlens::detail::find_non_finite(want.data(), {shape[0]});
  if (!at.empty()) throw mixlens::error(who + ": expected finite values, got " + at);
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
  index_t branches = 1;                   // signals per layer: 2 for Vision Mamba's bidirectional blocks
};
memory_sizes memory_rows(const mamba_config& c) {
  return {c.intermediate_size, c.hidden_size, c.time_step_rank + 2 * c.state_size};
}
memory_sizes memory_rows(const mamba2_config& c) { return {c.ssm_channels(), c.hidden_size, c.in_proj_rows()}; }
memory_sizes memory_rows(const vim_config& c) {
  return {c.intermediate_size, c.hidden_size, c.time_step_rank + 2 * c.state_size, 2};
}

// direct: the maps come straight from the signals (the paper's α of Mamba and
// Falcon-Mamba, analysis::aggregate_operator without a copy): one L × L double
// accumulator per thread instead of a chunk of blocks. With --rows (o.row_positions,
// R of them) nothing is L × L: the D × R × L rows of a saved layer, one chunk of
// them, and for --raw-range tensor the range pass (direct: a 64-row tile per
// thread; else a chunk of blocks, three for Vision Mamba's two branches).
void check_memory(const options& o, const memory_sizes& c, index_t V, index_t L, bool saving, bool direct) {
  const std::optional<double> budget = o.max_memory ? o.max_memory : available_memory();
  if (!budget) return;
  const double f = sizeof(float), Ld = double(L), D = double(c.channels), H = double(c.hidden),
               P = double(c.projections), R = double(o.row_positions.size());
  const double chunk_max = double(mixlens::analysis::default_chunk_bytes);
  const double threads = mixlens::detail::resolve_threads("mixlens-attn", 0);
  const double base = f * Ld * (2 * H + double(c.branches) * (9 * D + P) + V) + f * Ld * V;
  double alpha = 0, chunk = 0, maps = 0;
  if (o.row_mode()) {
    alpha = f * D * R * Ld;
    chunk = std::min(alpha * double(c.branches == 2 ? 3 : 1), chunk_max);
    const double blocks = std::min(f * D * Ld * Ld * (c.branches == 2 ? 3 : 1), chunk_max);
    const double range = o.raw_range != "tensor" ? 0 : direct ? threads * f * 80 * Ld
                                                              : blocks + (c.branches == 2 ? 12 * Ld * Ld : 0);
    maps = range + f * 8 * R * Ld;
  } else {
    alpha = f * D * Ld * Ld;
    const double maps_only = direct ? 8 * Ld * Ld * threads : std::min(alpha, chunk_max);
    chunk = saving ? std::min(alpha, chunk_max) : maps_only;
    maps = f * 8 * Ld * Ld;
  }
  const double needed = (saving ? alpha : 0) + chunk + maps + base;
  if (needed <= *budget) return;
  const std::string source = o.max_memory ? "--max-memory" : "available memory (MemAvailable)";
  std::ostringstream os;
  os << "the run needs about " << human_bytes(needed) << " of memory, more than the " << human_bytes(*budget) << " of "
     << source << "; ";
  if (saving && !o.row_mode())
    os << "alpha_{k}.npy alone is D x L x L float32 = " << c.channels << " x " << L << " x " << L << " x 4 B = "
       << human_bytes(alpha) << ": --save-alpha none keeps only the L x L maps (then about "
       << human_bytes(needed - alpha - chunk + (direct ? 8 * Ld * Ld * threads : std::min(alpha, chunk_max)))
       << "), and --rows only selected rows of them";
  else if (saving)
    os << "alpha_rows_{k}.npy alone is D x R x L float32 = " << human_bytes(alpha) << ": try --save-alpha none";
  else
    os << "use fewer tokens" << (o.row_mode() ? "" : ", or --rows for selected rows of the maps");
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
  matrix<float> raw_rows;  // --rows: R × L
  std::vector<std::pair<index_t, std::vector<float>>> layer_means;  // --html: each analysed layer's channel mean
  std::vector<std::pair<index_t, std::vector<float>>> map_rows;     // --rows: each analysed layer's rows (R × L)
  double compute_s = 0, write_s = 0, check_s = 0, worst_check = 0, upload_s = 0;
};

// The per-layer maps of the analysed layers on one backend: each layer's
// channel mean (L × L) with the min / max of its whole tensor, its raw map
// (averaged over the layers) and rollout step, alpha_{k}.npy and the heatmap.
// The D × L × L tensor reaches host memory only for alpha_{k}.npy, the L × L
// mean only for its heatmap. With --rows (add_rows) only the R selected rows
// of each map exist (map_rows_{k}.npy, alpha_rows_{k}.npy, raw rows): nothing
// L × L is allocated.
template <class Backend>
class layer_maps {
 public:
  layer_maps(const Backend& be, const options& o, index_t L, bool causal)
      : be_(be), o_(o), L_(L), R_(static_cast<index_t>(o.row_positions.size())), causal_(causal),
        map_(be.alloc(o.row_mode() ? R_ * L : L * L)), raw_(be.alloc(o.row_mode() ? R_ * L : L * L)),
        minmax_(be.alloc(3)), row_minmax_(be.alloc(3)) {
    if (o.row_mode()) row_maps_.emplace(be, R_, L);
    else maps_.emplace(be, L);
  }

  // One layer of D matrices: aggregate(map, minmax, host copy or nullptr) fills
  // the channel mean, the tensor's min / max / NaN count and the host copy;
  // check_finite(minmax) throws naming a non-finite entry.
  template <class Aggregate, class CheckFinite>
  void add(index_t layer, index_t D, bool keep, Aggregate&& aggregate, CheckFinite&& check_finite, results& r) {
    const std::string k = std::to_string(layer);
    if (keep) alpha_.resize(static_cast<std::size_t>(D * L_ * L_));
    aggregate(map_.data(), minmax_.data(), keep ? alpha_.data() : nullptr);
    checked(layer, check_finite, minmax_.data());
    maps_->add(map_.data(), minmax_.data());
    const auto tw = clock_type::now();
    if (keep) mixlens::io::write_npy(o_.out / ("alpha_" + k + ".npy"), alpha_.data(), {D, L_, L_});
    if (o_.png || !o_.html.empty()) {
      auto mean = be_.download(map_.data(), L_ * L_);
      if (o_.png)
        mixlens::io::write_heatmap_png(o_.out / ("alpha_" + k + ".png"), mixlens::matrix_view<const float>(mean.data(), L_, L_),
                                       {.title = "layer " + k + " \u00b7 " + std::string(to_string(o_.form)) + " form \u00b7 channel mean",
                                        .tick_labels = o_.labels, .mask_upper = causal_});
      if (!o_.html.empty()) r.layer_means.emplace_back(layer, std::move(mean));
    }
    r.write_s += seconds_since(tw);
  }

  // --rows: aggregate_rows(map_rows, minmax, host copy or nullptr) fills the
  // rows of the channel mean, their range and the rows of every matrix;
  // range(minmax) the whole tensor's range (--raw-range tensor).
  template <class AggregateRows, class Range, class CheckFinite>
  void add_rows(index_t layer, index_t D, bool keep, AggregateRows&& aggregate_rows, Range&& range,
                CheckFinite&& check_finite, results& r) {
    const std::string k = std::to_string(layer);
    if (keep) alpha_.resize(static_cast<std::size_t>(D * R_ * L_));
    aggregate_rows(map_.data(), row_minmax_.data(), keep ? alpha_.data() : nullptr);
    const float* minmax = row_minmax_.data();
    if (o_.raw_range == "tensor") {
      range(minmax_.data());
      minmax = minmax_.data();
    }
    checked(layer, check_finite, minmax);
    row_maps_->add(map_.data(), minmax);
    const auto tw = clock_type::now();
    if (keep) mixlens::io::write_npy(o_.out / ("alpha_rows_" + k + ".npy"), alpha_.data(), {D, R_, L_});
    auto rows = be_.download(map_.data(), R_ * L_);
    mixlens::io::write_npy(o_.out / ("map_rows_" + k + ".npy"), rows.data(), {R_, L_});
    r.map_rows.emplace_back(layer, std::move(rows));
    r.write_s += seconds_since(tw);
  }

  // raw.npy and rollout.npy's contents (--rows: raw_rows) into r, when any layer was added.
  void finish(results& r) {
    if (row_maps_) {
      if (row_maps_->layers() == 0) return;
      row_maps_->raw(raw_.data());
      r.raw_rows = matrix<float>(R_, L_);
      const auto raw_host = be_.download(raw_.data(), R_ * L_);
      std::copy(raw_host.begin(), raw_host.end(), r.raw_rows.data());
      return;
    }
    if (maps_->layers() == 0) return;
    maps_->raw(raw_.data());
    r.raw = matrix<float>(L_, L_);
    r.roll = matrix<float>(L_, L_);
    const auto raw_host = be_.download(raw_.data(), L_ * L_), roll_host = be_.download(maps_->rollout(), L_ * L_);
    std::copy(raw_host.begin(), raw_host.end(), r.raw.data());
    std::copy(roll_host.begin(), roll_host.end(), r.roll.data());
  }

 private:
  template <class CheckFinite>
  static void checked(index_t layer, CheckFinite& check_finite, const float* minmax) {
    try {  // raw attention is undefined on NaN / inf: name the first one
      check_finite(minmax);
    } catch (const mixlens::error& e) {
      throw mixlens::error("layer " + std::to_string(layer) + ": " + e.what());
    }
  }

  const Backend& be_;
  const options& o_;
  index_t L_, R_;
  bool causal_;  // the upper triangle is structurally zero: masked in the heatmaps
  std::optional<mixlens::analysis::model_maps<Backend>> maps_;  // raw and rollout, shared with models::attribute
  std::optional<mixlens::analysis::model_row_maps<Backend>> row_maps_;  // --rows: raw rows
  typename Backend::template array<float> map_, raw_, minmax_, row_minmax_;
  std::vector<float> alpha_;
};

void check_self_test(results& r, index_t layer, double paper, double unified, const std::string& bad_output) {
  std::cout << "self-test layer " << layer << ": (alpha*u + D*u)*gate vs output " << paper
            << ", unified A*x + offset vs output " << unified << "\n";
  keep_worst(r.worst_check, paper);
  keep_worst(r.worst_check, unified);
  if (!std::isfinite(paper) || !std::isfinite(unified))
    std::cout << "self-test layer " << layer << ": "
              << (bad_output.empty() ? "the reconstruction is not finite" : "output y contains " + bad_output) << "\n";
}

// The first non-finite entry of a layer's output y (backend memory), or "".
template <class Backend>
std::string non_finite_output(const Backend& be, mixlens::matrix_view<const float> y) {
  const auto host = be.download(y.data_handle(), y.size());
  return mixlens::detail::find_non_finite(host.data(), {y.extent(0), y.extent(1)});
}

// The whole analysis of a language model on one backend (host or device).
template <class Backend, class Weights>
results run_on(const Backend& be, const Weights& weights, const options& o, const std::vector<index_t>& tokens,
               const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  results r;
  const index_t L = static_cast<index_t>(tokens.size());
  const auto t = clock_type::now();
  layer_maps<Backend> maps(be, o, L, true);  // language models mix causally
  const auto logits = mamba_forward(be, weights, std::span<const index_t>(tokens), [&](const auto& s) {
    if (!contains(layers, s.layer)) return;
    const auto add = [&](const auto& op) {  // the paper's α, or the unified form of the block
      const index_t D = mixlens::view_of(op).out_channels();  // channels, or Mamba-2's heads in the paper form
      const auto check_finite = [&](const float* minmax) {
        mixlens::analysis::check_finite_blocks(be, op, minmax, "mixlens::analysis::raw_attention");
      };
      if (o.row_mode())
        maps.add_rows(
            s.layer, D, contains(save, s.layer),
            [&](float* map_rows, float* minmax, float* copy) {
              mixlens::analysis::aggregate_rows(be, op, std::span<const index_t>(o.row_positions),
                                                mixlens::channel_reduction::mean, map_rows, minmax, copy);
            },
            [&](float* minmax) { mixlens::analysis::tensor_range(be, op, minmax); }, check_finite, r);
      else
        maps.add(
            s.layer, D, contains(save, s.layer),
            [&](float* map, float* minmax, float* copy) {
              mixlens::analysis::aggregate_operator(be, op, mixlens::channel_reduction::mean, map, minmax, copy);
            },
            check_finite, r);
    };
    if (o.form == attention_form::paper) add(s.ssm());
    else add(unified_operator(be, s, {.offset = false}));
    if (o.self_test) {
      const auto tw = clock_type::now();
      const auto e = check_reconstruction(be, s);
      r.check_s += seconds_since(tw);
      check_self_test(r, s.layer, e.paper, e.unified,
                      std::isfinite(e.paper) && std::isfinite(e.unified) ? std::string() : non_finite_output(be, s.y));
    }
  });
  r.logits = matrix<float>(L, weights.vocab_size());
  const auto host_logits = be.download(logits.data(), r.logits.size());
  std::copy(host_logits.begin(), host_logits.end(), r.logits.data());
  maps.finish(r);
  r.compute_s = seconds_since(t) - r.write_s - r.check_s;  // forward pass and attention together
  return r;
}

// ---- Vision Mamba ------------------------------------------------------------------

// The whole analysis of a Vision Mamba classifier on one backend: per analysed
// layer the combined matrices of the two branches in the block's own
// combination, scale · (M_f + J·M_b·J); self_test(signals) returns the layer's
// vim_reconstruction_error.
template <class Backend, class Weights, class SelfTest>
results run_vim_on(const Backend& be, const Weights& weights, const options& o, const mixlens::tensor<float, 3>& image,
                   const std::vector<index_t>& layers, const std::vector<index_t>& save, SelfTest&& self_test) {
  results r;
  const index_t L = weights.config.sequence_length();
  const auto t = clock_type::now();
  layer_maps<Backend> maps(be, o, L, false);  // bidirectional blocks
  const auto logits = vim_forward(be, weights, mixlens::tensor_view<const float, 3>(image.view()),
                                  [&](const vim_layer_signals<float>& s) {
    if (!contains(layers, s.layer)) return;
    const auto add = [&](const auto& f, const auto& b) {
      const auto check_finite = [&](const float* minmax) {
        mixlens::analysis::check_finite_blocks(be, f, b, minmax, "mixlens::analysis::raw_attention");
      };
      if (o.row_mode())
        maps.add_rows(
            s.layer, s.channels(), contains(save, s.layer),
            [&](float* map_rows, float* minmax, float* copy) {
              mixlens::analysis::aggregate_rows_bidirectional(be, f, b, s.scale, std::span<const index_t>(o.row_positions),
                                                              mixlens::channel_reduction::mean, map_rows, minmax, copy);
            },
            [&](float* minmax) { mixlens::analysis::tensor_range_bidirectional(be, f, b, s.scale, minmax); },
            check_finite, r);
      else
        maps.add(
            s.layer, s.channels(), contains(save, s.layer),
            [&](float* map, float* minmax, float* copy) {
              mixlens::analysis::aggregate_bidirectional(be, f, b, s.scale, mixlens::channel_reduction::mean, map,
                                                         minmax, copy);
            },
            check_finite, r);
    };
    if (o.form == attention_form::paper) add(s.forward.ssm(), s.backward.ssm());
    else add(unified_operator(be, s.forward, {.offset = false}), unified_operator(be, s.backward, {.offset = false}));
    if (o.self_test) {
      const auto tw = clock_type::now();
      const vim_reconstruction_error e = self_test(s);
      r.check_s += seconds_since(tw);
      std::cout << "self-test layer " << s.layer << ": forward branch " << e.forward.paper << " (unified "
                << e.forward.unified << "), backward branch " << e.backward.paper << " (unified " << e.backward.unified
                << "), combined scale*(A_f + J*A_b*J)*x + offsets vs block output " << e.combined << "\n";
      for (double v : {e.forward.paper, e.forward.unified, e.backward.paper, e.backward.unified, e.combined})
        keep_worst(r.worst_check, v);
    }
  });
  const index_t classes = weights.config.num_classes;
  r.logits = matrix<float>(1, classes);
  const auto host_logits = be.download(logits.data(), classes);
  std::copy(host_logits.begin(), host_logits.end(), r.logits.data());
  maps.finish(r);
  r.compute_s = seconds_since(t) - r.write_s - r.check_s;
  return r;
}

// What each sequence position of a Vision Mamba is, for the page: "CLS", or
// its patch as "row,col" of the grid.
std::vector<std::string> position_labels(const vim_config& c) {
  std::vector<std::string> labels(static_cast<std::size_t>(c.sequence_length()));
  if (c.cls_index() >= 0) labels[static_cast<std::size_t>(c.cls_index())] = "CLS";
  for (index_t p = 0; p < c.num_patches(); ++p)
    labels[static_cast<std::size_t>(c.token_of_patch(p))] =
        std::to_string(p / c.grid_width()) + "," + std::to_string(p % c.grid_width());
  return labels;
}

// The row the classifier reads (its CLS row, or the mean of the rows without a
// CLS token) of an L × L map, over the patch grid.
matrix<float> classifier_row_map(const vim_config& c, const matrix<float>& m) {
  const index_t L = m.extent(0), cls = c.cls_index();
  std::vector<float> row(static_cast<std::size_t>(L), 0.0f);
  for (index_t i = 0; i < L; ++i)
    if (cls < 0 || i == cls)
      for (index_t j = 0; j < L; ++j) row[static_cast<std::size_t>(j)] += m(i, j) / float(cls < 0 ? L : 1);
  return patch_map(c, std::span<const float>(row));
}

// ---- attribution (--method) -----------------------------------------------------------


// The language models with a backward pass (mamba_gradients).
template <class Model>
inline constexpr bool has_gradients = std::is_same_v<Model, mamba_model<float>> || std::is_same_v<Model, mamba2_model<float>>;

// Refuses a --method the model or device cannot run, before any work.
template <class Model>
void check_method(const options& o, const Model& model, index_t L) {
  if (o.target_position && *o.target_position >= L)
    throw mixlens::error("--target-position " + std::to_string(*o.target_position) + " is outside the " +
                         std::to_string(L) + " tokens");
  if (o.target_token && *o.target_token >= model.vocab_size())
    throw mixlens::error("--target-token " + std::to_string(*o.target_token) + " is outside the vocabulary [0, " +
                         std::to_string(model.vocab_size()) + ")");
  if (!gradient_method(o.method)) return;
  if constexpr (!has_gradients<Model>) {
    throw mixlens::error("--method " + o.method + " needs the backward pass, which mixlens has for Mamba, "
                         "Falcon-Mamba and Mamba-2; this model is " + std::string(model.config.family()));
  } else {
    if (o.start_layer >= model.num_layers())
      throw mixlens::error("--start-layer " + std::to_string(o.start_layer) + " is not a layer in [0, " +
                           std::to_string(model.num_layers()) + ")");
  }
}

// rollout.png's title: what was rolled out, over which layers.
inline std::string rollout_title(const options& o, const std::vector<index_t>& layers) {
  return "attention rollout \u00b7 " + std::to_string(layers.size()) + (layers.size() == 1 ? " layer" : " layers") +
         " \u00b7 " + std::string(to_string(o.form)) + " form \u00b7 channel mean";
}

// attribution.png: the scores as a bar chart titled with the method and target.
// `token_text`: the target token's string ('' when unknown).
inline void write_attribution_chart(const fs::path& file, const std::string& method, index_t position, index_t token,
                                    double value, const std::vector<float>& scores,
                                    const std::vector<std::string>& labels = {}, const std::string& token_text = {}) {
  const std::string shown = token_text.empty() ? "" : " \u201c" + token_text + "\u201d";
  mixlens::io::write_bar_chart_png(file, std::span<const float>(scores), std::span<const std::string>(labels),
                                   {.title = method + " \u00b7 target position " + std::to_string(position) + ", token " +
                                             std::to_string(token) + shown + " (logit " +
                                             mixlens::io::detail::format_value(value) + ")",
                                    .value_label = "attribution"});
}

// target.json: the method, the target logit's position, token and value, and
// the token's string when a tokenizer is known.
inline void write_target_json(const fs::path& out, const std::string& method, index_t position, index_t token,
                              double value, const std::optional<std::string>& text = std::nullopt) {
  std::ofstream json(out / "target.json");
  json.precision(17);
  json << "{\"method\": \"" << method << "\", \"position\": " << position << ", \"token\": " << token
       << ", \"value\": " << value;
  if (text) json << ", \"text\": " << nlohmann::json(*text).dump();
  json << "}\n";
  if (!json.flush()) throw mixlens::error("cannot write '" + (out / "target.json").string() + "'");
}

// attribution.npy (L), target.json and, for a gradient method, residual_grad_{k}.npy
// (L × d_model) of the analysed layers (under LRP's rules for lrp), and the
// rollout-style methods' whole matrix, into `out`.
template <class Model>
void write_attribution(const options& o, const fs::path& out, const Model& model, const std::vector<index_t>& tokens,
                       const std::vector<index_t>& layers, const results& r) {
  const index_t L = static_cast<index_t>(tokens.size()), V = r.logits.extent(1);
  const index_t P = o.target_position.value_or(L - 1);
  index_t T = 0;
  if (o.target_token) T = *o.target_token;
  else
    for (index_t v = 1; v < V; ++v)
      if (r.logits(P, v) > r.logits(P, T)) T = v;
  std::vector<float> scores(static_cast<std::size_t>(L));
  double value = r.logits(P, T);
  if (!gradient_method(o.method)) {
    if (layers.empty()) return;  // no maps to read a row from
    const matrix<float>& m = o.method == "raw" ? r.raw : r.roll;
    for (index_t j = 0; j < L; ++j) scores[static_cast<std::size_t>(j)] = m(P, j);
  } else if constexpr (has_gradients<Model>) {
    // The method and residual_grad_{k}.npy on the backend of --device.
    const auto explain = [&](const auto& be, const auto& w) {
      const std::span<const index_t> t(tokens);
      const gradient_target target{P, T};
      const attribute_options options{
          .mamba_attr = {.start_layer = o.start_layer, .full_matrix = true, .unified_skip = !o.attn_grad_without_d}};
      const attribution_result a = attribute(be, w, t, *parse_attribution_method(o.method), target, options);
      std::copy(a.scores.begin(), a.scores.end(), scores.begin());
      value = a.value;
      if (!a.matrix.empty()) {
        const std::vector<float> m(a.matrix.begin(), a.matrix.end());
        mixlens::io::write_npy(out / (o.method == "mamba-attr" ? "mamba_attr.npy" : "attn_grad.npy"), m.data(), {L, L});
      }
      const propagation rule = o.method == "lrp" ? propagation::lrp : propagation::gradient;
      const auto g = mamba_gradients(be, w, t, target, gradient_options{.rule = rule, .embedding = false, .residual = true});
      const index_t H = model.config.hidden_size;
      for (index_t k : layers) {
        const auto grad = be.download(g.layers[static_cast<std::size_t>(k)].residual.data(), L * H);
        mixlens::io::write_npy(out / ("residual_grad_" + std::to_string(k) + ".npy"), grad.data(), {L, H});
      }
    };
#ifdef MIXLENS_TOOL_CUDA
    if (o.device == "cuda") {
      const auto weights = mixlens::gpu::to_device(model);
      explain(mixlens::gpu::device_backend{}, weights.view());
    } else
#endif
      explain(mixlens::host_backend<float>{}, host_weights(model).view());
  }
  mixlens::io::write_npy(out / "attribution.npy", scores.data(), {L});
  const std::string target_text =
      o.vocab ? mixlens::tools::token_texts(*o.vocab, std::span<const index_t>(&T, 1), "mixlens-attn").front() : "";
  if (o.png)
    write_attribution_chart(out / "attribution.png", o.method, P, T, value, scores, o.labels,
                            mixlens::tools::tick_label(target_text));
  write_target_json(out, o.method, P, T, value, o.vocab ? std::optional<std::string>(target_text) : std::nullopt);
}

// Refuses what a Vision Mamba run with --method cannot do, before any work: its
// target is a class logit read at the CLS token (or the pooled sequence).
void check_vim_method(const options& o, const vim_model<float>& model) {
  if (o.target_position)
    throw mixlens::error("--target-position is for the language models: a Vision Mamba's target is the class logit "
                         "of its head, read at the CLS token (give the class with --target-token)");
  if (o.target_token && *o.target_token >= model.config.num_classes)
    throw mixlens::error("--target-token " + std::to_string(*o.target_token) + " is outside the classes [0, " +
                         std::to_string(model.config.num_classes) + ")");
  if (gradient_method(o.method) && o.start_layer >= model.num_layers())
    throw mixlens::error("--start-layer " + std::to_string(o.start_layer) + " is not a layer in [0, " +
                         std::to_string(model.num_layers()) + ")");
}

// attribution.npy (L: the sequence positions, CLS included), target.json
// (position: the CLS token's, −1 for mean pooling; token: the class),
// residual_grad_{k}.npy (L × embed_dim) of the analysed layers for a gradient
// method, mamba_attr.npy / attn_grad.npy (L × L), and, unless --no-png,
// attribution.png and attribution_overlay.png (the scores over the patch grid
// on the image), into `out`. raw and rollout read the classifier's row of
// raw.npy / rollout.npy.
void write_vim_attribution(const options& o, const fs::path& out, const vim_model<float>& model,
                           const mixlens::tensor<float, 3>& image, const mixlens::tensor<float, 3>& shown,
                           const std::vector<index_t>& layers, const results& r) {
  const vim_config& c = model.config;
  const index_t L = c.sequence_length(), classes = c.num_classes, P = vim_read_position(c);
  index_t T = 0;
  if (o.target_token) T = *o.target_token;
  else
    for (index_t v = 1; v < classes; ++v)
      if (r.logits(0, v) > r.logits(0, T)) T = v;
  std::vector<float> scores(static_cast<std::size_t>(L));
  double value = r.logits(0, T);
  if (!gradient_method(o.method)) {
    if (layers.empty()) return;  // no maps to read a row from
    const matrix<float>& m = o.method == "raw" ? r.raw : r.roll;
    for (index_t i = 0; i < L; ++i)
      if (P < 0 || i == P)
        for (index_t j = 0; j < L; ++j) scores[static_cast<std::size_t>(j)] += m(i, j) / float(P < 0 ? L : 1);
  } else {
    const auto explain = [&](const auto& be, const vim_weights<float>& w) {
      const mixlens::tensor_view<const float, 3> iv(image.view());
      const attribute_options options{
          .mamba_attr = {.start_layer = o.start_layer, .full_matrix = true, .unified_skip = !o.attn_grad_without_d}};
      const attribution_result a = attribute(be, w, iv, *parse_attribution_method(o.method), T, options);
      std::copy(a.scores.begin(), a.scores.end(), scores.begin());
      value = a.value;
      if (!a.matrix.empty()) {
        const std::vector<float> m(a.matrix.begin(), a.matrix.end());
        mixlens::io::write_npy(out / (o.method == "mamba-attr" ? "mamba_attr.npy" : "attn_grad.npy"), m.data(), {L, L});
      }
      const propagation rule = o.method == "lrp" ? propagation::lrp : propagation::gradient;
      const auto g = vim_gradients(be, w, iv, T, gradient_options{.rule = rule, .embedding = false, .residual = true});
      const index_t E = c.hidden_size;
      for (index_t k : layers) {
        const auto grad = be.download(g.layers[static_cast<std::size_t>(k)].residual.data(), L * E);
        mixlens::io::write_npy(out / ("residual_grad_" + std::to_string(k) + ".npy"), grad.data(), {L, E});
      }
    };
#ifdef MIXLENS_TOOL_CUDA
    if (o.device == "cuda") {
      const auto weights = mixlens::gpu::to_device(model);
      explain(mixlens::gpu::device_backend{}, weights.view());
    } else
#endif
      explain(mixlens::host_backend<float>{}, host_weights(model).view());
  }
  mixlens::io::write_npy(out / "attribution.npy", scores.data(), {L});
  if (o.png) {
    write_attribution_chart(out / "attribution.png", o.method, P, T, value, scores);
    const matrix<float> grid = patch_map(c, std::span<const float>(scores));
    mixlens::io::write_overlay_png(out / "attribution_overlay.png", mixlens::tensor_view<const float, 3>(shown.view()),
                                   mixlens::matrix_view<const float>(grid.view()));
  }
  write_target_json(out, o.method, P, T, value);
}

// ---- one run -------------------------------------------------------------------------

template <class Model>
results run_cpu(const options& o, const Model& model, const std::vector<index_t>& tokens,
                const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  const auto weights = host_weights(model);
  return run_on(mixlens::host_backend<float>{}, weights.view(), o, tokens, layers, save);
}

results run_cpu(const options& o, const vim_model<float>& model, const mixlens::tensor<float, 3>& image,
                const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  const auto weights = host_weights(model);
  return run_vim_on(mixlens::host_backend<float>{}, weights.view(), o, image, layers, save,
                    [](const vim_layer_signals<float>& s) { return check_reconstruction(s); });
}

#ifdef MIXLENS_TOOL_CUDA
namespace gpu = mixlens::gpu;

// The device run: `run(backend, weights view)` after the weights' upload.
template <class Model, class Run>
results run_cuda(const Model& model, Run&& run) {
  std::string reason;
  if (!gpu::device_available(&reason)) throw mixlens::error("--device cuda: " + reason);
  const auto t = clock_type::now();
  const auto weights = gpu::to_device(model);
  const double upload_s = seconds_since(t);
  const gpu::device_backend be;
  results r = run(be, weights.view());
  r.upload_s = upload_s;
  return r;
}

template <class Model>
results run_cuda(const options& o, const Model& model, const std::vector<index_t>& tokens,
                 const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  return run_cuda(model, [&](const gpu::device_backend& be, const auto& w) { return run_on(be, w, o, tokens, layers, save); });
}

// The self-test of a Vim layer reads the signals on the host.
results run_cuda(const options& o, const vim_model<float>& model, const mixlens::tensor<float, 3>& image,
                 const std::vector<index_t>& layers, const std::vector<index_t>& save) {
  return run_cuda(model, [&](const gpu::device_backend& be, const auto& w) {
    return run_vim_on(be, w, o, image, layers, save, [&](const vim_layer_signals<float>& s) {
      be.synchronize();
      return check_reconstruction(gpu::to_host(s).view());
    });
  });
}
#endif

template <class Model, class Input>
results run_device(const options& o, const Model& model, const Input& input, const std::vector<index_t>& layers,
                   const std::vector<index_t>& save) {
#ifdef MIXLENS_TOOL_CUDA
  if (o.device == "cuda") return run_cuda(o, model, input, layers, save);
#endif
  return run_cpu(o, model, input, layers, save);
}

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

// Tensors in the checkpoint that the model does not read: refused with
// --strict, else a warning.
void check_unused(const options& o, const std::vector<std::string>& unused) {
  if (unused.empty()) return;
  std::string names;
  for (const auto& n : unused) names += (names.empty() ? "'" : ", '") + n + "'";
  const std::string what =
      "model.safetensors holds " + std::to_string(unused.size()) + " tensor(s) the model does not use: " + names;
  if (o.strict) throw mixlens::error(what + " (--strict)");
  std::cerr << "mixlens-attn: warning: " << what << " (--strict refuses them)\n";
}

std::string input_line(const options& o, index_t L, const std::vector<index_t>& layers, const std::vector<index_t>& save,
                       index_t D) {
  std::ostringstream os;
  os << "form " << to_string(o.form) << "; device " << o.device << "; " << layers.size() << " layer(s) analysed; ";
  if (o.row_mode()) {
    const index_t R = static_cast<index_t>(o.row_positions.size());
    os << R << " row(s) of " << L << " (rows.json); alpha_rows_{k}.npy " << D << " x " << R << " x " << L << " float32 ("
       << 4.0 * double(D) * double(R) * double(L) / 1e6 << " MB each, " << save.size() << " written); "
       << o.raw_rows_file()
       << (o.raw_range == "tensor" ? " normalized by each layer's whole-tensor range (a pass over every entry)"
                                   : " normalized by the range of the selected rows")
       << "; no rollout\n";
  } else {
    os << "alpha_{k}.npy " << D << " x " << L << " x " << L << " float32 ("
       << 4.0 * double(D) * double(L) * double(L) / 1e6 << " MB each, " << save.size() << " written)\n";
  }
  return os.str();
}

// The files of --method, for the summary line.
std::string attribution_files(const options& o) {
  return o.method == "mamba-attr"    ? ", attribution.npy, target.json, mamba_attr.npy, residual_grad_{k}.npy"
         : o.method == "attn-grad"   ? ", attribution.npy, target.json, attn_grad.npy, residual_grad_{k}.npy"
         : gradient_method(o.method) ? ", attribution.npy, target.json, residual_grad_{k}.npy"
                                     : ", attribution.npy, target.json";
}

// The files of one output folder (one sequence), for the summary line.
std::string output_files(const options& o, const std::vector<index_t>& layers, std::size_t saved, std::string_view extra) {
  std::string s = "logits.npy, " + std::to_string(saved) + (o.row_mode() ? " alpha_rows_{k}.npy" : " alpha_{k}.npy");
  if (!layers.empty())
    s += o.row_mode() ? ", " + std::to_string(layers.size()) + " map_rows_{k}.npy, " + o.raw_rows_file() + ", rows.json"
                      : std::string(", raw.npy, rollout.npy");
  s += extra;
  if (o.png && !o.row_mode()) s += " and PNG heatmaps";
  return s;
}

// What the checks of a run found, over every sequence.
struct check_summary {
  double reference_error = 0;  // --reference-logits: the worst sequence's
  std::string bad_logits;      // the first non-finite logit ("" when none)

  // Sequence `label`'s logits (want: its reference, or empty).
  void add(const matrix<float>& logits, const double* want, const std::string& label) {
    if (want) keep_worst(reference_error, relative_error(logits, std::vector<double>(want, want + logits.size())));
    if (const std::string bad = non_finite_entry(logits); !bad.empty() && bad_logits.empty())
      bad_logits = label.empty() ? bad : bad + " of " + label;
  }
};

// After the run: the time line, the files line, the self-test and the logits
// check; the exit status. r: the times and self-test of every sequence together.
int report(const options& o, const results& r, const check_summary& checks, const std::string& files,
           clock_type::time_point start, double load_s) {
  std::cout << "time      load " << load_s << " s, "
            << (o.device == "cuda" ? "upload " + std::to_string(r.upload_s) + " s, " : std::string())
            << "forward + attention " << r.compute_s << " s, writing " << r.write_s << " s"
            << (o.self_test ? ", self-test " + std::to_string(r.check_s) + " s" : std::string()) << ", total "
            << seconds_since(start) << " s\n"
            << "wrote     " << o.out.string() << ": " << files << "\n";

  int status = 0;
  // Non-finite logits fail either check (the per-layer errors do not see the
  // final norm and head); without a check they are only reported.
  const std::string& bad_logits = checks.bad_logits;
  if (o.self_test) {
    const bool ok = r.worst_check <= 1e-4 && bad_logits.empty();
    std::cout << "self-test " << (ok ? "passed" : "FAILED") << ": worst relative error " << r.worst_check << " (limit 1e-4)"
              << (bad_logits.empty() ? "" : "; logits contain " + bad_logits) << "\n";
    if (!ok) status = 1;
  }
  if (!o.reference_logits.empty()) {
    const double err = checks.reference_error;
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

// The dataset means of a batch: for each per-sequence map (raw.npy, rollout.npy,
// raw_rows.npy, map_rows_{k}.npy, attribution.npy) the mean over the sequences,
// written as <name>_mean.npy at the top of --out, as python -m mixlens --texts
// writes raw_mean.npy and rollout_mean.npy. A token file's sequences share one
// length, so every entry is a mean over all of them.
class dataset_means {
 public:
  void add(const std::string& name, const float* data, std::vector<index_t> shape) {
    auto& e = sums_[name];
    const std::size_t n = static_cast<std::size_t>(mixlens::detail::checked_element_count("dataset_means", "shape", shape));
    if (e.sum.empty()) e.shape = std::move(shape), e.sum.assign(n, 0.0);
    if (e.sum.size() != n) throw mixlens::error("dataset mean of " + name + ": the sequences' shapes differ");
    for (std::size_t k = 0; k < n; ++k) e.sum[k] += data[k];
    ++e.count;
  }
  void add(const std::string& name, const matrix<float>& m) { add(name, m.data(), {m.extent(0), m.extent(1)}); }

  // <name>_mean.npy for every name; returns their names.
  std::vector<std::string> write(const fs::path& folder) const {
    std::vector<std::string> names;
    for (const auto& [name, e] : sums_) {
      std::vector<float> mean(e.sum.size());
      for (std::size_t k = 0; k < mean.size(); ++k) mean[k] = static_cast<float>(e.sum[k] / double(e.count));
      names.push_back(fs::path(name).stem().string() + "_mean.npy");
      mixlens::io::write_npy(folder / names.back(), mean.data(), e.shape);
    }
    return names;
  }

 private:
  struct entry {
    std::vector<index_t> shape;
    std::vector<double> sum;
    index_t count = 0;
  };
  std::map<std::string, entry> sums_;
};

// One sequence's maps into the means: raw and rollout, or the rows.
void add_means(dataset_means& means, const options& o, const results& r) {
  if (!o.row_mode()) {
    if (r.raw.size()) means.add("raw.npy", r.raw), means.add("rollout.npy", r.roll);
    return;
  }
  if (r.raw_rows.size()) means.add(o.raw_rows_file(), r.raw_rows);
  const index_t R = static_cast<index_t>(o.row_positions.size());
  for (const auto& [k, rows] : r.map_rows)
    means.add("map_rows_" + std::to_string(k) + ".npy", rows.data(), {R, static_cast<index_t>(rows.size()) / R});
}

// sequences.json: [{"folder": "seq_0000", "length": 12}, ...].
void write_sequences_json(const fs::path& file, const std::vector<std::vector<index_t>>& sequences) {
  std::ofstream json(file);
  json << "[\n";
  for (std::size_t n = 0; n < sequences.size(); ++n)
    json << " {\"folder\": \"" << sequence_folder(n) << "\", \"length\": " << sequences[n].size() << "}"
         << (n + 1 < sequences.size() ? ",\n" : "\n");
  json << "]\n";
  if (!json.flush()) throw mixlens::error("cannot write '" + file.string() + "'");
}

template <class Model>
int run_model(const options& o, const Model& model, clock_type::time_point start, double load_s) {
  // Every input is checked before anything is written.
  check_unused(o, model.unused_tensors);
  const token_input input = read_tokens(o);
  const std::size_t B = input.sequences.size();
  const auto label = [&](std::size_t n) { return input.batch ? sequence_folder(n) : std::string(); };
  for (std::size_t n = 0; n < B; ++n)
    check_tokens(model.vocab_size(), std::span<const index_t>(input.sequences[n]),
                 input.batch ? "token file '" + o.tokens_file.string() + "' sequence " + std::to_string(n) : "tokens");
  const auto vocab = mixlens::tools::find_tokenizer(o.model, o.tokenizer);
  std::vector<std::vector<std::string>> texts(B);
  if (vocab)
    for (std::size_t n = 0; n < B; ++n) texts[n] = mixlens::tools::token_texts(*vocab, input.sequences[n], "mixlens-attn");
  const auto layers = parse_layers(o.layers, model.num_layers());
  const auto save = parse_save_alpha(o.save_alpha, layers);
  const auto& c = model.config;
  const index_t L = static_cast<index_t>(input.sequences[0].size()), D = alpha_matrices(c, o.form),
                V = model.vocab_size(), Bi = static_cast<index_t>(B);
  std::vector<double> want;
  if (!o.reference_logits.empty())
    want = input.batch ? read_reference(o.reference_logits, {Bi, L, V}, "(B, L, V)")
                       : read_reference(o.reference_logits, {L, V}, "(L, V)");
  check_method(o, model, L);
  if (input.batch && !o.html.empty())
    throw mixlens::error("--html: a page shows one sequence, and token file '" + o.tokens_file.string() + "' holds " +
                         std::to_string(B) + " (a batch); give one sequence for a page");
  options work = o;  // the run writes into the staging folder
  if (o.row_mode()) work.row_positions = resolve_rows(*o.rows, L, false, -1, "--rows");
  check_memory(work, memory_rows(c), V, L, !save.empty(),
               o.form == attention_form::paper && std::is_same_v<Model, mamba_model<float>>);
  const bool html_in_output = !o.html.empty() && mixlens::tools::html_in_folder(o.html, o.out);
  output_folder folder(o.out, "mixlens-attn");
  if (vocab) work.vocab = &*vocab;

  std::cout << "model     " << o.model.string() << " (" << c.family() << ", "
            << (c.naming == mamba_naming::state_spaces ? "state-spaces" : "Hugging Face")
            << " layout): " << model.parameter_count() << " parameters, " << c.num_layers << " layers, " << sizes(c)
            << ", vocab " << V << "\n"
            << "input     " << (input.batch ? std::to_string(B) + " sequences (seq_0000 ... " + sequence_folder(B - 1) +
                                                ") of L = " + std::to_string(L) + " tokens; "
                                          : "L = " + std::to_string(L) + " tokens; ")
            << input_line(work, L, layers, save, D);

  // Without the whole maps (--rows) the default attribution, rollout's target row, is not written.
  const bool attribution = !o.row_mode() || gradient_method(o.method);
  results total;
  check_summary checks;
  dataset_means means;
  std::optional<mixlens::tools::report_data> page;
  for (std::size_t n = 0; n < B; ++n) {
    const auto& tokens = input.sequences[n];
    work.out = input.batch ? folder.staging() / sequence_folder(n) : folder.staging();
    if (input.batch) {
      fs::create_directory(work.out);
      std::cout << "sequence  " << n << ": " << sequence_folder(n) << "\n";
    }
    work.labels.clear();
    for (const auto& t : texts[n]) work.labels.push_back(mixlens::tools::tick_label(t));

    results r = run_device(work, model, tokens, layers, save);

    const auto t = clock_type::now();
    mixlens::io::write_npy(work.out / "logits.npy", r.logits);
    if (vocab) mixlens::tools::write_tokens_json(work.out / "tokens.json", tokens, texts[n]);
    if (!layers.empty() && o.row_mode()) {
      mixlens::io::write_npy(work.out / o.raw_rows_file(), r.raw_rows);
      write_rows_json(work.out / "rows.json", work.row_positions);
    } else if (!layers.empty()) {
      mixlens::io::write_npy(work.out / "raw.npy", r.raw);
      mixlens::io::write_npy(work.out / "rollout.npy", r.roll);
      if (o.png)
        mixlens::io::write_heatmap_png(work.out / "rollout.png", mixlens::matrix_view<const float>(r.roll.view()),
                                       {.title = rollout_title(o, layers), .tick_labels = work.labels, .mask_upper = true});
    }
    if (attribution) write_attribution(work, work.out, model, tokens, layers, r);
    if (!o.html.empty())
      page = mixlens::tools::report_of(o, work.out, c.family(), tokens, texts[n], r);
    if (page && html_in_output) mixlens::tools::write_html_report(work.out / o.html.filename(), *page);
    if (input.batch) {
      add_means(means, work, r);
      if (attribution && fs::exists(work.out / "attribution.npy")) {
        const auto a = mixlens::io::read_npy(work.out / "attribution.npy").as<float>();
        means.add("attribution.npy", a.data(), {L});
      }
      mixlens::tools::write_manifest(work.out, "mixlens-attn");
    }
    r.write_s += seconds_since(t);
    checks.add(r.logits, want.empty() ? nullptr : want.data() + n * L * V, label(n));
    total.compute_s += r.compute_s, total.write_s += r.write_s, total.check_s += r.check_s;
    total.upload_s += r.upload_s;
    keep_worst(total.worst_check, r.worst_check);
  }
  std::string files = output_files(work, layers, save.size(),
                                   std::string(vocab ? ", tokens.json" : "") + (attribution ? attribution_files(o) : ""));
  if (input.batch) {
    std::string top;
    for (const auto& name : means.write(folder.staging())) top += ", " + name;
    write_sequences_json(folder.staging() / "sequences.json", input.sequences);
    if (o.row_mode() && !layers.empty()) write_rows_json(folder.staging() / "rows.json", work.row_positions);
    files = std::to_string(B) + " folders seq_0000 ... " + sequence_folder(B - 1) + " (each: " + files + ")" + top +
            (o.row_mode() && !layers.empty() ? ", rows.json" : "") + ", sequences.json";
  }
  folder.commit();
  if (page && !html_in_output) mixlens::tools::write_html_report(o.html, *page);
  return report(o, total, checks, files, start, load_s);
}

int run_vim_model(const options& o, const vim_model<float>& model, clock_type::time_point start, double load_s) {
  const auto& c = model.config;
  check_vim_method(o, model);
  check_unused(o, model.unused_tensors);
  // The model input: a PNG's pixels (in [0, 1]) take Vim's evaluation
  // normalization; a .npy is the input as stored unless --normalize.
  mixlens::tensor<float, 3> image = read_image<float>(o.image);
  check_vim_image(c, image.extent(0), image.extent(1), image.extent(2));
  const mixlens::tensor<float, 3> shown = image;  // what the overlay shows
  std::string ext = o.image.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  const bool normalized = ext == ".png" || o.normalize;
  if (normalized) imagenet_normalize(image);
  const auto layers = parse_layers(o.layers, model.num_layers());
  const auto save = parse_save_alpha(o.save_alpha, layers);
  const index_t L = c.sequence_length(), D = c.intermediate_size;
  std::vector<double> want;
  if (!o.reference_logits.empty()) want = read_reference(o.reference_logits, {c.num_classes}, "(classes)");
  options work = o;
  if (o.row_mode()) work.row_positions = resolve_rows(*o.rows, L, true, c.cls_index(), "--rows");
  check_memory(work, memory_rows(c), c.num_classes, L, !save.empty(), false);
  const bool html_in_output = !o.html.empty() && mixlens::tools::html_in_folder(o.html, o.out);
  output_folder folder(o.out, "mixlens-attn");
  work.out = folder.staging();

  std::cout << "model     " << o.model.string() << " (Vision Mamba): " << model.parameter_count() << " parameters, "
            << model.num_layers() << " bidirectional layers, " << sizes(c) << ", " << c.grid_height() << " x "
            << c.grid_width() << " patches of " << c.patch_size << " (stride " << c.stride << "), CLS "
            << to_string(c.cls) << (c.cls_index() >= 0 ? " at " + std::to_string(c.cls_index()) : std::string())
            << ", " << c.num_classes << " classes\n"
            << "input     image " << o.image.string() << " (" << image.extent(0) << " x " << image.extent(1) << " x "
            << image.extent(2) << (normalized ? ", ImageNet-normalized" : ", as stored") << "), L = " << L
            << " positions; " << input_line(work, L, layers, save, D);

  results r = run_device(work, model, image, layers, save);

  const auto t = clock_type::now();
  mixlens::io::write_npy(work.out / "logits.npy", r.logits.data(), {c.num_classes});
  if (!layers.empty() && o.row_mode()) {
    mixlens::io::write_npy(work.out / o.raw_rows_file(), r.raw_rows);
    write_rows_json(work.out / "rows.json", work.row_positions);
  } else if (!layers.empty()) {
    mixlens::io::write_npy(work.out / "raw.npy", r.raw);
    mixlens::io::write_npy(work.out / "rollout.npy", r.roll);
    const matrix<float> cls_raw = classifier_row_map(c, r.raw), cls_roll = classifier_row_map(c, r.roll);
    mixlens::io::write_npy(work.out / "cls_raw.npy", cls_raw.data(), {cls_raw.extent(0), cls_raw.extent(1)});
    mixlens::io::write_npy(work.out / "cls_rollout.npy", cls_roll.data(), {cls_roll.extent(0), cls_roll.extent(1)});
    if (o.png) {
      mixlens::io::write_heatmap_png(work.out / "rollout.png", mixlens::matrix_view<const float>(r.roll.view()),
                                     {.title = rollout_title(o, layers)});
      // The overlay shows the pixels: a PNG's, or a .npy taken as [0, 1] values.
      mixlens::io::write_overlay_png(work.out / "overlay.png", mixlens::tensor_view<const float, 3>(shown.view()),
                                     mixlens::matrix_view<const float>(cls_roll.view()));
    }
  }
  const bool attribution = o.method_given || o.target_token;
  if (attribution) write_vim_attribution(o, work.out, model, image, shown, layers, r);
  std::optional<mixlens::tools::report_data> page;
  if (!o.html.empty()) {
    std::vector<index_t> positions(static_cast<std::size_t>(L));
    std::iota(positions.begin(), positions.end(), index_t(0));
    page = mixlens::tools::report_of(o, work.out, "Vision Mamba", positions, position_labels(c), r, false);
    if (html_in_output) mixlens::tools::write_html_report(work.out / o.html.filename(), *page);
  }
  folder.commit();
  if (page && !html_in_output) mixlens::tools::write_html_report(o.html, *page);
  r.write_s += seconds_since(t);
  std::string files = layers.empty() || o.row_mode() ? "" : ", cls_raw.npy, cls_rollout.npy";
  if (attribution) files += attribution_files(o);
  check_summary checks;
  checks.add(r.logits, want.empty() ? nullptr : want.data(), "");
  return report(o, r, checks, output_files(work, layers, save.size(), files), start, load_s);
}

int run(const options& o) {
  mixlens::tools::route_device(o.device, o.argv, "mixlens-attn");
  const auto start = clock_type::now();
  const model_family family = detect_family(detail::model_config_file(o.model, "model"));
  if (family == model_family::vim) {
    if (!o.tokenizer.empty())
      throw mixlens::error("--tokenizer: the model in '" + o.model.string() +
                           "' is a Vision Mamba classifier; its input is an image, not tokens");
    if (o.image.empty())
      throw mixlens::error("--model '" + o.model.string() +
                           "' is a Vision Mamba classifier: give its input with --image FILE (.png or .npy), "
                           "not token ids");
    const auto model = load_vim<float>(o.model);
    return run_vim_model(o, model, start, seconds_since(start));
  }
  if (!o.image.empty())
    throw mixlens::error("--image: the model in '" + o.model.string() + "' is a " + std::string(to_string(family)) +
                         " language model: give --tokens or --tokens-file");
  const auto model = load_language_model<float>(o.model);
  const double load_s = seconds_since(start);
  return std::visit([&](const auto& m) { return run_model(o, m, start, load_s); }, model);
}

}  // namespace

int main(int argc, char** argv) {
  return mixlens::tools::tool_main(argc, argv, "mixlens-attn", usage_text, "try --save-alpha none or fewer tokens",
                                   [](int n, char** v) { return parse_args(n, v); }, [](const options& o) { return run(o); });
}
