// Every operator of the registry (mixlens/ops/registry.hpp), made the one way
// the registry offers: init from operator_options, then bind to an input x.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "mixlens/ops/registry.hpp"
#include "operator.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace mixlens::python {
namespace {

// The unbound mixer and the operator bound from it, kept together: a bound
// operator never needs its mixer, but holding it costs nothing and rules out
// any view into its parameters.
template <class Entry, class T>
struct registry_owner {
  using mixer_type = decltype(Entry::init(operator_options{}));
  using bound_type = registry_operator_t<Entry, T>;
  mixer_type mixer;
  bound_type op;
  registry_owner(mixer_type m, matrix_view<const T> x) : mixer(std::move(m)), op(Entry::bind(mixer, x)) {}
};

template <class Entry, class T>
const auto& view_of(const registry_owner<Entry, T>& o) {
  return mixlens::view_of(o.op);
}

std::vector<std::string> keys() {
  std::vector<std::string> out;
  for_each_operator<double>([&](auto entry) { out.emplace_back(decltype(entry)::key); });
  return out;
}

// Keys whose init splits the channels into heads.
bool uses_heads(const std::string& key) {
  return key == "ssd" || key == "retnet" || key == "linear_attention" || key == "softmax_attention";
}

template <class T>
std::unique_ptr<py_operator> make(const std::string& key, nb::handle x, index_t state, index_t heads,
                                  std::optional<index_t> max_length, std::uint64_t seed) {
  constexpr std::string_view where = "mixlens.from_registry";
  const auto xa = get<T>(x, where, "x");
  check_ndim(where, "x", xa, 2, "channels x length");
  const auto xv = as_matrix(xa);
  operator_options o;
  o.channels = xv.extent(0);
  o.state = state;
  o.heads = heads;
  o.max_length = max_length ? *max_length : std::max<index_t>(o.max_length, xv.extent(1));
  o.seed = seed;
  mixlens::detail::check_positive(where, "x (channels, extent 0)", o.channels);
  mixlens::detail::check_positive(where, "x (length, extent 1)", xv.extent(1));
  mixlens::detail::check_positive(where, "state", o.state);
  if (uses_heads(key)) {
    mixlens::detail::check_positive(where, "heads", o.heads);
    if (o.channels % o.heads != 0)
      fail(where, "heads", "a divisor of the " + std::to_string(o.channels) + " channels of x", std::to_string(heads));
  }
  if (xv.extent(1) > o.max_length)
    fail(where, "max_length", "at least the length of x (" + std::to_string(xv.extent(1)) + ")",
         std::to_string(o.max_length));
  std::unique_ptr<py_operator> out;
  for_each_operator<T>([&](auto entry) {
    using E = decltype(entry);
    if (out || E::key != key) return;
    registry_owner<E, T> owner(E::init(o), xv);
    out = from_owner(std::move(owner), key, framework_of(x));
  });
  if (!out) {
    std::string known;
    for (const auto& k : keys()) known += (known.empty() ? "" : ", ") + k;
    fail(where, "key", "one of " + known, "'" + key + "'");
  }
  out->inputs.emplace_back(xa);
  return out;
}

}  // namespace

void bind_registry(nb::module_& m) {
  m.def("registry_keys", &keys, "The keys of every registry operator, in the order of the README table.");
  m.def(
      "from_registry",
      [](const std::string& key, nb::handle x, index_t state, index_t heads, std::optional<index_t> max_length,
         std::uint64_t seed) -> std::unique_ptr<py_operator> {
        if (single_precision({x})) return make<float>(key, x, state, heads, max_length, seed);
        return make<double>(key, x, state, heads, max_length, seed);
      },
      "key"_a, "x"_a, "state"_a = 16, "heads"_a = 2, "max_length"_a = nb::none(), "seed"_a = 0,
      nb::sig("def from_registry(key: str, x: numpy.typing.ArrayLike, state: int = 16, heads: int = 2, max_length: int | None = None, "
              "seed: int = 0) -> Operator"),
      "The registry operator `key` (see registry_keys()) initialized as its paper does from\n"
      "operator_options — channels = x.shape[0], state, heads (channels // heads per head),\n"
      "max_length (Hyena's filter grid; default max(256, L)), seed — and bound to x\n"
      "(channels × L): the control signals computed from x are the operator's own copies.");
}

}  // namespace mixlens::python
