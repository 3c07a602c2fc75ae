// mixlens.load and mixlens.Model: every language-model family the library reads
// (models/language_model.hpp), its forward pass, and the hidden attention of
// its layers as mixlens-attn computes it, on the host or (device.hpp) the GPU: per layer the matrices and
// their channel mean, the raw attention averaged over layers and the rollout.
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "arrays.hpp"
#include "attention.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/attribute.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/rows.hpp"
#include "mixlens/models/vim_attribution.hpp"
#include "mixlens/models/vim_model.hpp"
#include "operator.hpp"
#ifdef MIXLENS_PYTHON_CUDA
#include "device.hpp"
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {

int device_index(std::string_view where, nb::handle device) {
  const std::string text = is_none(device) ? "cpu" : str_of(device);
  if (text == "cpu") return -1;
  if (text == "cuda") return 0;
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 &&
      text.find_first_not_of("0123456789", 5) == std::string::npos && text.size() < 10)
    return std::stoi(text.substr(5));
  fail(where, "device", "'cpu', 'cuda' or 'cuda:N'", "'" + text + "'");
}

std::string cuda_unavailable(int device) {
#ifdef MIXLENS_PYTHON_CUDA
  std::string reason;
  return cuda::available(device, &reason) ? std::string() : reason;
#else
  (void)device;
  return "this mixlens was built without its CUDA backend (CMake found no CUDA compiler when it was "
         "installed; reinstall with nvcc on PATH: pip install .)";
#endif
}

