// mixlens-eval: perturbation tests (faithfulness) of the attribution methods of
// a Mamba, Falcon-Mamba or Mamba-2 language model (models::attribute,
// analysis::faithfulness): per sequence and method, the MoRF and LeRF curves of
// the target logit and its probability, their AUCs and ΔA^F; averaged over the
// sequences into faithfulness.json, faithfulness.md (also printed) and
// faithfulness.png. Per sequence, every method's perturbed sequences go to the
// evaluator in one call: on the host one forward pass each (on --threads), on
// the GPU (mixlens-eval-cuda, MIXLENS_TOOL_CUDA) batched, each distinct
// sequence once, with the logits formed only at the target. Every input is checked before any work; the outputs appear
// in --out only when the run completes (tools/common/cli.hpp, output_folder).
// Exit status: 0 success, 1 a failure (model, tokens, output folder), 2 bad usage.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <new>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/cli.hpp"
#include "mixlens/analysis/faithfulness.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/io/png.hpp"
#include "mixlens/models/attribute.hpp"
#include "mixlens/models/language_model.hpp"
#ifdef MIXLENS_TOOL_CUDA
#include "mixlens/gpu/models/mamba.cuh"
#endif

namespace fs = std::filesystem;
using mixlens::index_t;
using namespace mixlens::models;
namespace analysis = mixlens::analysis;
using mixlens::tools::argument_cursor;
using mixlens::tools::output_folder;
using mixlens::tools::parse_count;
using mixlens::tools::usage_error;

