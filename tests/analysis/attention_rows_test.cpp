#define BOOST_TEST_MODULE attention_rows
#include <boost/test/unit_test.hpp>

// analysis::aggregate_rows (and its bidirectional form) against the rows of
// aggregate_operator's whole maps, tensor_range against the whole tensor's
// min / max, and model_row_maps against model_maps' raw attention: on random S6
// operators and on every layer of the fixtures of each family, in both forms.

#include <algorithm>
#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/model_fixtures.hpp"
#include "common/oracles.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/io/npy.hpp"
#include "mixlens/models/language_model.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/vim_attention.hpp"
#include "mixlens/ops/s6.hpp"

using namespace mixlens;
using namespace mixlens::models;
namespace fs = std::filesystem;

namespace {

// max |got − want| / max |want|.
template <class T>
double relative(const std::vector<T>& got, const std::vector<T>& want) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  double diff = 0, scale = 0;
  for (std::size_t k = 0; k < got.size(); ++k) {
    diff = std::max(diff, std::abs(double(got[k]) - double(want[k])));
    scale = std::max(scale, std::abs(double(want[k])));
  }
  return diff / (scale > 0 ? scale : 1);
}

// Rows of an L × L (or D × L × L) array.
template <class T>
std::vector<T> rows_of(const std::vector<T>& m, index_t D, index_t L, std::span<const index_t> rows) {
  std::vector<T> out;
  for (index_t d = 0; d < D; ++d)
    for (index_t t : rows) out.insert(out.end(), m.begin() + (d * L + t) * L, m.begin() + (d * L + t + 1) * L);
  return out;
}

std::vector<index_t> positions_for(index_t L) {
  std::vector<index_t> p{L - 1, 0, L / 2};
  if (L > 3) p.push_back(1);
  return p;
}

// Rows, their host copy and the tensor's range of one operator against the
// whole maps; Aggregate / Rows / Range take (map, minmax, copy) / (positions,
// map_rows, minmax, copy) / (minmax).
template <class T, class Aggregate, class Rows, class Range>
void check_operator(index_t D, index_t L, double tol, const std::string& what, Aggregate&& aggregate, Rows&& rows,
                    Range&& range) {
  const auto positions = positions_for(L);
  const index_t R = static_cast<index_t>(positions.size());
  std::vector<T> map(L * L), minmax(3), alpha(D * L * L);
  aggregate(map.data(), minmax.data(), alpha.data());
  std::vector<T> map_rows(R * L), row_minmax(3), alpha_rows(D * R * L), tensor_minmax(3);
  rows(std::span<const index_t>(positions), map_rows.data(), row_minmax.data(), alpha_rows.data());
  range(tensor_minmax.data());
  BOOST_TEST(relative(map_rows, rows_of(map, 1, L, positions)) <= tol, what << ": map rows");
  BOOST_TEST(relative(alpha_rows, rows_of(alpha, D, L, positions)) <= tol, what << ": the rows of every matrix");
  // The tensor's range, without the tensor: that of aggregate_operator.
  const double scale = std::max(std::abs(double(minmax[0])), std::abs(double(minmax[1])));
  BOOST_TEST(std::abs(double(tensor_minmax[0]) - double(minmax[0])) <= tol * scale, what << ": min");
  BOOST_TEST(std::abs(double(tensor_minmax[1]) - double(minmax[1])) <= tol * scale, what << ": max");
  BOOST_TEST(tensor_minmax[2] == T(0));
  // The rows' range: that of the rows of the tensor, inside the tensor's.
  const auto [lo, hi] = std::minmax_element(alpha_rows.begin(), alpha_rows.end());
  BOOST_TEST(double(row_minmax[0]) == double(*lo), what);
  BOOST_TEST(double(row_minmax[1]) == double(*hi), what);
  BOOST_TEST(row_minmax[0] >= minmax[0] - tol * scale);
  BOOST_TEST(row_minmax[1] <= minmax[1] + tol * scale);
}