namespace {

using models::attention_form;

// What Model.attention returns.
struct attention_result {
  nb::object logits, raw, rollout, rows;  // rows: the selected positions (a list), or None
  std::vector<index_t> layers;
  std::string form, raw_range;
  nb::dict alpha, maps;  // layer → array
};

// What Model.attribute returns.
struct attribution_output {
  std::string method;
  index_t position = 0, token = 0;
  double value = 0;
  nb::object scores, matrix;  // matrix: the whole rollout (L × L), or None
};

bool contains(const std::vector<index_t>& v, index_t k) { return std::find(v.begin(), v.end(), k) != v.end(); }


models::attribution_method method_of(std::string_view where, const std::string& name) {
  const auto m = models::parse_attribution_method(name);
  if (!m) fail(where, "method", models::attribution_method_list(), "'" + name + "'");
  return *m;
}

// The method and options of Model.attribute and VisionModel.attribute, after
// the checks that name their arguments.
std::pair<models::attribution_method, models::attribute_options> attribution_request(
    std::string_view where, const std::string& method_name, index_t start_layer, index_t layer_count, bool matrix,
    bool attn_grad_without_d, std::uint64_t seed) {
  const models::attribution_method method = method_of(where, method_name);
  const bool rolled = method == models::attribution_method::mamba_attr || method == models::attribution_method::attn_grad;
  if (matrix && !rolled)
    fail(where, "matrix", "False for method '" + method_name + "' (mamba-attr and attn-grad keep their whole rollout)",
         "True");
  if (attn_grad_without_d && method != models::attribution_method::attn_grad)
    fail(where, "attn_grad_without_d", "False for method '" + method_name + "' (it is attn-grad's)", "True");
  if (start_layer < 0 || start_layer >= layer_count)
    mixlens::detail::fail(where, "start_layer", "a layer in [0, " + std::to_string(layer_count) + ")", start_layer);
  return {method, {.mamba_attr = {.start_layer = start_layer, .full_matrix = matrix, .unified_skip = !attn_grad_without_d},
                   .seed = seed}};
}

// The faithfulness curves as a dict: {'morf': {'logit', 'probability' (float64
// arrays), 'auc_logit', 'auc_probability'}, 'lerf': …, 'delta_logit',
// 'delta_probability'}.
nb::dict curves_dict(const analysis::faithfulness_result& r) {
  const auto curve = [](const analysis::perturbation_curve& c) {
    nb::dict d;
    d["logit"] = copy_output(c.logit.data(), {c.logit.size()}, framework::numpy);
    d["probability"] = copy_output(c.probability.data(), {c.probability.size()}, framework::numpy);
    d["auc_logit"] = c.auc_logit;
    d["auc_probability"] = c.auc_probability;
    return d;
  };
  nb::dict d;
  d["morf"] = curve(r.morf);
  d["lerf"] = curve(r.lerf);
  d["delta_logit"] = r.delta_logit;
  d["delta_probability"] = r.delta_probability;
  return d;
}

// Token ids: a 1-D (or 1 × L) integer array, tensor or sequence.
std::vector<index_t> token_ids(nb::handle h, std::string_view where) {
  nb::object np = nb::module_::import_("numpy");
  nb::object arr;
  try {
    arr = np.attr("asarray")(h);
  } catch (const nb::python_error&) {
    fail(where, "tokens", "integer token ids (1-D array, tensor or sequence)", python_type(h));
  }
  if (nb::cast<std::size_t>(arr.attr("size")) == 0) return {};  // refused by check_tokens: "no tokens"
  const std::string kind = nb::cast<std::string>(arr.attr("dtype").attr("kind"));
  const auto shape = nb::cast<std::vector<index_t>>(arr.attr("shape"));
  const bool vector = shape.size() == 1 || (shape.size() == 2 && shape[0] == 1);
  if (kind != "i" && kind != "u")
    fail(where, "tokens", "integer token ids", "dtype " + str_of(arr.attr("dtype")));
  if (!vector) fail(where, "tokens", "a 1-D array of token ids (or 1 x L)", str_of(arr.attr("shape")));
  nb::object flat = np.attr("ascontiguousarray")(arr.attr("reshape")(-1), "dtype"_a = "int64");
  const auto a = nb::cast<in_array<std::int64_t>>(flat);
  return std::vector<index_t>(a.data(), a.data() + a.size());
}

attention_form form_of(const std::string& form) {
  if (form == "paper") return attention_form::paper;
  if (form == "unified") return attention_form::unified;
  fail("mixlens.Model.attention", "form", "'paper' or 'unified'", "'" + form + "'");
}

channel_reduction reduction_of(const std::string& r) {
  if (r == "mean") return channel_reduction::mean;
  if (r == "abs_mean") return channel_reduction::abs_mean;
  if (r == "relu_mean") return channel_reduction::relu_mean;
  fail("mixlens.Model.attention", "reduction", "'mean', 'abs_mean' or 'relu_mean'", "'" + r + "'");
}

nb::dict config_dict(const models::mamba_config& c) {
  nb::dict d;
  d["state_size"] = c.state_size;
  d["intermediate_size"] = c.intermediate_size;
  d["conv_kernel"] = c.conv_kernel;
  d["time_step_rank"] = c.time_step_rank;
  d["bc_dt_norm"] = c.bc_dt_norm;
  if (c.bc_dt_norm) d["mixer_rms_eps"] = c.mixer_rms_eps;
  return d;
}
nb::dict config_dict(const models::mamba2_config& c) {
  nb::dict d;
  d["num_heads"] = c.num_heads;
  d["head_dim"] = c.head_dim;
  d["state_size"] = c.state_size;
  d["n_groups"] = c.n_groups;
  d["conv_kernel"] = c.conv_kernel;
  d["chunk_size"] = c.chunk_size;
  d["d_mlp"] = c.d_mlp;
  d["norm_group_size"] = c.norm_group_size;
  d["dt_min"] = c.dt_min;
  d["dt_max"] = c.dt_max;
  return d;
}

// The gradient_options of Model.gradients and VisionModel.gradients: rule
// 'gradient' or 'lrp', and the signals (default the embedding and the residual stream).
models::gradient_options gradient_request(std::string_view where, const std::string& rule,
                                          const std::optional<std::vector<std::string>>& signals) {
  if (rule != "gradient" && rule != "lrp") fail(where, "rule", "'gradient' or 'lrp'", "'" + rule + "'");
  models::gradient_options options{.rule = rule == "lrp" ? models::propagation::lrp : models::propagation::gradient,
                                   .embedding = false};
  for (const auto& name : signals.value_or(std::vector<std::string>{"embedding", "residual"})) {
    bool* flag = name == "embedding" ? &options.embedding : name == "residual" ? &options.residual
                 : name == "u"       ? &options.u         : name == "delta"    ? &options.delta
                 : name == "b"       ? &options.b         : name == "c"        ? &options.c
                 : name == "ssm_out" ? &options.ssm_out   : nullptr;
    if (!flag)
      fail(where, "signals", "names among 'embedding', 'residual', 'u', 'delta', 'b', 'c', 'ssm_out'", "'" + name + "'");
    *flag = true;
  }
  return options;
}

// {'position', 'token', 'value', 'embedding', 'layers': [{signal: array}]} of `fw` arrays.
template <class T>
nb::dict gradients_dict(const gradients_data<T>& g, framework fw) {
  nb::dict out;
  out["position"] = g.target.position;
  out["token"] = g.target.token;
  out["value"] = g.value;
  if (g.embedding) out["embedding"] = to_python(g.embedding, fw);
  nb::list layers;
  for (const auto& layer : g.layers) {
    nb::dict d;
    for (const auto& [name, a] : layer) d[nb::str(name.c_str())] = to_python(a, fw);
    layers.append(d);
  }
  out["layers"] = layers;
  return out;
}

// Refuses a model on CUDA device `device` that cannot go there (no usable
// device, or float64 weights), naming `device` in `where`.
void check_device(std::string_view where, int device, bool float32) {
  if (const std::string why = cuda_unavailable(device); !why.empty()) fail(where, "device", "a usable CUDA device", why);
  if (!float32)
    fail(where, "device", "'cpu' for a float64 model (the CUDA backend computes in float32: load with dtype='float32')",
         "'cuda:" + std::to_string(device) + "'");
}

std::string device_name(int device) { return device < 0 ? "cpu" : "cuda:" + std::to_string(device); }

// Host values as a result on `device`: an array of fw on the host, a CUDA tensor on the GPU.
template <class T>
nb::object values_on(int device, const std::vector<T>& v, std::vector<std::size_t> shape, framework fw) {
#ifdef MIXLENS_PYTHON_CUDA
  if constexpr (std::is_same_v<T, float>)
    if (device >= 0) return to_python(cuda::to_device(std::span<const float>(v), std::move(shape), device), fw);
#endif
  return copy_output(v.data(), std::move(shape), fw);
}

// Model.attention's rows: None (whole maps), 'last', a comma-separated str as
// --rows takes it, an int or a sequence of ints (and 'last'); resolved by
// models::resolve_rows, whose errors name `rows`.
[[nodiscard]] std::vector<index_t> row_positions(nb::handle rows, index_t L,
                                                std::string_view where = "mixlens.Model.attention", bool vision = false,
                                                index_t cls = -1) {
  if (is_none(rows)) return {};
  std::string text;
  if (nb::isinstance<nb::str>(rows)) {
    text = nb::cast<std::string>(rows);
  } else if (nb::isinstance<nb::int_>(rows)) {
    text = str_of(rows);
  } else {
    if (!nb::isinstance<nb::sequence>(rows))
      fail(where, "rows", "None, 'last', a position or a sequence of positions", python_type(rows));
    bool first = true;
    for (nb::handle item : nb::cast<nb::sequence>(rows)) {
      if (!nb::isinstance<nb::str>(item) && !nb::isinstance<nb::int_>(item))
        fail(where, "rows", "positions (int) or 'last'", python_type(item));
      text += (first ? "" : ",") + str_of(item);
      first = false;
    }
  }
  return models::resolve_rows(text, L, vision, cls, std::string(where) + ": rows");
}

// The analysed layers (default all; sorted, distinct, in range) and those whose
// matrices are returned (alpha: True for all, False for none, or a list).
[[nodiscard]] std::pair<std::vector<index_t>, std::vector<index_t>> layer_selection(
    std::string_view where, index_t layer_count, std::optional<std::vector<index_t>> layers_arg, nb::handle alpha_arg) {
  std::vector<index_t> layers;
  if (!layers_arg) {
    for (index_t k = 0; k < layer_count; ++k) layers.push_back(k);
  } else {
    for (index_t k : *layers_arg)
      if (k < 0 || k >= layer_count)
        mixlens::detail::fail(where, "layers", "layer indices in [0, " + std::to_string(layer_count) + ")", k);
    layers = *layers_arg;
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  }
  std::vector<index_t> save;
  if (nb::isinstance<nb::bool_>(alpha_arg)) {
    if (nb::cast<bool>(alpha_arg)) save = layers;
  } else {
    std::vector<index_t> wanted;
    if (!nb::try_cast(alpha_arg, wanted))
      fail(where, "alpha", "True, False or a list of layer indices", python_type(alpha_arg));
    for (index_t k : wanted)
      if (!contains(layers, k)) mixlens::detail::fail(where, "alpha", "layers among the analysed ones (layers)", k);
    save = wanted;
  }
  return {layers, save};
}

// An Attention of `fw` arrays (CUDA tensors for results on a GPU).
template <class T>
[[nodiscard]] attention_result to_result(const attention_data<T>& data, const std::vector<index_t>& layers,
                                                const std::string& form_name, framework fw) {
  attention_result r;
  r.layers = layers;
  r.form = form_name;
  r.raw_range = "tensor";
  r.rows = data.rows.empty() ? nb::none() : nb::object(nb::cast(data.rows));
  r.logits = to_python(data.logits, fw);
  r.raw = to_python(data.raw, fw);
  r.rollout = to_python(data.rollout, fw);
  for (const auto& [k, map] : data.maps) r.maps[nb::int_(k)] = to_python(map, fw);
  for (const auto& [k, alpha] : data.alpha) r.alpha[nb::int_(k)] = to_python(alpha, fw);
  return r;
}

#ifdef MIXLENS_PYTHON_CUDA
using lm_on_device = cuda::model;
using vim_on_device = cuda::vision_model;
#else
struct lm_on_device;
struct vim_on_device;
#endif

// What Model and VisionModel share: the host model (shared with the copies
// .to makes), its folder, and where it computes: −1 the host, else the CUDA
// device its weights were uploaded to (float32 only).
template <class AnyModel, class OnDevice>
class placed_model {
 public:
  using any_model = AnyModel;

  placed_model(std::shared_ptr<const AnyModel> m, std::filesystem::path path, int device, std::string_view where)
      : model_(std::move(m)), path_(std::move(path)), device_(device) {
    if (device_ < 0) return;
    check_device(where, device_, model_->index() == 0);
#ifdef MIXLENS_PYTHON_CUDA
    nb::gil_scoped_release release;
    gpu_ = cuda::upload(std::get<0>(*model_), device_);
#endif
  }

  [[nodiscard]] std::string dtype() const { return model_->index() == 0 ? "float32" : "float64"; }
  [[nodiscard]] std::string device_name() const { return python::device_name(device_); }
  [[nodiscard]] bool on_cuda() const { return device_ >= 0; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 protected:
  std::shared_ptr<const AnyModel> model_;
  std::filesystem::path path_;
  int device_ = -1;
  std::shared_ptr<const OnDevice> gpu_;  // the weights on device_ (null on the host)
};

class py_model
    : public placed_model<std::variant<models::language_model<float>, models::language_model<double>>, lm_on_device> {
 public:
  py_model(std::shared_ptr<const any_model> m, std::filesystem::path path, int device,
           std::string_view where = "mixlens.Model.to")
      : placed_model(std::move(m), std::move(path), device, where) {}

  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit([&](const auto& lm) -> decltype(auto) { return std::visit(f, lm); }, *model_);
  }