namespace {

constexpr std::string_view usage_text =
    "usage: mixlens-eval --model DIR (--tokens-file F.npy | --token-lines F) --out DIR\n"
    "                    [--methods raw,rollout,mamba-attr,grad-input,random,attn-grad,lrp] [--steps K]\n"
    "                    [--mode remove|replace] [--replace-token T] [--target-position P]\n"
    "                    [--target-token T] [--random-draws N] [--seed S] [--start-layer K] [--attn-grad-without-d]\n"
    "                    [--threads N] [--device cpu|cuda] [--batch-tokens N] [--tf32]\n"
    "\n"
    "Perturbation tests of attributions: the positions are perturbed most relevant first (MoRF) and\n"
    "least relevant first (LeRF), a fraction k/K of them at step k = 0..K, and the target logit and\n"
    "its probability are read; AUC by the trapezoid rule over [0, 1], dA = AUC(LeRF) - AUC(MoRF).\n"
    "The target position is never perturbed. Token ids only: text tokenization is not available in\n"
    "C++ (tokenize with the model's tokenizer in Python and save the ids).\n"
    "\n"
    "  --model DIR             config.json + model.safetensors: Mamba, Falcon-Mamba or Mamba-2\n"
    "  --tokens-file FILE      token ids, an int32/int64 .npy of shape (L) or (B, L)\n"
    "  --token-lines FILE      one sequence per line, whitespace-separated token ids\n"
    "  --out DIR               output folder (created if missing; replaced only if empty or a former output)\n"
    "  --methods LIST          comma-separated among raw, rollout, mamba-attr, grad-input, random,\n"
    "                          attn-grad, lrp (default all)\n"
    "  --steps K               curve points 0..K (default 10)\n"
    "  --mode remove|replace   delete the perturbed positions, or put --replace-token there (default replace)\n"
    "  --replace-token T       the replacement token (default 0)\n"
    "  --target-position P     the target logit's position (default: the last of each sequence)\n"
    "  --target-token T        the target logit's token (default: the argmax of the unperturbed logits)\n"
    "  --random-draws N        random attributions averaged for the random baseline (default 10)\n"
    "  --seed S                the random baseline's seed; draw d uses S + d (default 0)\n"
    "  --start-layer K         mamba-attr, attn-grad: the first layer of the rollout (default 0)\n"
    "  --attn-grad-without-d   attn-grad: the unified matrices without the skip D (as the authors' code)\n"
    "  --threads N             cpu: perturbed sequences evaluated side by side (default 1; 0: every core)\n"
    "  --device cpu|cuda       where to compute (default cpu). cuda: the attributions on the GPU and the\n"
    "                          perturbed sequences of all methods batched, each distinct one once, with\n"
    "                          the logits formed only at the target\n"
    "  --batch-tokens N        cuda: token ids per batched forward pass, at most 128 sequences (default 65536)\n"
    "  --tf32                  cuda: the perturbed sequences' products on TF32 tensor cores (about 1e-3\n"
    "                          relative in the logits; the attributions stay fp32)\n"
    "\n"
    "Writes faithfulness.json (per method: mean curves, AUCs and dA, and per sequence),\n"
    "faithfulness.md (the table printed on stdout) and faithfulness.png (logit curves: MoRF solid,\n"
    "LeRF dashed, one colour per method).\n";

struct options {
  fs::path model, out, tokens_file, token_lines;
  std::vector<attribution_method> methods;
  index_t steps = 10, replace_token = 0, random_draws = 10, start_layer = 0, threads = 1, batch_tokens = 1 << 16;
  std::string device = "cpu";
  bool tf32 = false, attn_grad_without_d = false;
  char** argv = nullptr;
  std::uint64_t seed = 0;
  analysis::perturbation_mode mode = analysis::perturbation_mode::replace;
  std::optional<index_t> target_position, target_token;
};

std::vector<attribution_method> parse_methods(const std::string& text) {
  std::vector<attribution_method> out;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = text.find(',', begin);
    const std::string item = text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    const auto m = parse_attribution_method(item);
    if (!m) throw usage_error("--methods: unknown method '" + item + "' (expected " + attribution_method_list() + ")");
    if (std::find(out.begin(), out.end(), *m) == out.end()) out.push_back(*m);
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return out;
}

options parse_args(int argc, char** argv) {
  options o;
  o.argv = argv;
  int inputs = 0;
  for (argument_cursor args(argc, argv); args.next();) {
    const std::string_view arg = args.option();
    if (arg == "--model") o.model = args.value();
    else if (arg == "--out") o.out = args.value();
    else if (arg == "--tokens-file") { o.tokens_file = args.value(); ++inputs; }
    else if (arg == "--token-lines") { o.token_lines = args.value(); ++inputs; }
    else if (arg == "--methods") o.methods = parse_methods(args.value());
    else if (arg == "--steps") {
      o.steps = parse_count(args.value(), "--steps");
      if (o.steps < 1) throw usage_error("--steps: expected at least 1, not 0");
    } else if (arg == "--mode") {
      const std::string m = args.value();
      if (m == "remove") o.mode = analysis::perturbation_mode::remove;
      else if (m == "replace") o.mode = analysis::perturbation_mode::replace;
      else throw usage_error("--mode must be remove or replace, not '" + m + "'");
    } else if (arg == "--replace-token") o.replace_token = parse_count(args.value(), "--replace-token");
    else if (arg == "--target-position") o.target_position = parse_count(args.value(), "--target-position");
    else if (arg == "--target-token") o.target_token = parse_count(args.value(), "--target-token");
    else if (arg == "--random-draws") {
      o.random_draws = parse_count(args.value(), "--random-draws");
      if (o.random_draws < 1) throw usage_error("--random-draws: expected at least 1, not 0");
    } else if (arg == "--seed") o.seed = static_cast<std::uint64_t>(parse_count(args.value(), "--seed"));
    else if (arg == "--start-layer") o.start_layer = parse_count(args.value(), "--start-layer");
    else if (arg == "--threads") o.threads = parse_count(args.value(), "--threads");
    else if (arg == "--device") {
      o.device = args.value();
      if (o.device != "cpu" && o.device != "cuda")
        throw usage_error("--device must be cpu or cuda, not '" + o.device + "'");
    } else if (arg == "--attn-grad-without-d") {
      o.attn_grad_without_d = true;
    } else if (arg == "--tf32") {
      o.tf32 = true;
    } else if (arg == "--batch-tokens") {
      o.batch_tokens = parse_count(args.value(), "--batch-tokens");
      if (o.batch_tokens < 1) throw usage_error("--batch-tokens: expected at least 1, not 0");
    } else args.unknown();
  }
  if (o.model.empty()) throw usage_error("--model is required");
  if (o.out.empty()) throw usage_error("--out is required");
  if (inputs != 1) throw usage_error("give exactly one of --tokens-file and --token-lines");
  if (o.tf32 && o.device != "cuda") throw usage_error("--tf32 is for --device cuda");
  if (o.methods.empty())
    for (std::size_t i = 0; i < attribution_method_count; ++i) o.methods.push_back(static_cast<attribution_method>(i));
  if (o.attn_grad_without_d && std::find(o.methods.begin(), o.methods.end(), attribution_method::attn_grad) == o.methods.end())
    throw usage_error("--attn-grad-without-d is for the method attn-grad, which --methods leaves out");
  return o;
}

// The sequences of --tokens-file ((L) or (B, L)) or --token-lines.
std::vector<std::vector<index_t>> read_sequences(const options& o) {
  std::vector<std::vector<index_t>> out;
  if (!o.tokens_file.empty()) {
    const std::string who = "token file '" + o.tokens_file.string() + "'";
    const auto a = mixlens::io::read_npy(o.tokens_file);
    if (a.descr != "<i4" && a.descr != "<i8")
      throw mixlens::error(who + ": dtype " + a.descr + " (expected int32 or int64)");
    if (a.shape.empty() || a.shape.size() > 2) throw mixlens::error(who + ": expected shape (L) or (B, L)");
    const auto ids = a.as<index_t>();
    const index_t L = a.shape.back(), B = a.shape.size() == 2 ? a.shape[0] : 1;
    for (index_t b = 0; b < B; ++b) out.emplace_back(ids.begin() + b * L, ids.begin() + (b + 1) * L);
  } else {
    const std::string who = "token lines '" + o.token_lines.string() + "'";
    std::ifstream in(o.token_lines);
    if (!in) throw mixlens::error(who + ": cannot be read");
    std::string line;
    for (index_t n = 1; std::getline(in, line); ++n) {
      std::istringstream words(line);
      std::vector<index_t> seq;
      for (std::string w; words >> w;) {
        index_t v = 0;
        const auto [ptr, ec] = std::from_chars(w.data(), w.data() + w.size(), v);
        if (ec != std::errc() || ptr != w.data() + w.size())
          throw mixlens::error(who + ": line " + std::to_string(n) + ": '" + w + "' is not a token id");
        seq.push_back(v);
      }
      if (!seq.empty()) out.push_back(std::move(seq));
    }
  }
  if (out.empty() || out.front().empty()) throw mixlens::error("the input holds no tokens");
  return out;
}

// One method over all sequences.
struct method_results {
  attribution_method method;
  std::vector<attribution_result> targets;  // per sequence (scores of the last draw for random)
  std::vector<analysis::faithfulness_result> per_sequence;
  analysis::faithfulness_result mean;
};

nlohmann::json to_json(const analysis::perturbation_curve& c) {
  return {{"logit", c.logit}, {"probability", c.probability}, {"auc_logit", c.auc_logit},
          {"auc_probability", c.auc_probability}};
}
nlohmann::json to_json(const analysis::faithfulness_result& r) {
  return {{"morf", to_json(r.morf)}, {"lerf", to_json(r.lerf)}, {"delta_logit", r.delta_logit},
          {"delta_probability", r.delta_probability}};
}

std::string markdown(const std::vector<method_results>& all) {
  std::ostringstream os;
  os << std::setprecision(4);
  os << "| method | AUC MoRF (logit) | AUC LeRF (logit) | ΔA^F (logit) | AUC MoRF (prob.) | AUC LeRF (prob.) | ΔA^F (prob.) |\n"
     << "|---|---|---|---|---|---|---|\n";
  for (const auto& m : all)
    os << "| " << to_string(m.method) << " | " << m.mean.morf.auc_logit << " | " << m.mean.lerf.auc_logit << " | "
       << m.mean.delta_logit << " | " << m.mean.morf.auc_probability << " | " << m.mean.lerf.auc_probability << " | "
       << m.mean.delta_probability << " |\n";
  return os.str();
}

// The mean logit curves: MoRF solid, LeRF dashed, one colour per method, on a
// white canvas with axes; no labels (the table says which is which).
void plot(const fs::path& file, const std::vector<method_results>& all) {
  constexpr index_t W = 640, H = 400, margin = 40;
  std::vector<std::uint8_t> rgb(static_cast<std::size_t>(3 * W * H), 255);
  const auto put = [&](index_t x, index_t y, std::array<std::uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    for (int k = 0; k < 3; ++k) rgb[static_cast<std::size_t>(3 * (y * W + x) + k)] = c[static_cast<std::size_t>(k)];
  };
  const auto line = [&](double x0, double y0, double x1, double y1, std::array<std::uint8_t, 3> c, bool dashed) {
    const index_t n = static_cast<index_t>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (index_t i = 0; i <= n; ++i) {
      if (dashed && (i / 6) % 2) continue;
      const double t = double(i) / double(n);
      const index_t x = static_cast<index_t>(std::lround(x0 + t * (x1 - x0))), y = static_cast<index_t>(std::lround(y0 + t * (y1 - y0)));
      put(x, y, c), put(x, y + 1, c);
    }
  };
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& m : all)
    for (const auto* c : {&m.mean.morf, &m.mean.lerf})
      for (double v : c->logit) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!(hi > lo)) hi = lo + 1;
  const double pw = W - 2 * margin, ph = H - 2 * margin;
  line(margin, H - margin, W - margin, H - margin, {0, 0, 0}, false);  // axes
  line(margin, margin, margin, H - margin, {0, 0, 0}, false);
  for (std::size_t k = 0; k < all.size(); ++k) {
    const auto colour = mixlens::io::detail::viridis(all.size() == 1 ? 0.0 : 0.9 * double(k) / double(all.size() - 1));
    for (const auto* c : {&all[k].mean.morf, &all[k].mean.lerf}) {
      const std::size_t n = c->logit.size();
      for (std::size_t i = 1; i < n; ++i) {
        const auto px = [&](std::size_t j) { return margin + pw * double(j) / double(n - 1); };
        const auto py = [&](std::size_t j) { return H - margin - ph * (c->logit[j] - lo) / (hi - lo); };
        line(px(i - 1), py(i - 1), px(i), py(i), colour, c == &all[k].mean.lerf);
      }
    }
  }
  mixlens::io::write_png(file, W, H, rgb);
}

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

