// How many attention matrices a layer has: the paper's count claim (a Mamba
// layer has D = expand·d_model matrices, D·N inner ones, against H heads of a
// transformer layer).
#pragma once

#include <type_traits>

#include "mixlens/linear_operator.hpp"

namespace mixlens::analysis {

struct attention_count_result {
  index_t matrices = 0;  // distinct L × L mixing matrices
  index_t inner = 0;     // their inner (per-state) components
};

// Counts the distinct matrices of a bound operator: one per (output, input)
// channel pair for channel-mixing operators, one per head for operators with
// heads() (value channels of a head share it), one per channel otherwise. The
// inner count multiplies by state_size() where the operator has one (S6: N
// terms per channel, SSD: N per head), and is the matrix count otherwise.
template <class Op>
[[nodiscard]] attention_count_result attention_count(const Op& op) {
  const auto& v = view_of(op);
  using V = std::remove_cvref_t<decltype(v)>;
  attention_count_result out;
  if constexpr (operator_traits<V>::channel_mixing) out.matrices = v.out_channels() * v.in_channels();
  else if constexpr (has_heads<V>) out.matrices = v.heads();
  else out.matrices = v.in_channels();
  if constexpr (has_state_size<V>) out.inner = out.matrices * v.state_size();
  else out.inner = out.matrices;
  return out;
}

// The count for model shapes without building an operator: a Mamba layer with
// model width d_model, expansion `expand` and state size N, and a transformer
// layer with H heads.
[[nodiscard]] constexpr attention_count_result mamba_layer_count(index_t d_model, index_t expand, index_t state_size) {
  return {d_model * expand, d_model * expand * state_size};
}
[[nodiscard]] constexpr attention_count_result transformer_layer_count(index_t heads) { return {heads, heads}; }

}  // namespace mixlens::analysis