  [[nodiscard]] std::unique_ptr<py_model> to(nb::handle device) const {
    return std::make_unique<py_model>(model_, path_, device_index("mixlens.Model.to", device));
  }

  [[nodiscard]] std::string family() const {
    return visit([](const auto& m) { return std::string(m.config.family()); });
  }
  [[nodiscard]] index_t num_layers() const { return visit([](const auto& m) { return m.num_layers(); }); }
  [[nodiscard]] index_t vocab_size() const { return visit([](const auto& m) { return m.vocab_size(); }); }
  [[nodiscard]] index_t parameter_count() const { return visit([](const auto& m) { return m.parameter_count(); }); }
  [[nodiscard]] std::vector<std::string> unused_tensors() const {
    return visit([](const auto& m) { return m.unused_tensors; });
  }
  [[nodiscard]] nb::dict config() const {
    return visit([&](const auto& m) {
      const auto& c = m.config;
      nb::dict d = config_dict(c);
      d["family"] = std::string(c.family());
      d["layout"] = c.naming == models::mamba_naming::state_spaces ? "state-spaces" : "Hugging Face";
      d["vocab_size"] = c.vocab_size;
      d["hidden_size"] = c.hidden_size;
      d["num_layers"] = c.num_layers;
      d["norm_eps"] = c.norm_eps;
      d["use_bias"] = c.use_bias;
      d["use_conv_bias"] = c.use_conv_bias;
      d["tie_embeddings"] = c.tie_embeddings;
      return d;
    });
  }

  [[nodiscard]] nb::object forward(nb::handle tokens) const {
    const auto ids = token_ids(tokens, "mixlens.Model.forward");
    const framework fw = framework_of(tokens);
    return visit([&](const auto& m) -> nb::object {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
#ifdef MIXLENS_PYTHON_CUDA
      if (gpu_) {
        result_array<float> logits;
        {
          nb::gil_scoped_release release;
          logits = cuda::forward(*gpu_, std::span<const index_t>(ids));
        }
        return to_python(logits, fw);
      }
#endif
      const auto L = ids.size(), V = static_cast<std::size_t>(m.vocab_size());
      return make_output<T>({L, V}, fw, [&](T* out) {
        const auto logits = models::mamba_forward(m, std::span<const index_t>(ids));
        std::copy_n(logits.data(), logits.size(), out);
      });
    });
  }