// Runs `body(backend, weights, evaluator)` where the options say: on the host
// (the weights' views, target_evaluator on --threads), or on the GPU (the
// weights uploaded once, batch_target_evaluator). evaluator(batch, token).
template <class Model, class Body>
void compute(const options& o, const Model& model, Body&& body) {
#ifdef MIXLENS_TOOL_CUDA
  if (o.device == "cuda") {
    using mixlens::gpu::gemm_precision;
    const mixlens::gpu::device_backend be, perturbed(nullptr, o.tf32 ? gemm_precision::tf32 : gemm_precision::fp32);
    const auto weights = mixlens::gpu::to_device(model);
    const batch_target_evaluator evaluator(perturbed, weights.view(), 128, o.batch_tokens);
    body(be, weights.view(), evaluator);
    return;
  }
#endif
  const auto weights = host_weights(model);
  const mixlens::host_backend<float> be;
  body(be, weights.view(), [&](std::span<const analysis::perturbed_sequence> batch, index_t token) {
    return target_evaluator(model, token, static_cast<int>(o.threads))(batch);
  });
}

template <class Model>
int run_model(const options& o, const Model& model, clock_type::time_point start) {
  const index_t V = model.vocab_size();
  // Every input is checked before any work.
  const auto sequences = read_sequences(o);
  const std::string source = o.tokens_file.empty() ? o.token_lines.string() : o.tokens_file.string();
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    check_tokens(V, std::span<const index_t>(sequences[s]), "'" + source + "' sequence " + std::to_string(s));
    if (o.target_position && *o.target_position >= static_cast<index_t>(sequences[s].size()))
      throw mixlens::error("--target-position " + std::to_string(*o.target_position) + " is outside sequence " +
                           std::to_string(s) + " (" + std::to_string(sequences[s].size()) + " tokens)");
  }
  if (o.target_token && *o.target_token >= V)
    throw mixlens::error("--target-token " + std::to_string(*o.target_token) + " is outside the vocabulary [0, " +
                         std::to_string(V) + ")");
  if (o.replace_token >= V)
    throw mixlens::error("--replace-token " + std::to_string(o.replace_token) + " is outside the vocabulary [0, " +
                         std::to_string(V) + ")");
  if (o.start_layer >= model.num_layers())
    throw mixlens::error("--start-layer " + std::to_string(o.start_layer) + " is not a layer in [0, " +
                         std::to_string(model.num_layers()) + ")");
  output_folder folder(o.out, "mixlens-eval");
  const double load_s = seconds_since(start);

  std::cout << "model     " << o.model.string() << " (" << model.config.family() << "): " << model.num_layers()
            << " layers, vocab " << V << "\n"
            << "input     " << sequences.size() << " sequence(s); " << o.methods.size() << " method(s), " << o.steps
            << " steps, mode " << to_string(o.mode) << "\n";

  const auto tc = clock_type::now();
  std::vector<method_results> all;
  for (attribution_method m : o.methods) all.push_back({m, {}, {}, {}});
  double attribution_s = 0;
  compute(o, model, [&](const auto& be, const auto& w, const auto& evaluator) {
    const gradient_target want{o.target_position.value_or(-1), o.target_token.value_or(-1)};
    const faithfulness_run_options run{
        .curves = {.steps = o.steps, .mode = o.mode, .replacement_token = o.replace_token},
        .random_draws = o.random_draws,
        .attribute = {.mamba_attr = {.start_layer = o.start_layer, .unified_skip = !o.attn_grad_without_d},
                      .seed = o.seed}};
    for (const auto& seq : sequences) {
      const auto ta = clock_type::now();
      double evaluating = 0;  // the evaluator's share of the call
      const auto results = faithfulness_of_methods(
          be, w, std::span<const index_t>(seq), std::span<const attribution_method>(o.methods), want, run,
          [&](std::span<const analysis::perturbed_sequence> batch, index_t token) {
            const auto te = clock_type::now();
            auto values = evaluator(batch, token);
            evaluating += seconds_since(te);
            return values;
          });
      attribution_s += seconds_since(ta) - evaluating;
      for (std::size_t i = 0; i < results.size(); ++i) {
        all[i].targets.push_back(results[i].attribution);
        all[i].per_sequence.push_back(results[i].result);
      }
    }
  });
  for (auto& r : all) r.mean = analysis::average(r.per_sequence);
  const double compute_s = seconds_since(tc);

  nlohmann::json j;
  j["model"] = o.model.string();
  j["steps"] = o.steps;
  j["mode"] = to_string(o.mode);
  j["replace_token"] = o.replace_token;
  j["random_draws"] = o.random_draws;
  j["seed"] = o.seed;
  j["sequences"] = sequences.size();
  for (const auto& r : all) {
    nlohmann::json m = to_json(r.mean);
    for (std::size_t s = 0; s < r.per_sequence.size(); ++s) {
      nlohmann::json e = to_json(r.per_sequence[s]);
      e["position"] = r.targets[s].target.position;
      e["token"] = r.targets[s].target.token;
      e["value"] = r.targets[s].value;
      if (r.method != attribution_method::random) e["scores"] = r.targets[s].scores;
      m["per_sequence"].push_back(std::move(e));
    }
    j["methods"][std::string(to_string(r.method))] = std::move(m);
  }
  const fs::path out = folder.staging();
  {
    std::ofstream f(out / "faithfulness.json");
    f << j.dump(1) << "\n";  // numbers as shortest round-trip decimals
    if (!f.flush()) throw mixlens::error("cannot write '" + (out / "faithfulness.json").string() + "'");
  }
  const std::string table = markdown(all);
  {
    std::ofstream f(out / "faithfulness.md");
    f << table;
    if (!f.flush()) throw mixlens::error("cannot write '" + (out / "faithfulness.md").string() + "'");
  }
  plot(out / "faithfulness.png", all);
  folder.commit();
  std::cout << "time      load " << load_s << " s, attribution " << attribution_s << " s, perturbation "
            << compute_s - attribution_s << " s (" << compute_s / double(sequences.size())
            << " s per sequence), total " << seconds_since(start) << " s on " << o.device << "\n"
            << "wrote     " << o.out.string() << ": faithfulness.json, faithfulness.md, faithfulness.png\n\n"
            << table;
  return 0;
}

int run(const options& o) {
  mixlens::tools::route_device(o.device, o.argv, "mixlens-eval");
#ifdef MIXLENS_TOOL_CUDA
  if (o.device == "cuda") {
    std::string reason;
    if (!mixlens::gpu::device_available(&reason)) throw mixlens::error("--device cuda: " + reason);
  }
#endif
  const auto start = clock_type::now();
  const model_family family = detect_family(detail::model_config_file(o.model, "model"));
  if (family == model_family::vim)
    throw mixlens::error("--model '" + o.model.string() + "' is a " + std::string(to_string(family)) +
                         " model: mixlens-eval tests the attributions of Mamba, Falcon-Mamba and Mamba-2 language models");
  if (family == model_family::mamba2) return run_model(o, load_mamba2<float>(o.model), start);
  return run_model(o, load_mamba<float>(o.model), start);
}

}  // namespace

int main(int argc, char** argv) {
  return mixlens::tools::tool_main(argc, argv, "mixlens-eval", usage_text, "try fewer or shorter sequences",
                                   [](int n, char** v) { return parse_args(n, v); }, [](const options& o) { return run(o); });
}
