// Hidden attention of Vision Mamba layers on the host, from their signals
// (models/vim_forward.hpp). Each bidirectional block has two S6 operators per
// channel: the forward branch's, and the backward branch's in its own, flipped
// time. Both forms of mamba_attention.hpp apply to each branch:
//  - paper:   α (eq. 12 of Ali, Zimerman, Wolf 2024) acting on the branch's own
//             SSM input u (conv1d(x) for the forward branch, conv1d_b(flip x) for
//             the backward one);
//  - unified: the whole branch acting on the in_proj output x (flipped for the
//             backward branch), so that scale · (Â_f + J·Â_b·J) is the block's
//             operator from x to the out_proj input (J the exchange matrix,
//             scale 1/2 when the model divides the sum), plus the conv biases'
//             offsets.
// The backward matrix is mapped back to image-sequence positions,
// flip(B)[i][j] = B[L−1−i][L−1−j], and combined with the forward one by
// analysis::combine_bidirectional (sum, mean — the block's own operator when it
// divides — or the paper code's splice around the CLS token).
//
// The CLS row: vim_cls_rows reads row `cls` of the combined matrix in O(L·N)
// per channel. paper_cls_rows reproduces the paper's code (AmeenAli/HiddenMambaAttn,
// compute_middle_attn_vector and its splice), which omits the factor exp(Δ_cls·A)
// of the CLS position itself and leaves the CLS column zero (docs/vim.md).
// Needs nlohmann-json (through vim_model.hpp).
#pragma once

#include <algorithm>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/models/mamba_attention.hpp"
#include "mixlens/models/vim_model.hpp"