  [[nodiscard]] attention_result attention(nb::handle tokens, std::optional<std::vector<index_t>> layers_arg,
                                           const std::string& form_name, nb::handle alpha_arg,
                                           const std::string& reduction_name, nb::handle rows_arg,
                                           const std::string& raw_range) const {
    constexpr std::string_view where = "mixlens.Model.attention";
    const auto ids = token_ids(tokens, where);
    const framework fw = framework_of(tokens);
    const attention_form form = form_of(form_name);
    const channel_reduction reduction = reduction_of(reduction_name);
    const auto [layers, save] = layer_selection(where, num_layers(), layers_arg, alpha_arg);
    if (raw_range != "tensor" && raw_range != "rows") fail(where, "raw_range", "'tensor' or 'rows'", "'" + raw_range + "'");
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      row_selection rows{row_positions(rows_arg, static_cast<index_t>(ids.size())), raw_range == "tensor"};
      attention_data<T> data;
      {
        nb::gil_scoped_release release;
#ifdef MIXLENS_PYTHON_CUDA
        if constexpr (std::is_same_v<T, float>)
          if (gpu_) data = cuda::attention(*gpu_, std::span<const index_t>(ids), layers, save, form, reduction, std::move(rows));
#endif
        if (!data.logits) {
          const auto weights = models::host_weights(m);
          data = run_attention(host_backend<T>{}, weights.view(), -1, std::span<const index_t>(ids), layers, save, form,
                               reduction, std::move(rows));
        }
      }
      auto r = to_result(data, layers, form_name, fw);
      r.raw_range = data.rows.empty() ? "tensor" : raw_range;
      return r;
    });
  }

  [[nodiscard]] attribution_output attribute(nb::handle tokens, const std::string& method_name,
                                             std::optional<index_t> target_position, std::optional<index_t> target_token,
                                             index_t start_layer, bool matrix, bool attn_grad_without_d,
                                             std::uint64_t seed) const {
    constexpr std::string_view where = "mixlens.Model.attribute";
    const auto ids = token_ids(tokens, where);
    const framework fw = framework_of(tokens);
    const auto [method, options] =
        attribution_request(where, method_name, start_layer, num_layers(), matrix, attn_grad_without_d, seed);
    const models::gradient_target target{target_position.value_or(-1), target_token.value_or(-1)};
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      models::attribution_result r;
      {
        nb::gil_scoped_release release;
#ifdef MIXLENS_PYTHON_CUDA
        if (gpu_) r = cuda::attribute(*gpu_, std::span<const index_t>(ids), method, target, options);
        else
#endif
          r = models::attribute(m, std::span<const index_t>(ids), method, target, options);
      }
      const auto L = ids.size();
      const std::vector<T> scores(r.scores.begin(), r.scores.end()), full(r.matrix.begin(), r.matrix.end());
      return attribution_output{method_name, r.target.position, r.target.token, r.value,
                                values_on(device_, scores, {L}, fw),
                                full.empty() ? nb::none() : values_on(device_, full, {L, L}, fw)};
    });
  }

  [[nodiscard]] nb::dict gradients(nb::handle tokens, std::optional<index_t> target_position,
                                   std::optional<index_t> target_token, const std::string& rule,
                                   std::optional<std::vector<std::string>> signals) const {
    constexpr std::string_view where = "mixlens.Model.gradients";
    const auto ids = token_ids(tokens, where);
    const framework fw = framework_of(tokens);
    const models::gradient_options options = gradient_request(where, rule, signals);
    const models::gradient_target target{target_position.value_or(-1), target_token.value_or(-1)};
    const name_map names{{"target.position", "target_position"}, {"target.token", "target_token"}};
    return with_names(names, [&] { return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      gradients_data<T> g;
      {
        nb::gil_scoped_release release;
        bool on_device = false;
#ifdef MIXLENS_PYTHON_CUDA
        if constexpr (std::is_same_v<T, float>)
          if (gpu_) g = cuda::gradients(*gpu_, std::span<const index_t>(ids), target, options), on_device = true;
#endif
        if (!on_device) {
          const auto weights = models::host_weights(m);
          g = run_gradients(host_backend<T>{}, weights.view(), -1, std::span<const index_t>(ids), target, options);
        }
      }
      return gradients_dict(g, fw);
    }); });
  }

  [[nodiscard]] nb::dict faithfulness(nb::handle tokens, std::optional<std::vector<std::string>> method_names,
                                      index_t steps, const std::string& mode, index_t replace_token,
                                      std::optional<index_t> target_position, std::optional<index_t> target_token,
                                      index_t random_draws, std::uint64_t seed, index_t start_layer,
                                      bool attn_grad_without_d, int threads, index_t batch_tokens, bool tf32) const {
    constexpr std::string_view where = "mixlens.Model.faithfulness";
    const auto ids = token_ids(tokens, where);
    if (threads < 1) mixlens::detail::fail(where, "threads", "at least 1", threads);
    if (batch_tokens < static_cast<index_t>(ids.size()))
      mixlens::detail::fail(where, "batch_tokens", "at least the sequence's length " + std::to_string(ids.size()),
                            batch_tokens);
    if (tf32 && !on_cuda()) fail(where, "tf32", "False on the CPU (TF32 products are the GPU's)", "True");
    std::vector<models::attribution_method> methods;
    if (!method_names)
      for (std::size_t i = 0; i < models::attribution_method_count; ++i)
        methods.push_back(static_cast<models::attribution_method>(i));
    else
      for (const auto& n : *method_names)
        if (const auto m = method_of(where, n); !contains_method(methods, m)) methods.push_back(m);
    if (methods.empty()) fail(where, "methods", "at least one method", "an empty list");
    if (steps < 1) mixlens::detail::fail(where, "steps", "at least 1", steps);
    if (mode != "replace" && mode != "remove") fail(where, "mode", "'replace' or 'remove'", "'" + mode + "'");
    if (random_draws < 1) mixlens::detail::fail(where, "random_draws", "at least 1", random_draws);
    if (replace_token < 0 || replace_token >= vocab_size())
      mixlens::detail::fail(where, "replace_token", "a token in [0, " + std::to_string(vocab_size()) + ")", replace_token);
    if (start_layer < 0 || start_layer >= num_layers())
      mixlens::detail::fail(where, "start_layer", "a layer in [0, " + std::to_string(num_layers()) + ")", start_layer);
    if (attn_grad_without_d && !contains_method(methods, models::attribution_method::attn_grad))
      fail(where, "attn_grad_without_d", "False unless methods include 'attn-grad'", "True");
    const models::faithfulness_run_options run{
        .curves = {.steps = steps,
                   .mode = mode == "remove" ? analysis::perturbation_mode::remove : analysis::perturbation_mode::replace,
                   .replacement_token = replace_token},
        .random_draws = random_draws,
        .attribute = {.mamba_attr = {.start_layer = start_layer, .unified_skip = !attn_grad_without_d}, .seed = seed}};
    const models::gradient_target target{target_position.value_or(-1), target_token.value_or(-1)};
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      std::vector<models::method_faithfulness> results;
      {
        nb::gil_scoped_release release;
#ifdef MIXLENS_PYTHON_CUDA
        if (gpu_)
          results = cuda::faithfulness(*gpu_, std::span<const index_t>(ids),
                                       std::span<const models::attribution_method>(methods), target, run, batch_tokens, tf32);
#endif
        if (results.empty()) {
          const auto weights = models::host_weights(m);
          results = models::faithfulness_of_methods(
              host_backend<T>{}, weights.view(), std::span<const index_t>(ids),
              std::span<const models::attribution_method>(methods), target, run,
              [&](std::span<const analysis::perturbed_sequence> batch, index_t token) {
                return models::target_evaluator(m, token, threads)(batch);
              });
        }
      }
      nb::dict out, per_method;
      out["position"] = results.front().attribution.target.position;
      out["token"] = results.front().attribution.target.token;
      out["value"] = results.front().attribution.value;
      for (const auto& r : results) {
        nb::dict d = curves_dict(r.result);
        if (r.method != models::attribution_method::random)
          d["scores"] = copy_output(r.attribution.scores.data(), {r.attribution.scores.size()}, framework::numpy);
        per_method[nb::str(std::string(models::to_string(r.method)).c_str())] = d;
      }
      out["methods"] = per_method;
      return out;
    });
  }

  // mixlens.hf's entry: the maps from what a live model's forward handed to
  // its hooks (mixlens/hf.py arranges them): per layer of `layers` its in_proj
  // output (in_proj_rows × L) and check signal (Mamba: u, D × L; Mamba-2:
  // SSD(u) + D·u, H·P × L), and the model's logits (L × V). Returns the
  // Attention and per layer the check signal's relative deviation from the
  // library's.
  [[nodiscard]] std::pair<attention_result, std::vector<double>> attention_from_capture(
      const std::vector<index_t>& layers_arg, const std::vector<nb::object>& projections,
      const std::vector<nb::object>& checks, nb::handle logits_arg, const std::string& form_name, nb::handle alpha_arg,
      const std::string& reduction_name) const {
    constexpr std::string_view where = "mixlens.hf.attention";
    const attention_form form = form_of(form_name);
    const channel_reduction reduction = reduction_of(reduction_name);
    const auto [layers, save] = layer_selection(where, num_layers(), layers_arg, alpha_arg);
    if (projections.size() != layers_arg.size() || checks.size() != layers_arg.size() || layers != layers_arg)
      mixlens::detail::fail(where, "projections",
                            "one projection and one check per layer, layers ascending and distinct (" +
                                std::to_string(layers_arg.size()) + " layers)",
                            std::to_string(projections.size()) + " projections, " + std::to_string(checks.size()) +
                                " checks");
    return visit([&](const auto& m) {
      using M = std::remove_cvref_t<decltype(m)>;
      using T = typename M::value_type;
      index_t rows = 0, check_rows = 0;
      if constexpr (std::is_same_v<M, models::mamba_model<T>>)
        rows = 2 * m.config.intermediate_size, check_rows = m.config.intermediate_size;
      else
        rows = m.config.in_proj_rows(), check_rows = m.config.ssm_channels();
      // Every array is used in place: host arrays on the host, CUDA tensors of the model's device on the GPU.
      std::vector<any_array> keep;
      const auto matrix_of = [&](nb::handle h, const std::string& name, index_t want_rows, index_t want_cols,
                                 std::string_view layout) -> const T* {
        const auto shape_is = [&](const auto& arr) {
          check_ndim(where, name, arr, 2, layout);
          if ((want_rows >= 0 && static_cast<index_t>(arr.shape(0)) != want_rows) ||
              (want_cols >= 0 && static_cast<index_t>(arr.shape(1)) != want_cols))
            fail(where, name,
                 "shape (" + (want_rows >= 0 ? std::to_string(want_rows) : std::string("L")) + ", " +
                     (want_cols >= 0 ? std::to_string(want_cols) : std::string("L")) + ")",
                 "shape (" + std::to_string(arr.shape(0)) + ", " + std::to_string(arr.shape(1)) + ")");
          keep.emplace_back(arr);
        };
        if (on_cuda()) {
          nb::ndarray<const T, nb::c_contig, nb::device::cuda> d;
          if (!nb::try_cast(h, d, false) || d.device_id() != device_)
            fail(where, name, "a C-contiguous " + std::string(dtype_name<T>()) + " CUDA tensor on " + device_name(),
                 python_type(h) + (is_none(h) ? "" : " on " + str_of(h.attr("device"))));
          shape_is(d);
          return d.data();
        }
        const auto a = get<T>(h, where, name);
        shape_is(a);
        return a.data();
      };
      const T* logits = matrix_of(logits_arg, "logits", -1, m.vocab_size(), "L x V");
      const index_t L = static_cast<index_t>(keep.back().shape(0)), V = m.vocab_size();
      std::vector<captured_layer<T>> captured;
      for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::string name = "projections[" + std::to_string(i) + "]", check_name = "checks[" + std::to_string(i) + "]";
        captured.push_back({layers[i], matrix_of(projections[i], name, rows, L, "in_proj rows x L"),
                            matrix_of(checks[i], check_name, check_rows, L, "channels x L")});
      }
      std::vector<double> deviation;
      attention_data<T> data;
      {
        nb::gil_scoped_release release;
#ifdef MIXLENS_PYTHON_CUDA
        if constexpr (std::is_same_v<T, float>)
          if (gpu_)
            data = cuda::attention_from_projections(*gpu_, L, captured, layers, save, form, reduction, logits, deviation);
#endif
        if (!data.logits) {
          const auto weights = models::host_weights(m);
          data = run_attention_from_projections(host_backend<T>{}, weights.view(), -1, L, captured, layers, save, form,
                                                reduction, std::vector<T>(logits, logits + L * V), deviation);
        }
      }
      return std::pair{to_result(data, layers, form_name, framework_of(logits_arg)), deviation};
    });
  }

 private:
  [[nodiscard]] static bool contains_method(const std::vector<models::attribution_method>& v, models::attribution_method m) {
    return std::find(v.begin(), v.end(), m) != v.end();
  }

};

