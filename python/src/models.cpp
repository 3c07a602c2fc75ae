// mixlens.load and mixlens.Model: every language-model family the library reads
// (models/language_model.hpp), its forward pass, and the hidden attention of
// its layers as mixlens-attn computes it on the host: per layer the matrices and
// their channel mean, the raw attention averaged over layers and the rollout.
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "arrays.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "operator.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {
namespace {

using models::attention_form;

// What Model.attention returns.
struct attention_result {
  nb::object logits, raw, rollout;
  std::vector<index_t> layers;
  std::string form;
  nb::dict alpha, maps;  // layer → array
};

// The results in host memory, made with the GIL released.
template <class T>
struct attention_data {
  std::vector<T> logits, raw, roll;
  std::vector<std::pair<index_t, std::vector<T>>> maps;
  struct tensor3 {
    index_t layer, matrices;
    std::vector<T> values;
  };
  std::vector<tensor3> alpha;
};

bool contains(const std::vector<index_t>& v, index_t k) { return std::find(v.begin(), v.end(), k) != v.end(); }

// The body of mixlens-attn's run_on, on the host backend.
template <class Model>
attention_data<typename Model::value_type> run_attention(const Model& model, const std::vector<index_t>& tokens,
                                                         const std::vector<index_t>& layers,
                                                         const std::vector<index_t>& save, attention_form form,
                                                         channel_reduction reduction) {
  using T = typename Model::value_type;
  using backend = host_backend<T>;
  const backend be;
  const auto weights = models::host_weights(model);
  const index_t L = static_cast<index_t>(tokens.size());
  analysis::rollout_accumulator<backend> roll(be, L);
  analysis::map_average<backend> raw_average(be, L * L);
  auto map = be.alloc(L * L), raw = be.alloc(L * L), minmax = be.alloc(3);
  attention_data<T> r;
  auto logits = models::mamba_forward(be, weights.view(), std::span<const index_t>(tokens), [&](const auto& s) {
    if (!contains(layers, s.layer)) return;
    const bool keep = contains(save, s.layer);
    std::vector<T> alpha;
    index_t D = 0;
    const auto maps = [&](const auto& op) {
      D = view_of(op).out_channels();
      if (keep) alpha.resize(static_cast<std::size_t>(D * L * L));
      analysis::aggregate_operator(be, op, reduction, map.data(), minmax.data(), keep ? alpha.data() : nullptr);
      try {  // raw attention is undefined on NaN / inf: name the first one
        analysis::check_finite_blocks(be, op, minmax.data(), "mixlens::analysis::raw_attention");
      } catch (const mixlens::error& e) {
        throw mixlens::error("layer " + std::to_string(s.layer) + ": " + e.what());
      }
    };
    if (form == attention_form::paper) maps(s.ssm());
    else maps(models::unified_operator(be, s, {.offset = false}));
    analysis::raw_attention(be, map.data(), minmax.data(), L, raw.data());
    raw_average.add(raw.data());
    roll.add(map.data());
    r.maps.emplace_back(s.layer, std::vector<T>(map.begin(), map.end()));
    if (keep) r.alpha.push_back({s.layer, D, std::move(alpha)});
  });
  r.logits.assign(logits.begin(), logits.end());
  if (!layers.empty()) {
    raw_average.result(raw.data());
    r.raw.assign(raw.begin(), raw.end());
    r.roll.assign(roll.result(), roll.result() + L * L);
  }
  return r;
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

class py_model {
 public:
  using any_model = std::variant<models::language_model<float>, models::language_model<double>>;

  py_model(any_model m, std::filesystem::path path) : model_(std::move(m)), path_(std::move(path)) {}

  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit([&](const auto& lm) -> decltype(auto) { return std::visit(f, lm); }, model_);
  }

  [[nodiscard]] std::string family() const {
    return visit([](const auto& m) { return std::string(m.config.family()); });
  }
  [[nodiscard]] std::string dtype() const { return model_.index() == 0 ? "float32" : "float64"; }
  [[nodiscard]] index_t num_layers() const { return visit([](const auto& m) { return m.num_layers(); }); }
  [[nodiscard]] index_t vocab_size() const { return visit([](const auto& m) { return m.vocab_size(); }); }
  [[nodiscard]] index_t parameter_count() const { return visit([](const auto& m) { return m.parameter_count(); }); }
  [[nodiscard]] std::vector<std::string> unused_tensors() const {
    return visit([](const auto& m) { return m.unused_tensors; });
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

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
      const auto L = ids.size(), V = static_cast<std::size_t>(m.vocab_size());
      return make_output<T>({L, V}, fw, [&](T* out) {
        const auto logits = models::mamba_forward(m, std::span<const index_t>(ids));
        std::copy_n(logits.data(), logits.size(), out);
      });
    });
  }

  [[nodiscard]] attention_result attention(nb::handle tokens, std::optional<std::vector<index_t>> layers_arg,
                                           const std::string& form_name, nb::handle alpha_arg,
                                           const std::string& reduction_name) const {
    constexpr std::string_view where = "mixlens.Model.attention";
    const auto ids = token_ids(tokens, where);
    const framework fw = framework_of(tokens);
    const attention_form form = form_of(form_name);
    const channel_reduction reduction = reduction_of(reduction_name);
    const index_t layer_count = num_layers();
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
    // alpha: True (every analysed layer), False, or the layers whose tensors are returned.
    std::vector<index_t> save;
    if (nb::isinstance<nb::bool_>(alpha_arg)) {
      if (nb::cast<bool>(alpha_arg)) save = layers;
    } else {
      std::vector<index_t> wanted;
      if (!nb::try_cast(alpha_arg, wanted))
        fail(where, "alpha", "True, False or a list of layer indices", python_type(alpha_arg));
      for (index_t k : wanted)
        if (!contains(layers, k))
          mixlens::detail::fail(where, "alpha", "layers among the analysed ones (layers)", k);
      save = wanted;
    }
    return visit([&](const auto& m) {
      using T = typename std::remove_cvref_t<decltype(m)>::value_type;
      models::check_tokens(m.vocab_size(), std::span<const index_t>(ids), "tokens");
      attention_data<T> data;
      {
        nb::gil_scoped_release release;
        data = run_attention(m, ids, layers, save, form, reduction);
      }
      const std::size_t L = ids.size();
      attention_result r;
      r.layers = layers;
      r.form = form_name;
      r.logits = copy_output(data.logits.data(), {L, static_cast<std::size_t>(m.vocab_size())}, fw);
      if (!layers.empty()) {
        r.raw = copy_output(data.raw.data(), {L, L}, fw);
        r.rollout = copy_output(data.roll.data(), {L, L}, fw);
      } else {
        r.raw = nb::none();
        r.rollout = nb::none();
      }
      for (const auto& [k, map] : data.maps) r.maps[nb::int_(k)] = copy_output(map.data(), {L, L}, fw);
      for (const auto& a : data.alpha)
        r.alpha[nb::int_(a.layer)] = copy_output(a.values.data(), {static_cast<std::size_t>(a.matrices), L, L}, fw);
      return r;
    });
  }

 private:
  any_model model_;
  std::filesystem::path path_;
};