namespace mixlens::models {

// The combination the block itself computes: mean when it divides the sum by 2.
template <class T>
[[nodiscard]] analysis::bidirectional_mode block_mode(const vim_layer_signals<T>& s) {
  return s.scale == T(1) ? analysis::bidirectional_mode::sum : analysis::bidirectional_mode::mean;
}

namespace detail {

template <class T>
void check_vim_mode(const vim_layer_signals<T>& s, analysis::bidirectional_mode mode, std::string_view where) {
  if (mode == analysis::bidirectional_mode::splice && s.cls < 0)
    mixlens::detail::fail(where, "mode", "sum or mean for a model without a CLS token", "splice");
}

template <class T>
void check_vim_channel(const vim_layer_signals<T>& s, index_t d, std::string_view where) {
  if (d < 0 || d >= s.channels())
    mixlens::detail::fail(where, "d", "a channel in [0, " + std::to_string(s.channels()) + ")", d);
}

template <class T>
[[nodiscard]] T combine_entry(T f, T b, analysis::bidirectional_mode mode, index_t j, index_t cls) {
  switch (mode) {
    case analysis::bidirectional_mode::sum: return f + b;
    case analysis::bidirectional_mode::mean: return (f + b) / T(2);
    case analysis::bidirectional_mode::splice: return j <= cls ? f : b;
  }
  return f + b;
}

}  // namespace detail

// One branch's matrices (D × L × L) in `form`, the backward branch's mapped back
// to image-sequence positions.
template <class T>
[[nodiscard]] tensor<T, 3> vim_branch_attention(const vim_layer_signals<T>& s, vim_direction dir, attention_form form) {
  if (dir == vim_direction::forward) return layer_attention(s.forward, form);
  const tensor<T, 3> own = layer_attention(s.backward, form);
  const index_t D = own.extent(0), L = own.extent(1);
  tensor<T, 3> out(D, L, L);
  for (index_t d = 0; d < D; ++d)
    for (index_t i = 0; i < L; ++i)
      for (index_t j = 0; j < L; ++j) out(d, i, j) = own(d, L - 1 - i, L - 1 - j);
  return out;
}

// The combined matrices (D × L × L): per channel
// analysis::combine_bidirectional(forward, backward in its own time, mode, cls).
template <class T>
[[nodiscard]] tensor<T, 3> vim_layer_attention(const vim_layer_signals<T>& s, attention_form form,
                                               analysis::bidirectional_mode mode) {
  detail::check_vim_mode(s, mode, "mixlens::models::vim_layer_attention");
  const tensor<T, 3> f = layer_attention(s.forward, form), b = layer_attention(s.backward, form);
  const index_t D = f.extent(0), L = f.extent(1);
  tensor<T, 3> out(D, L, L);
  for (index_t d = 0; d < D; ++d) {
    const matrix_view<const T> fd(f.data() + d * L * L, L, L), bd(b.data() + d * L * L, L, L);
    const matrix<T> c = analysis::combine_bidirectional(fd, bd, mode, s.cls);
    std::copy(c.data(), c.data() + L * L, out.data() + d * L * L);
  }
  return out;
}

template <class T>
[[nodiscard]] tensor<T, 3> vim_layer_attention(const vim_layer_signals<T>& s, attention_form form) {
  return vim_layer_attention(s, form, block_mode(s));
}

// Row t of channel d's combined matrix in O(L·N): the forward row t and the
// backward branch's row L − 1 − t, reversed.
template <class T>
[[nodiscard]] std::vector<T> vim_attention_row(const vim_layer_signals<T>& s, attention_form form, index_t d, index_t t,
                                               analysis::bidirectional_mode mode) {
  constexpr std::string_view where = "mixlens::models::vim_attention_row";
  detail::check_vim_mode(s, mode, where);
  detail::check_vim_channel(s, d, where);
  const index_t L = s.length();
  if (t < 0 || t >= L) mixlens::detail::fail(where, "t", "a position in [0, " + std::to_string(L) + ")", t);
  const std::vector<T> f = layer_attention_row(s.forward, form, d, t), b = layer_attention_row(s.backward, form, d, L - 1 - t);
  std::vector<T> r(static_cast<std::size_t>(L));
  for (index_t j = 0; j < L; ++j)
    r[static_cast<std::size_t>(j)] =
        detail::combine_entry(f[static_cast<std::size_t>(j)], b[static_cast<std::size_t>(L - 1 - j)], mode, j, s.cls);
  return r;
}

// The CLS rows of every channel's combined matrix (D × L).
template <class T>
[[nodiscard]] matrix<T> vim_cls_rows(const vim_layer_signals<T>& s, attention_form form, analysis::bidirectional_mode mode) {
  if (s.cls < 0) mixlens::detail::fail("mixlens::models::vim_cls_rows", "signals", "a model with a CLS token", "none");
  matrix<T> out(s.channels(), s.length());
  for (index_t d = 0; d < s.channels(); ++d) {
    const auto r = vim_attention_row(s, form, d, s.cls, mode);
    std::copy(r.begin(), r.end(), &out(d, 0));
  }
  return out;
}

template <class T>
[[nodiscard]] matrix<T> vim_cls_rows(const vim_layer_signals<T>& s, attention_form form = attention_form::paper) {
  return vim_cls_rows(s, form, block_mode(s));
}

// The paper code's vector of one branch (compute_middle_attn_vector with
// cls_pos = cls), into r (L): for j < cls, Σ_n C_cls[n]·exp(A_n Σ_{k=j+1..cls−1} Δ_k)·Δ_j·B_j[n]
// — α's row cls without the factor exp(Δ_cls·A_n) of position cls —, 0 for j ≥ cls.
template <class T>
void paper_cls_vector(const s6_operator<T>& op, index_t d, index_t cls, vector_view<T> r) {
  const index_t N = op.state_size(), g = op.group_of(d);
  for (std::size_t j = 0; j < r.size(); ++j) r[j] = T(0);
  for (index_t n = 0; n < N; ++n) {
    T p = op.c(g, n, cls);
    for (index_t j = cls - 1; j >= 0; --j) {
      r[static_cast<std::size_t>(j)] += p * op.b(g, n, j);
      p *= std::exp(op.delta(d, j) * op.a(d, n));
    }
  }
  for (index_t j = 0; j < cls; ++j) r[static_cast<std::size_t>(j)] *= op.delta(d, j);
}

// The CLS vector as the paper's Vision Mamba code computes it (D × L): the forward
// branch's paper_cls_vector for columns ≤ cls, the backward branch's (at its CLS
// position L − 1 − cls) flipped back for columns > cls; the CLS column is 0.
// With the released models' 197 tokens the CLS position 98 is the same in both
// times; the paper's code hard-codes it, this function takes it from the signals.
template <class T>
[[nodiscard]] matrix<T> paper_cls_rows(const vim_layer_signals<T>& s) {
  if (s.cls < 0) mixlens::detail::fail("mixlens::models::paper_cls_rows", "signals", "a model with a CLS token", "none");
  const index_t D = s.channels(), L = s.length(), cls = s.cls;
  const auto f = s.forward.ssm(), b = s.backward.ssm();
  matrix<T> out(D, L);
  std::vector<T> rf(static_cast<std::size_t>(L)), rb(static_cast<std::size_t>(L));
  for (index_t d = 0; d < D; ++d) {
    paper_cls_vector(view_of(f), d, cls, vector_view<T>(rf.data(), rf.size()));
    paper_cls_vector(view_of(b), d, L - 1 - cls, vector_view<T>(rb.data(), rb.size()));
    for (index_t j = 0; j < L; ++j)
      out(d, j) = j <= cls ? rf[static_cast<std::size_t>(j)] : rb[static_cast<std::size_t>(L - 1 - j)];
  }
  return out;
}

// The channel aggregate of per-channel rows (D × L) into one row (L).
template <class T>
[[nodiscard]] std::vector<T> aggregate_rows(matrix_view<const T> rows, channel_reduction r = channel_reduction::mean) {
  const index_t D = rows.extent(0), L = rows.extent(1);
  if (D <= 0) mixlens::detail::fail("mixlens::models::aggregate_rows", "rows", "at least one channel", D);
  std::vector<double> acc(static_cast<std::size_t>(L), 0.0);
  host_backend<T>{}.aggregate(rows.data_handle(), D, L, r, acc.data(), nullptr);
  std::vector<T> out(static_cast<std::size_t>(L));
  for (index_t j = 0; j < L; ++j) out[static_cast<std::size_t>(j)] = static_cast<T>(acc[static_cast<std::size_t>(j)] / double(D));
  return out;
}

// A row over the sequence (L) as a map over the patch grid (grid height × grid
// width), the CLS column left out.
template <class T>
[[nodiscard]] matrix<T> patch_map(const vim_config& c, std::span<const T> row) {
  constexpr std::string_view where = "mixlens::models::patch_map";
  mixlens::detail::check_equal(where, "row", "size (the sequence length)", c.sequence_length(), static_cast<index_t>(row.size()));
  matrix<T> out(c.grid_height(), c.grid_width());
  for (index_t p = 0; p < c.num_patches(); ++p) out.data()[p] = row[static_cast<std::size_t>(c.token_of_patch(p))];
  return out;
}

// The self-test of a Vim block: each branch's (mamba_forward.hpp's
// check_reconstruction, in its own time) and the combined unified operator's,
// scale · ((Â_f + J·Â_b·J)·x + offset_f + J·offset_b) against y, as
// max |error| / max |y| (NaN when anything is not finite).
struct vim_reconstruction_error {
  reconstruction_error forward, backward;
  double combined = 0;
};

template <class T>
[[nodiscard]] vim_reconstruction_error check_reconstruction(const vim_layer_signals<T>& s) {
  const host_backend<T> be;
  vim_reconstruction_error e{check_reconstruction(be, s.forward), check_reconstruction(be, s.backward), 0};
  const index_t D = s.channels(), L = s.length();
  const auto uf = unified_operator(be, s.forward), ub = unified_operator(be, s.backward);
  std::vector<T> mf(static_cast<std::size_t>(L * L)), mb(static_cast<std::size_t>(L * L));
  std::vector<double> got(static_cast<std::size_t>(D * L)), want(static_cast<std::size_t>(D * L));
  for (index_t d = 0; d < D; ++d) {
    be.materialize_channels(uf.view(), d, 1, mf.data());
    be.materialize_channels(ub.view(), d, 1, mb.data());
    for (index_t t = 0; t < L; ++t) {
      long double acc = static_cast<long double>(uf->offset(d, t)) + ub->offset(d, L - 1 - t);
      for (index_t j = 0; j < L; ++j)
        acc += (static_cast<long double>(mf[static_cast<std::size_t>(t * L + j)]) +
                mb[static_cast<std::size_t>((L - 1 - t) * L + (L - 1 - j))]) *
               s.forward.x(d, j);
      got[static_cast<std::size_t>(d * L + t)] = static_cast<double>(acc * s.scale);
      want[static_cast<std::size_t>(d * L + t)] = s.y(d, t);
    }
  }
  e.combined = detail::relative_max_error(got, want);
  return e;
}

}  // namespace mixlens::models