template <class T, class Op>
void check_unidirectional(const Op& op, double tol, const std::string& what) {
  const host_backend<T> be;
  const auto& v = view_of(op);
  for (const auto r : {channel_reduction::mean, channel_reduction::abs_mean, channel_reduction::relu_mean})
    check_operator<T>(
        v.out_channels(), v.length(), tol, what,
        [&](T* map, T* minmax, T* copy) { analysis::aggregate_operator(be, op, r, map, minmax, copy); },
        [&](std::span<const index_t> p, T* map_rows, T* minmax, T* copy) {
          analysis::aggregate_rows(be, op, p, r, map_rows, minmax, copy, 3 * v.length() * sizeof(T));  // chunks of 1 channel
        },
        [&](T* minmax) { analysis::tensor_range(be, op, minmax); });
  // Without a host copy aggregate_operator works straight from the signals (S6):
  // the same map.
  std::vector<T> map(v.length() * v.length()), minmax(3), map_rows(v.length());
  analysis::aggregate_operator(be, op, channel_reduction::mean, map.data(), minmax.data());
  const index_t last = v.length() - 1;
  analysis::aggregate_rows(be, op, std::span<const index_t>(&last, 1), channel_reduction::mean, map_rows.data());
  BOOST_TEST(relative(map_rows, rows_of(map, 1, v.length(), std::span<const index_t>(&last, 1))) <= tol, what);
}

template <class T, class Forward, class Backward>
void check_bidirectional(const Forward& f, const Backward& b, T scale, double tol, const std::string& what) {
  const host_backend<T> be;
  const auto& v = view_of(f);
  check_operator<T>(
      v.out_channels(), v.length(), tol, what,
      [&](T* map, T* minmax, T* copy) {
        analysis::aggregate_bidirectional(be, f, b, scale, channel_reduction::mean, map, minmax, copy);
      },
      [&](std::span<const index_t> p, T* map_rows, T* minmax, T* copy) {
        analysis::aggregate_rows_bidirectional(be, f, b, scale, p, channel_reduction::mean, map_rows, minmax, copy,
                                               3 * 2 * v.length() * sizeof(T));
      },
      [&](T* minmax) { analysis::tensor_range_bidirectional(be, f, b, scale, minmax); });
}