// A Vision Mamba classifier (models/vim_model.hpp) loaded by mixlens.load, on
// the host or a GPU: its forward pass, hidden attention and attributions, as
// mixlens-attn --image computes them.
class py_vision_model
    : public placed_model<std::variant<models::vim_model<float>, models::vim_model<double>>, vim_on_device> {
 public:
  py_vision_model(std::shared_ptr<const any_model> m, std::filesystem::path path, int device,
                  std::string_view where = "mixlens.VisionModel.to")
      : placed_model(std::move(m), std::move(path), device, where) {}

  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(f, *model_);
  }
  [[nodiscard]] std::unique_ptr<py_vision_model> to(nb::handle device) const {
    return std::make_unique<py_vision_model>(model_, path_, device_index("mixlens.VisionModel.to", device));
  }
  [[nodiscard]] const models::vim_config& cfg() const {
    return visit([](const auto& m) -> const models::vim_config& { return m.config; });
  }
  [[nodiscard]] index_t num_layers() const { return visit([](const auto& m) { return m.num_layers(); }); }
  [[nodiscard]] index_t parameter_count() const { return visit([](const auto& m) { return m.parameter_count(); }); }
  [[nodiscard]] std::vector<std::string> unused_tensors() const {
    return visit([](const auto& m) { return m.unused_tensors; });
  }
  [[nodiscard]] std::optional<index_t> cls_index() const {
    return cfg().cls_index() >= 0 ? std::optional<index_t>(cfg().cls_index()) : std::nullopt;
  }

  [[nodiscard]] nb::dict config() const {
    const auto& c = cfg();
    nb::dict d;
    d["family"] = "Vision Mamba";
    d["image_size"] = std::make_pair(c.image_height, c.image_width);
    d["channels"] = c.channels;
    d["patch_size"] = c.patch_size;
    d["stride"] = c.stride;
    d["grid"] = std::make_pair(c.grid_height(), c.grid_width());
    d["hidden_size"] = c.hidden_size;
    d["intermediate_size"] = c.intermediate_size;
    d["state_size"] = c.state_size;
    d["num_layers"] = c.num_layers;
    d["num_classes"] = c.num_classes;
    d["sequence_length"] = c.sequence_length();
    d["cls"] = std::string(models::to_string(c.cls));
    d["divide_out"] = c.divide_out;
    return d;
  }

  [[nodiscard]] nb::object forward(nb::handle image, bool normalize) const {
    return visit([&](const auto& m) -> nb::object {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      const auto input = image_of<T>(image, normalize, "mixlens.VisionModel.forward");
#ifdef MIXLENS_PYTHON_CUDA
      if constexpr (std::is_same_v<T, float>)
        if (gpu_) {
          result_array<float> logits;
          {
            nb::gil_scoped_release release;
            logits = cuda::forward(*gpu_, input.view());
          }
          return to_python(logits, framework::torch);
        }
#endif
      return make_output<T>({static_cast<std::size_t>(cfg().num_classes)}, framework_of(image), [&](T* out) {
        const auto weights = models::host_weights(m);
        const auto logits = models::vim_forward(host_backend<T>{}, weights.view(), input.view(), [](const auto&) {});
        std::copy(logits.begin(), logits.end(), out);
      });
    });
  }

  [[nodiscard]] attention_result attention(nb::handle image, std::optional<std::vector<index_t>> layers_arg,
                                           const std::string& form_name, nb::handle alpha_arg,
                                           const std::string& reduction_name, nb::handle rows_arg,
                                           const std::string& raw_range, bool normalize) const {
    constexpr std::string_view where = "mixlens.VisionModel.attention";
    const attention_form form = form_of(form_name);
    const channel_reduction reduction = reduction_of(reduction_name);
    const auto [layers, save] = layer_selection(where, num_layers(), layers_arg, alpha_arg);
    if (raw_range != "tensor" && raw_range != "rows") fail(where, "raw_range", "'tensor' or 'rows'", "'" + raw_range + "'");
    const auto& c = cfg();
    row_selection rows{row_positions(rows_arg, c.sequence_length(), where, true, c.cls_index()),
                       raw_range == "tensor"};
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      const auto input = image_of<T>(image, normalize, where);
      attention_data<T> data;
      {
        nb::gil_scoped_release release;
#ifdef MIXLENS_PYTHON_CUDA
        if constexpr (std::is_same_v<T, float>)
          if (gpu_) data = cuda::attention(*gpu_, input.view(), layers, save, form, reduction, std::move(rows));
#endif
        if (!data.logits) {
          const auto weights = models::host_weights(m);
          data = run_vim_attention(host_backend<T>{}, weights.view(), -1, input.view(), layers, save, form, reduction,
                                   std::move(rows));
        }
      }
      auto r = to_result(data, layers, form_name, framework_of(image));
      r.raw_range = data.rows.empty() ? "tensor" : raw_range;
      return r;
    });
  }

  [[nodiscard]] attribution_output attribute(nb::handle image, const std::string& method_name,
                                             std::optional<index_t> target_class, index_t start_layer, bool matrix,
                                             bool attn_grad_without_d, std::uint64_t seed, bool normalize) const {
    constexpr std::string_view where = "mixlens.VisionModel.attribute";
    const auto [method, options] =
        attribution_request(where, method_name, start_layer, num_layers(), matrix, attn_grad_without_d, seed);
    const index_t classes = cfg().num_classes;
    if (target_class && (*target_class < 0 || *target_class >= classes))
      mixlens::detail::fail(where, "target_class", "a class in [0, " + std::to_string(classes) + ") or None", *target_class);
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      const auto input = image_of<T>(image, normalize, where);
      models::attribution_result r;
      {
        nb::gil_scoped_release release;
        const tensor_view<const T, 3> iv(input.view());
        bool on_device = false;
#ifdef MIXLENS_PYTHON_CUDA
        if constexpr (std::is_same_v<T, float>)
          if (gpu_) r = cuda::attribute(*gpu_, iv, method, target_class.value_or(-1), options), on_device = true;
#endif
        if (!on_device) r = models::attribute(m, iv, method, target_class.value_or(-1), options);
      }
      const auto L = static_cast<std::size_t>(cfg().sequence_length());
      const framework fw = framework_of(image);
      const std::vector<T> scores(r.scores.begin(), r.scores.end()), full(r.matrix.begin(), r.matrix.end());
      return attribution_output{method_name, r.target.position, r.target.token, r.value,
                                values_on(device_, scores, {L}, fw),
                                full.empty() ? nb::none() : values_on(device_, full, {L, L}, fw)};
    });
  }

  [[nodiscard]] nb::dict gradients(nb::handle image, std::optional<index_t> target_class, const std::string& rule,
                                   const std::optional<std::vector<std::string>>& signals, bool normalize) const {
    constexpr std::string_view where = "mixlens.VisionModel.gradients";
    const models::gradient_options options = gradient_request(where, rule, signals);
    const index_t classes = cfg().num_classes;
    if (target_class && (*target_class < 0 || *target_class >= classes))
      mixlens::detail::fail(where, "target_class", "a class in [0, " + std::to_string(classes) + ") or None", *target_class);
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      const auto input = image_of<T>(image, normalize, where);
      gradients_data<T> g;
      {
        nb::gil_scoped_release release;
        const tensor_view<const T, 3> iv(input.view());
        bool on_device = false;
#ifdef MIXLENS_PYTHON_CUDA
        if constexpr (std::is_same_v<T, float>)
          if (gpu_) g = cuda::gradients(*gpu_, iv, target_class.value_or(-1), options), on_device = true;
#endif
        if (!on_device) {
          const auto weights = models::host_weights(m);
          g = run_vim_gradients(host_backend<T>{}, weights.view(), -1, iv, target_class.value_or(-1), options);
        }
      }
      return gradients_dict(g, framework_of(image));
    });
  }

 private:
  // The model input from an (height × width × channels) array: as given, or
  // ImageNet-normalized first (normalize: pixels in [0, 1]).
  template <class T>
  [[nodiscard]] tensor<T, 3> image_of(nb::handle image, bool normalize, std::string_view where) const {
    // The forward pass cuts the image into patches on the host: a CUDA tensor is copied there.
    const bool on_gpu = is_torch(image) && nb::hasattr(image, "device") && str_of(image.attr("device")) != "cpu";
    const auto a = get<T>(on_gpu ? nb::object(image.attr("cpu")()) : nb::borrow(image), where, "image");
    check_ndim(where, "image", a, 3, "height x width x channels");
    const auto& c = cfg();
    if (static_cast<index_t>(a.shape(0)) != c.image_height || static_cast<index_t>(a.shape(1)) != c.image_width ||
        static_cast<index_t>(a.shape(2)) != c.channels)
      fail(where, "image",
           "shape (" + std::to_string(c.image_height) + ", " + std::to_string(c.image_width) + ", " +
               std::to_string(c.channels) + ") (the model's image_size and channels)",
           "shape (" + std::to_string(a.shape(0)) + ", " + std::to_string(a.shape(1)) + ", " + std::to_string(a.shape(2)) + ")");
    tensor<T, 3> t(c.image_height, c.image_width, c.channels);
    std::copy(a.data(), a.data() + a.size(), t.data());
    if (normalize) models::imagenet_normalize(t);
    return t;
  }

};

