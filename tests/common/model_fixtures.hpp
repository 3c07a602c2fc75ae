// The checkpoints under tests/data and their transformers references
// (tests/data/make_*_fixtures.py), shared by the model tests of every family
// and both backends.
#pragma once

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/oracles.hpp"
#include "mixlens/detail/rebase.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/tensor.hpp"

namespace mixlens::testing {

// tests/data; MIXLENS_TEST_DATA_DIR in the environment overrides it (for a
// binary run on another machine).
inline std::filesystem::path test_data_dir() {
  if (const char* dir = std::getenv("MIXLENS_TEST_DATA_DIR")) return dir;
  return MIXLENS_TEST_DATA_DIR;
}

inline std::filesystem::path reference(const std::string& model, const std::string& file) {
  return test_data_dir() / "reference" / model / file;
}

// The token ids of reference sequence `s` of `model`.
inline std::vector<index_t> tokens_of(const std::string& model, int s) {
  return io::read_npy(reference(model, "tokens_" + std::to_string(s) + ".npy")).as<index_t>();
}

// max |a − b| / max |b| between a (rows × cols) matrix and a reference stored
// either as (rows × cols) or transposed (cols × rows, time-major) with column
// offset `col0`. Infinite when either side is not finite.
template <class M>
double compare(const M& got, const io::npy_array& ref, bool transposed = false, index_t col0 = 0) {
  const auto r = ref.as<double>();
  const index_t cols = ref.shape.at(1);
  double diff = 0, scale = 0;
  for (index_t i = 0; i < got.extent(0); ++i)
    for (index_t j = 0; j < got.extent(1); ++j) {
      const double want = transposed ? r[static_cast<std::size_t>(j * cols + col0 + i)]
                                     : r[static_cast<std::size_t>(i * cols + col0 + j)];
      const double d = std::abs(double(got(i, j)) - want);
      if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
      diff = std::max(diff, d);
      scale = std::max(scale, std::abs(want));
    }
  return diff / (scale > 0 ? scale : 1);
}

// Logits (L × V) against reference sequence `s` of `model`, shapes checked.
template <class M>
double compare_logits(const M& logits, const std::string& model, int s) {
  const auto ref = io::read_npy(reference(model, "logits_" + std::to_string(s) + ".npy"));
  BOOST_REQUIRE_EQUAL(ref.shape.at(0), logits.extent(0));
  BOOST_REQUIRE_EQUAL(ref.shape.at(1), logits.extent(1));
  return compare(logits, ref);
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A scratch copy of fixture folder `from` whose files a test may break.
struct scratch_model {
  std::filesystem::path dir;
  explicit scratch_model(const std::string& from) {
    dir = std::filesystem::temp_directory_path() /
          ("mixlens_" + std::string(boost::unit_test::framework::current_test_case().p_name) + "_" +
           std::to_string(::getpid()) + "_" + from);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::filesystem::copy(test_data_dir() / from, dir, std::filesystem::copy_options::recursive);
  }
  ~scratch_model() { std::filesystem::remove_all(dir); }
  scratch_model(const scratch_model&) = delete;
  scratch_model& operator=(const scratch_model&) = delete;

  [[nodiscard]] std::string read(const std::string& file) const { return read_text(dir / file); }
  void write(const std::string& file, const std::string& text) const { std::ofstream(dir / file) << text; }
  void write_config(const std::string& text) const { write("config.json", text); }
  // Replaces the first `from` in `file` (which must hold it) by `to`.
  void replace(const std::string& file, const std::string& from, const std::string& to) const {
    std::string text = read(file);
    const auto at = text.find(from);
    BOOST_REQUIRE(at != std::string::npos);
    write(file, text.replace(at, from.size(), to));
  }
};

// Every layer's signals of the host forward pass over `tokens`, copied out of
// its reused buffers.
template <class Model>
std::vector<bound<typename Model::signals_type, host_storage>> all_signals(const Model& m,
                                                                          const std::vector<index_t>& tokens) {
  std::vector<bound<typename Model::signals_type, host_storage>> out;
  (void)mamba_forward(m, std::span<const index_t>(tokens), [&](const auto& s) { out.push_back(owned_copy(s)); });
  return out;
}

// A checkpoint under tests/data with its reference sequences.
struct fixture_case {
  const char* name;
  int sequences;
  int layers;
};

// Made with transformers by tests/data/make_mamba_fixtures.py (Mamba) and
// tests/data/make_family_fixtures.py (Falcon-Mamba, Mamba-2); see their docstrings.
inline constexpr fixture_case mamba_fixtures[] = {{"mamba_tied_fp32", 3, 2},   {"mamba_bias_bf16", 2, 3},
                                                  {"mamba_ss_f16", 1, 1},      {"mamba_demo", 1, 4},
                                                  {"falcon_mamba_fp32", 2, 2}, {"falcon_mamba_sharded_bf16", 1, 2}};
inline constexpr fixture_case mamba2_fixtures[] = {
    {"mamba2_tied_fp32", 2, 2}, {"mamba2_groups_bf16", 2, 3}, {"mamba2_sharded", 1, 2}, {"mamba2_ss_mlp", 1, 2}};

inline std::vector<fixture_case> all_fixtures() {
  std::vector<fixture_case> all(std::begin(mamba_fixtures), std::end(mamba_fixtures));
  all.insert(all.end(), std::begin(mamba2_fixtures), std::end(mamba2_fixtures));
  return all;
}

// The logits of every reference sequence of `fx` against transformers', and
// each layer's signals through `check_layer(signals, prefix)`, which returns
// the layer's largest relative error (prefix: "layer<k>_<sequence>_", the
// reference files' names).
template <class Model, class CheckLayer>
void check_fixture(const Model& model, const fixture_case& fx, double tol, CheckLayer&& check_layer) {
  BOOST_REQUIRE_EQUAL(model.num_layers(), fx.layers);
  double worst_logits = 0, worst_signals = 0;
  for (int s = 0; s < fx.sequences; ++s) {
    const auto tokens = tokens_of(fx.name, s);
    std::string tag = std::to_string(s);  // (built in steps: GCC 12 warns falsely on "_" + std::string)
    tag.insert(tag.begin(), '_');
    tag.push_back('_');
    double signals = 0;
    const auto logits = mamba_forward(model, std::span<const index_t>(tokens), [&](const auto& sig) {
      signals = std::max(signals, check_layer(sig, "layer" + std::to_string(sig.layer) + tag));
    });
    const double err = compare_logits(logits, fx.name, s);
    BOOST_TEST(err <= tol, fx.name << " sequence " << s << ": logits error " << err);
    BOOST_TEST(signals <= tol, fx.name << " sequence " << s << ": layer signals error " << signals);
    worst_logits = std::max(worst_logits, err);
    worst_signals = std::max(worst_signals, signals);
  }
  BOOST_TEST_MESSAGE(fx.name << " (" << (std::is_same_v<typename Model::value_type, float> ? "float" : "double")
                             << "): max relative error vs transformers: logits " << worst_logits << ", layer signals "
                             << worst_signals);
}

template <class F>
void expect_error(F&& f, const std::string& fragment) {
  check_error(std::forward<F>(f), {fragment});
}

}  // namespace mixlens::testing