// A random S6 operator: Δ in (0, 0.5], A < 0, B and C in 2 groups, skip and gate.
struct random_s6 {
  matrix<float> delta, gate, a;
  tensor<float, 3> b, c;
  std::vector<float> skip;
  s6_operator<float> op;
  random_s6(index_t D, index_t L, index_t N, std::uint64_t seed) : delta(D, L), gate(D, L), a(D, N), b(2, N, L), c(2, N, L) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> normal(0, 1);
    std::uniform_real_distribution<float> unif(0, 1);
    for (index_t k = 0; k < delta.size(); ++k) delta.data()[k] = 1e-3f + 0.5f * unif(gen);
    for (index_t k = 0; k < gate.size(); ++k) gate.data()[k] = normal(gen);
    for (index_t k = 0; k < a.size(); ++k) a.data()[k] = -(0.5f + unif(gen)) * float(k % N + 1);
    for (index_t k = 0; k < b.size(); ++k) b.data()[k] = normal(gen), c.data()[k] = normal(gen);
    for (index_t d = 0; d < D; ++d) skip.push_back(normal(gen));
    op = s6_operator<float>(delta.view(), a.view(), b.view(), c.view(), vector_view<const float>(skip.data(), skip.size()),
                            matrix_view<const float>(gate.view()));
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(rows_of_a_random_s6_operator_are_the_rows_of_its_maps) {
  for (const index_t L : {1, 2, 70, 131}) {  // several row tiles of the S6 range pass
    const random_s6 s(6, L, 5, 7 + L);
    check_unidirectional<float>(s.op, 1e-6, "random S6, L " + std::to_string(L));
  }
}

BOOST_AUTO_TEST_CASE(rows_of_every_language_model_layer_are_the_rows_of_its_maps) {
  for (const char* name : {"mamba_demo", "mamba_bias_bf16", "falcon_mamba_fp32", "mamba2_groups_bf16", "mamba2_ss_mlp"}) {
    const auto model = load_language_model<float>(testing::test_data_dir() / name);
    const auto tokens = testing::tokens_of(name, 0);
    std::visit(
        [&](const auto& m) {
          const host_backend<float> be;
          const auto weights = host_weights(m);
          (void)mamba_forward(be, weights.view(), std::span<const index_t>(tokens), [&](const auto& s) {
            const std::string at = std::string(name) + " layer " + std::to_string(s.layer);
            check_unidirectional<float>(s.ssm(), 1e-6, at + " paper");
            check_unidirectional<float>(unified_operator(be, s, {.offset = false}), 1e-6, at + " unified");
          });
        },
        model);
  }
}

BOOST_AUTO_TEST_CASE(rows_of_every_vision_mamba_layer_are_the_rows_of_its_combined_maps) {
  for (const char* name : {"vim_mid_odd", "vim_mid_stride_bf16", "vim_mean_nopos"}) {
    const auto model = load_vim<float>(testing::test_data_dir() / name);
    const auto image = read_image_npy<float>(testing::reference(name, "image.npy"));
    const host_backend<float> be;
    const auto weights = host_weights(model);
    (void)vim_forward(be, weights.view(), tensor_view<const float, 3>(image.view()), [&](const vim_layer_signals<float>& s) {
      const std::string at = std::string(name) + " layer " + std::to_string(s.layer);
      check_bidirectional<float>(s.forward.ssm(), s.backward.ssm(), s.scale, 1e-6, at + " paper");
      check_bidirectional<float>(unified_operator(be, s.forward, {.offset = false}),
                                 unified_operator(be, s.backward, {.offset = false}), s.scale, 1e-6, at + " unified");
    });
  }
}

BOOST_AUTO_TEST_CASE(raw_rows_with_the_tensor_range_are_the_rows_of_raw_attention) {
  const host_backend<float> be;
  const index_t L = 40, D = 8;
  const std::vector<index_t> positions{39, 3};
  analysis::model_maps<host_backend<float>> maps(be, L);
  analysis::model_row_maps<host_backend<float>> rows(be, 2, L);
  std::vector<float> map(L * L), minmax(3), map_rows(2 * L), range(3);
  for (std::uint64_t layer = 0; layer < 3; ++layer) {
    const random_s6 s(D, L, 4, 100 + layer);
    analysis::aggregate_operator(be, s.op, channel_reduction::mean, map.data(), minmax.data());
    maps.add(map.data(), minmax.data());
    analysis::aggregate_rows(be, s.op, std::span<const index_t>(positions), channel_reduction::mean, map_rows.data());
    analysis::tensor_range(be, s.op, range.data());
    rows.add(map_rows.data(), range.data());
  }
  std::vector<float> raw(L * L), raw_rows(2 * L);
  maps.raw(raw.data());
  rows.raw(raw_rows.data());
  BOOST_TEST(rows.layers() == 3);
  BOOST_TEST(relative(raw_rows, rows_of(raw, 1, L, positions)) <= 1e-6);
}

BOOST_AUTO_TEST_CASE(bad_positions_are_named) {
  const random_s6 s(2, 5, 3, 1);
  const host_backend<float> be;
  std::vector<float> out(5 * 5);
  const auto fails = [&](std::vector<index_t> p, const std::string& want) {
    try {
      analysis::aggregate_rows(be, s.op, std::span<const index_t>(p), channel_reduction::mean, out.data());
      BOOST_ERROR("no error for " << want);
    } catch (const mixlens::error& e) {
      BOOST_TEST(std::string(e.what()).find(want) != std::string::npos, e.what());
      BOOST_TEST(std::string(e.what()).find("positions") != std::string::npos, e.what());
    }
  };
  fails({}, "at least one row");
  fails({5}, "rows in [0, 5)");
  fails({-1}, "rows in [0, 5)");
}