// mixlens.read_image: a .png as pixels / 255 (values in [0, 1]) or a .npy as stored.
nb::object read_image(const std::filesystem::path& file) {
  auto image = models::read_image<float>(file);
  return copy_output(image.data(), {static_cast<std::size_t>(image.extent(0)), static_cast<std::size_t>(image.extent(1)),
                                    static_cast<std::size_t>(image.extent(2))},
                     framework::numpy);
}

nb::object load(const std::filesystem::path& path, nb::handle dtype, nb::handle device) {
  std::string name = "float32";
  if (!is_none(dtype)) {
    try {
      name = str_of(nb::module_::import_("numpy").attr("dtype")(dtype));
    } catch (const nb::python_error&) {
      name = str_of(dtype);
    }
  }
  if (name != "float32" && name != "float64") fail("mixlens.load", "dtype", "float32 or float64", name);
  const int where = device_index("mixlens.load", device);
  if (where >= 0 && name != "float32")
    fail("mixlens.load", "dtype", "float32 on CUDA (the CUDA backend computes in float32)", name);
  if (where >= 0)  // before the weights are read
    if (const std::string why = cuda_unavailable(where); !why.empty())
      fail("mixlens.load", "device", "a usable CUDA device", why);
  if (models::detect_family(models::detail::model_config_file(path, "mixlens.load: model")) == models::model_family::vim) {
    auto m = std::make_shared<py_vision_model::any_model>([&]() -> py_vision_model::any_model {
      nb::gil_scoped_release release;
      if (name == "float32") return models::load_vim<float>(path);
      return models::load_vim<double>(path);
    }());
    return nb::cast(std::make_unique<py_vision_model>(std::move(m), path, where, "mixlens.load"));
  }
  auto m = std::make_shared<py_model::any_model>([&]() -> py_model::any_model {
    nb::gil_scoped_release release;
    if (name == "float32") return models::load_language_model<float>(path);
    return models::load_language_model<double>(path);
  }());
  return nb::cast(std::make_unique<py_model>(std::move(m), path, where, "mixlens.load"));
}

}  // namespace