std::unique_ptr<py_model> load(const std::filesystem::path& path, nb::handle dtype) {
  std::string name = "float32";
  if (!is_none(dtype)) {
    try {
      name = str_of(nb::module_::import_("numpy").attr("dtype")(dtype));
    } catch (const nb::python_error&) {
      name = str_of(dtype);
    }
  }
  if (name != "float32" && name != "float64") fail("mixlens.load", "dtype", "float32 or float64", name);
  py_model::any_model m = [&]() -> py_model::any_model {
    nb::gil_scoped_release release;
    if (name == "float32") return models::load_language_model<float>(path);
    return models::load_language_model<double>(path);
  }();
  return std::make_unique<py_model>(std::move(m), path);
}

}  // namespace

void bind_models(nb::module_& m) {
  nb::class_<attention_result>(m, "Attention",
                               "The hidden attention of a model on one token sequence, as mixlens-attn writes it.")
      .def_prop_ro("logits", [](const attention_result& r) { return r.logits; },
                   nb::sig("def logits(self) -> numpy.typing.NDArray[typing.Any]"), "Logits (L × V).")
      .def_ro("layers", &attention_result::layers, "The analysed layers, ascending.")
      .def_ro("form", &attention_result::form, "'paper' or 'unified'.")
      .def_prop_ro("alpha", [](const attention_result& r) { return r.alpha; },
                   nb::sig("def alpha(self) -> dict[int, numpy.typing.NDArray[typing.Any]]"),
              "Layer → its matrices (matrices × L × L; alpha_{k}.npy): per channel (Mamba; Mamba-2's unified\n"
              "form) or per head (Mamba-2's paper form); only the layers asked for with `alpha`.")
      .def_prop_ro("maps", [](const attention_result& r) { return r.maps; },
                   nb::sig("def maps(self) -> dict[int, numpy.typing.NDArray[typing.Any]]"), "Layer → the channel aggregate of its matrices (L × L; alpha_{k}.png).")
      .def_prop_ro("raw", [](const attention_result& r) { return r.raw; },
                   nb::sig("def raw(self) -> numpy.typing.NDArray[typing.Any] | None"),
              "Raw attention (L × L; raw.npy): each layer's map min–max normalized by its tensor's range,\n"
              "averaged over the analysed layers; None when no layer is analysed.")
      .def_prop_ro("rollout", [](const attention_result& r) { return r.rollout; },
                   nb::sig("def rollout(self) -> numpy.typing.NDArray[typing.Any] | None"),
              "Attention rollout (L × L; rollout.npy): rownorm(I + map_last) ⋯ rownorm(I + map_first);\n"
              "None when no layer is analysed.")
      .def("__repr__", [](const attention_result& r) {
        return "<mixlens.Attention " + r.form + ", " + std::to_string(r.layers.size()) + " layer(s)>";
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
      .def_prop_ro("config", &py_model::config, "The fields of config.json the model uses, as a dict.")
      .def("forward", &py_model::forward, "tokens"_a,
           nb::sig("def forward(self, tokens: numpy.typing.ArrayLike) -> numpy.typing.NDArray[typing.Any]"),
           "Logits (L × V) for token ids (1-D integer array, tensor or sequence).")
      .def("attention", &py_model::attention, "tokens"_a, "layers"_a = nb::none(), "form"_a = "paper",
           "alpha"_a = true, "reduction"_a = "mean",
           nb::sig("def attention(self, tokens: numpy.typing.ArrayLike, layers: collections.abc.Sequence[int] | None = None, "
                   "form: str = 'paper', alpha: bool | collections.abc.Sequence[int] = True, "
                   "reduction: str = 'mean') -> Attention"),
           "Runs the model on tokens and returns mixlens.Attention: the logits and, for each layer of\n"
           "`layers` (default all), its hidden attention in `form` — 'paper': S6's α per channel (Mamba-2:\n"
           "per head); 'unified': the whole block diag(g)(α + D)diag(σ)M_conv per channel — with the\n"
           "channel aggregate (`reduction`: 'mean' as mixlens-attn, 'abs_mean', 'relu_mean'), the raw\n"
           "attention and the rollout over those layers. `alpha`: True returns every analysed layer's\n"
           "matrices, False none, a list those layers'.")
      .def("__repr__", [](const py_model& p) {
        return "<mixlens.Model " + p.family() + " '" + p.path().string() + "': " + std::to_string(p.num_layers()) +
               " layers, vocab " + std::to_string(p.vocab_size()) + ", " + p.dtype() + ">";
      });

  m.def("load", &load, "path"_a, "dtype"_a = "float32",
        nb::sig("def load(path: str | os.PathLike[str], dtype: numpy.typing.DTypeLike = 'float32') -> Model"),
        "Loads the language model in the folder `path` (config.json + model.safetensors or its shards):\n"
        "Mamba, Falcon-Mamba or Mamba-2, Hugging Face or state-spaces layout, told by config.json.\n"
        "dtype: 'float32' (as mixlens-attn) or 'float64'.");
}

}  // namespace mixlens::python