void bind_models(nb::module_& m) {
  nb::class_<attention_result>(m, "Attention",
                               "The hidden attention of a model on one token sequence, as mixlens-attn writes it.")
      .def_prop_ro("logits", [](const attention_result& r) { return r.logits; },
                   nb::sig("def logits(self) -> numpy.typing.NDArray[typing.Any]"), "Logits (L × V).")
      .def_ro("layers", &attention_result::layers, "The analysed layers, ascending.")
      .def_ro("form", &attention_result::form, "'paper' or 'unified'.")
      .def_prop_ro("rows", [](const attention_result& r) { return r.rows; },
                   nb::sig("def rows(self) -> list[int] | None"),
              "The selected rows (ascending positions; rows.json) when `rows` was given, else None: then every\n"
              "map holds only those rows (maps R × L, alpha D × R × L, raw R × L) and rollout is None.")
      .def_ro("raw_range", &attention_result::raw_range,
              "What raw attention is normalized by: 'tensor' (each layer's whole tensor, always without rows)\n"
              "or 'rows' (the selected rows' own range).")
      .def_prop_ro("alpha", [](const attention_result& r) { return r.alpha; },
                   nb::sig("def alpha(self) -> dict[int, numpy.typing.NDArray[typing.Any]]"),
              "Layer → its matrices (matrices × L × L; alpha_{k}.npy): per channel (Mamba; Mamba-2's unified\n"
              "form) or per head (Mamba-2's paper form); only the layers asked for with `alpha`.")
      .def_prop_ro("maps", [](const attention_result& r) { return r.maps; },
                   nb::sig("def maps(self) -> dict[int, numpy.typing.NDArray[typing.Any]]"), "Layer → the channel aggregate of its matrices (L × L; alpha_{k}.png).")
      .def_prop_ro("raw", [](const attention_result& r) { return r.raw; },
                   nb::sig("def raw(self) -> numpy.typing.NDArray[typing.Any] | None"),
              "Raw attention (L × L; raw.npy): each layer's map min–max normalized by its tensor's range,\n"
              "averaged over the analysed layers; None when no layer is analysed. With rows: those rows (R × L;\n"
              "raw_rows.npy, or raw_rows_rowrange.npy for raw_range='rows').")
      .def_prop_ro("rollout", [](const attention_result& r) { return r.rollout; },
                   nb::sig("def rollout(self) -> numpy.typing.NDArray[typing.Any] | None"),
              "Attention rollout (L × L; rollout.npy): rownorm(I + map_last) ⋯ rownorm(I + map_first);\n"
              "None when no layer is analysed, and with rows (every row needs every layer's whole map).")
      .def("__repr__", [](const attention_result& r) {
        return "<mixlens.Attention " + r.form + ", " + std::to_string(r.layers.size()) + " layer(s)>";
      });

  nb::class_<attribution_output>(m, "Attribution", "An explanation of one logit over the input positions (Model.attribute).")
      .def_ro("method", &attribution_output::method, "The method's name, as mixlens-attn --method spells it.")
      .def_ro("position", &attribution_output::position, "The target logit's position P.")
      .def_ro("token", &attribution_output::token, "The target logit's token T.")
      .def_ro("value", &attribution_output::value, "logits[P][T] of the unperturbed forward pass.")
      .def_prop_ro("scores", [](const attribution_output& a) { return a.scores; },
                   nb::sig("def scores(self) -> numpy.typing.NDArray[typing.Any]"),
                   "The explanation over the input positions (L; attribution.npy).")
      .def_prop_ro("matrix", [](const attribution_output& a) { return a.matrix; },
                   nb::sig("def matrix(self) -> numpy.typing.NDArray[typing.Any] | None"),
                   "The whole rollout (L × L; mamba_attr.npy / attn_grad.npy) with matrix=True, else None.")
      .def("__repr__", [](const attribution_output& a) {
        return "<mixlens.Attribution " + a.method + " of logits[" + std::to_string(a.position) + "][" +
               std::to_string(a.token) + "]>";
      });

  nb::class_<py_model>(m, "Model", "A Mamba, Falcon-Mamba or Mamba-2 language model loaded by mixlens.load.")
      .def_prop_ro("family", &py_model::family, "'Mamba', 'Falcon-Mamba' or 'Mamba-2'.")
      .def_prop_ro("dtype", &py_model::dtype, "'float32' or 'float64': weights and arithmetic.")
      .def_prop_ro("num_layers", &py_model::num_layers)
      .def_prop_ro("vocab_size", &py_model::vocab_size)
      .def_prop_ro("parameter_count", &py_model::parameter_count)
      .def_prop_ro("unused_tensors", &py_model::unused_tensors,
                   "Checkpoint tensors the model does not use (mixlens-attn warns about them).")
      .def_prop_ro("path", &py_model::path)
      .def_prop_ro("device", &py_model::device_name,
                   "'cpu', or 'cuda:N' when the weights live on that CUDA device: then forward, attention,\n"
                   "attribute and faithfulness run on the GPU and return torch CUDA tensors.")
      .def("to", &py_model::to, "device"_a,
           nb::sig("def to(self, device: str | typing.Any) -> Model"),
           "The same model on `device` ('cpu', 'cuda', 'cuda:N' or a torch.device): a new Model that shares\n"
           "the host weights (the CUDA backend uploads them once; float32 models only).")
      .def_prop_ro("config", &py_model::config, "The fields of config.json the model uses, as a dict.")
      .def("forward", &py_model::forward, "tokens"_a,
           nb::sig("def forward(self, tokens: numpy.typing.ArrayLike) -> numpy.typing.NDArray[typing.Any]"),
           "Logits (L × V) for token ids (1-D integer array, tensor or sequence).")
      .def("attention", &py_model::attention, "tokens"_a, "layers"_a = nb::none(), "form"_a = "paper",
           "alpha"_a = true, "reduction"_a = "mean", "rows"_a = nb::none(), "raw_range"_a = "tensor",
           nb::sig("def attention(self, tokens: numpy.typing.ArrayLike, layers: collections.abc.Sequence[int] | None = None, "
                   "form: str = 'paper', alpha: bool | collections.abc.Sequence[int] = True, "
                   "reduction: str = 'mean', rows: str | int | collections.abc.Sequence[int | str] | None = None, "
                   "raw_range: str = 'tensor') -> Attention"),
           "Runs the model on tokens and returns mixlens.Attention: the logits and, for each layer of\n"
           "`layers` (default all), its hidden attention in `form` — 'paper': S6's α per channel (Mamba-2:\n"
           "per head); 'unified': the whole block diag(g)(α + D)diag(σ)M_conv per channel — with the\n"
           "channel aggregate (`reduction`: 'mean' as mixlens-attn, 'abs_mean', 'relu_mean'), the raw\n"
           "attention and the rollout over those layers. `alpha`: True returns every analysed layer's\n"
           "matrices, False none, a list those layers'. `rows` ('last', positions, or a str as --rows takes it,\n"
           "'last,0,7'): only those rows of every map, matrix and the raw attention, straight from the signals\n"
           "(O(D·R·L·N) per layer, no L × L array) and no rollout; `raw_range` 'tensor' normalizes the raw rows\n"
           "by each layer's whole-tensor range (one pass over every entry: the time of the whole maps, not\n"
           "their memory), 'rows' by the rows' own range.")
      .def("attribute", &py_model::attribute, "tokens"_a, "method"_a, "target_position"_a = nb::none(),
           "target_token"_a = nb::none(), "start_layer"_a = 0, "matrix"_a = false, "attn_grad_without_d"_a = false,
           "seed"_a = 0,
           nb::sig("def attribute(self, tokens: numpy.typing.ArrayLike, method: str, target_position: int | None = None, "
                   "target_token: int | None = None, start_layer: int = 0, matrix: bool = False, "
                   "attn_grad_without_d: bool = False, seed: int = 0) -> Attribution"),
           "Explains the logit logits[P][T] over the input positions with `method` ('raw', 'rollout',\n"
           "'mamba-attr', 'grad-input', 'random', 'attn-grad' or 'lrp'; docs/attribution.md), as\n"
           "mixlens-attn --method does: P = target_position (None or negative: the last), T = target_token\n"
           "(None or negative: the argmax at P). start_layer: the first layer of mamba-attr's and attn-grad's\n"
           "rollout; matrix: also their whole rollout; attn_grad_without_d: attn-grad's unified matrices\n"
           "without D, as the authors' code; seed: the random scores'. On the host; returns Attribution\n"
           "with the scores in the caller's framework and the model's dtype.")
      .def("gradients", &py_model::gradients, "tokens"_a, "target_position"_a = nb::none(),
           "target_token"_a = nb::none(), "rule"_a = "gradient", "signals"_a = nb::none(),
           nb::sig("def gradients(self, tokens: numpy.typing.ArrayLike, target_position: int | None = None, "
                   "target_token: int | None = None, rule: str = 'gradient', "
                   "signals: collections.abc.Sequence[str] | None = None) -> dict[str, typing.Any]"),
           "The gradients of the logit logits[P][T] (P = target_position, None: the last; T = target_token,\n"
           "None: the argmax at P) with respect to the activations, by the library's backward pass\n"
           "(models::mamba_gradients; rule 'lrp': under MambaLRP's rules). signals (default 'embedding',\n"
           "'residual'): 'embedding' (L x H, the embedding output), and per layer 'residual' (L x H, the\n"
           "stream entering it; mixlens-attn's residual_grad_{k}.npy), 'u', 'delta', 'ssm_out' (rows x L)\n"
           "and 'b', 'c' (groups x N x L). Returns {'position', 'token', 'value', 'embedding', 'layers':\n"
           "[{signal: array} per layer]}, arrays in the caller's framework (CUDA tensors on the GPU).")
      .def("faithfulness", &py_model::faithfulness, "tokens"_a, "methods"_a = nb::none(), "steps"_a = 10,
           "mode"_a = "replace", "replace_token"_a = 0, "target_position"_a = nb::none(), "target_token"_a = nb::none(),
           "random_draws"_a = 10, "seed"_a = 0, "start_layer"_a = 0, "attn_grad_without_d"_a = false, "threads"_a = 1,
           "batch_tokens"_a = 65536, "tf32"_a = false,
           nb::sig("def faithfulness(self, tokens: numpy.typing.ArrayLike, methods: collections.abc.Sequence[str] | None = None, "
                   "steps: int = 10, mode: str = 'replace', replace_token: int = 0, target_position: int | None = None, "
                   "target_token: int | None = None, random_draws: int = 10, seed: int = 0, start_layer: int = 0, "
                   "attn_grad_without_d: bool = False, threads: int = 1, batch_tokens: int = 65536, "
                   "tf32: bool = False) -> dict[str, typing.Any]"),
           "The perturbation tests of mixlens-eval on one sequence: the target resolved once (as attribute),\n"
           "every method of `methods` (default all) scored for it, its positions perturbed most relevant first\n"
           "(MoRF) and least relevant first (LeRF) in `steps` steps (mode 'replace' with replace_token, or\n"
           "'remove'), and the target logit and probability read after each. Returns {'position', 'token',\n"
           "'value', 'methods': {name: {'morf': {'logit', 'probability', 'auc_logit', 'auc_probability'},\n"
           "'lerf': ..., 'delta_logit', 'delta_probability', 'scores'}}} (float64 arrays; 'random' averages\n"
           "random_draws draws and has no scores). threads: perturbed sequences run side by side on the CPU.\n"
           "On CUDA (mixlens-eval --device cuda) the perturbed sequences run in batches of at most batch_tokens\n"
           "token ids (128 sequences); tf32: TF32 products for them (faster, less exact; off by default).")
      .def("_attention_from_capture", &py_model::attention_from_capture, "layers"_a, "projections"_a, "checks"_a,
           "logits"_a, "form"_a, "alpha"_a, "reduction"_a,
           "mixlens.hf's entry (use mixlens.hf.attention): the maps from a live model's captured in_proj outputs.")
      .def("__repr__", [](const py_model& p) {
        return "<mixlens.Model " + p.family() + " '" + p.path().string() + "': " + std::to_string(p.num_layers()) +
               " layers, vocab " + std::to_string(p.vocab_size()) + ", " + p.dtype() + ">";
      });

  nb::class_<py_vision_model>(m, "VisionModel",
                              "A Vision Mamba classifier loaded by mixlens.load (tools/convert_vim.py's folder).")
      .def_prop_ro("family", [](const py_vision_model&) { return std::string("Vision Mamba"); })
      .def_prop_ro("dtype", &py_vision_model::dtype, "'float32' or 'float64': weights and arithmetic.")
      .def_prop_ro("device", &py_vision_model::device_name,
                   "'cpu', or 'cuda:N': then forward, attention and attribute run on that GPU (the image is cut\n"
                   "into patches on the host) and return torch CUDA tensors.")
      .def("to", &py_vision_model::to, "device"_a, nb::sig("def to(self, device: str | typing.Any) -> VisionModel"),
           "The same classifier on `device` ('cpu', 'cuda', 'cuda:N' or a torch.device), sharing the host weights.")
      .def_prop_ro("num_layers", &py_vision_model::num_layers)
      .def_prop_ro("num_classes", [](const py_vision_model& v) { return v.cfg().num_classes; })
      .def_prop_ro("sequence_length", [](const py_vision_model& v) { return v.cfg().sequence_length(); },
                   "L: the patches and the CLS token, if any.")
      .def_prop_ro("cls_index", &py_vision_model::cls_index,
                   "The CLS token's position, or None for a model that pools the sequence (mean).")
      .def_prop_ro("image_shape",
                   [](const py_vision_model& v) {
                     return std::make_tuple(v.cfg().image_height, v.cfg().image_width, v.cfg().channels);
                   },
                   "(height, width, channels) of the input image.")
      .def_prop_ro("parameter_count", &py_vision_model::parameter_count)
      .def_prop_ro("unused_tensors", &py_vision_model::unused_tensors)
      .def_prop_ro("path", &py_vision_model::path)
      .def_prop_ro("config", &py_vision_model::config, "The fields of config.json the model uses, as a dict.")
      .def("forward", &py_vision_model::forward, "image"_a, "normalize"_a = false,
           nb::sig("def forward(self, image: numpy.typing.ArrayLike, normalize: bool = False) -> numpy.typing.NDArray[typing.Any]"),
           "Class logits for an image (height × width × channels, the model input as given; normalize=True:\n"
           "pixels in [0, 1] ImageNet-normalized first, as mixlens-attn does for a PNG).")
      .def("attention", &py_vision_model::attention, "image"_a, "layers"_a = nb::none(), "form"_a = "paper",
           "alpha"_a = true, "reduction"_a = "mean", "rows"_a = nb::none(), "raw_range"_a = "tensor", "normalize"_a = false,
           nb::sig("def attention(self, image: numpy.typing.ArrayLike, layers: collections.abc.Sequence[int] | None = None, "
                   "form: str = 'paper', alpha: bool | collections.abc.Sequence[int] = True, reduction: str = 'mean', "
                   "rows: str | int | collections.abc.Sequence[int | str] | None = None, raw_range: str = 'tensor', "
                   "normalize: bool = False) -> Attention"),
           "As Model.attention, for an image: per layer the combined matrices of the two branches in the\n"
           "block's own combination, scale · (M_f + J·M_b·J) (mixlens-attn --image); logits are (classes).\n"
           "rows also takes 'cls', the CLS token's position.")
      .def("attribute", &py_vision_model::attribute, "image"_a, "method"_a, "target_class"_a = nb::none(),
           "start_layer"_a = 0, "matrix"_a = false, "attn_grad_without_d"_a = false, "seed"_a = 0, "normalize"_a = false,
           nb::sig("def attribute(self, image: numpy.typing.ArrayLike, method: str, target_class: int | None = None, "
                   "start_layer: int = 0, matrix: bool = False, attn_grad_without_d: bool = False, seed: int = 0, "
                   "normalize: bool = False) -> Attribution"),
           "Explains the logit of target_class (None: the argmax) over the sequence positions with `method`,\n"
           "as mixlens-attn --image --method does; position is the CLS token's (-1 for mean pooling), token the class.")
      .def("gradients", &py_vision_model::gradients, "image"_a, "target_class"_a = nb::none(), "rule"_a = "gradient",
           "signals"_a = nb::none(), "normalize"_a = false,
           nb::sig("def gradients(self, image: numpy.typing.ArrayLike, target_class: int | None = None, "
                   "rule: str = 'gradient', signals: collections.abc.Sequence[str] | None = None, "
                   "normalize: bool = False) -> dict[str, typing.Any]"),
           "As Model.gradients, for the logit of target_class (None: the argmax): 'embedding' (L x E, the first\n"
           "block's input) and per layer 'residual' (L x E) and each branch's 'u_f', 'u_b', 'delta_f', ...\n"
           "(in the branch's own time; models::vim_gradients).")
      .def("__repr__", [](const py_vision_model& v) {
        return "<mixlens.VisionModel '" + v.path().string() + "': " + std::to_string(v.num_layers()) + " layers, " +
               std::to_string(v.cfg().num_classes) + " classes, L " + std::to_string(v.cfg().sequence_length()) + ", " +
               v.dtype() + ">";
      });

  m.def("read_image", &read_image, "file"_a,
        nb::sig("def read_image(file: str | os.PathLike[str]) -> numpy.typing.NDArray[numpy.float32]"),
        "An image as mixlens-attn --image reads it: a .png as its RGB pixels / 255 (pass normalize=True\n"
        "to VisionModel's methods), a .npy (height × width × channels) as stored.");
  m.def("_resolve_rows", &models::resolve_rows, "text"_a, "length"_a, "vision"_a, "cls"_a, "option"_a,
        "python -m mixlens's --rows (models::resolve_rows): the positions, or mixlens.Error naming `option`.");
  m.def(
      "cuda_unavailable", [](int device) { return cuda_unavailable(device); }, "device"_a = 0,
      "Why the CUDA backend cannot run on CUDA device `device`, or '' when it can (mixlens.cuda_available).");
  m.def("load", &load, "path"_a, "dtype"_a = "float32", "device"_a = "cpu",
        nb::sig("def load(path: str | os.PathLike[str], dtype: numpy.typing.DTypeLike = 'float32', "
                "device: str | typing.Any = 'cpu') -> Model | VisionModel"),
        "Loads the model in the folder `path` (config.json + model.safetensors or its shards), told by\n"
        "config.json: a Mamba, Falcon-Mamba or Mamba-2 language model (Hugging Face or state-spaces layout)\n"
        "as Model, or a Vision Mamba classifier (tools/convert_vim.py) as VisionModel.\n"
        "dtype: 'float32' (as mixlens-attn) or 'float64'. device: 'cpu', or 'cuda' / 'cuda:N' / a torch.device\n"
        "to compute on that GPU (float32; see Model.to).");
}

}  // namespace mixlens::python
