// Causal softmax attention, the transformer reference point of the operator-class
// comparison, as a linear operator on the values.
//
// Per head h with queries q_t, keys k_t ∈ R^E (E = key size) and scale 1/√E:
//   M_h[i][j] = exp(s_ij − max_{j'≤i} s_ij') / Σ_{j'≤i} exp(s_ij' − max)   for j ≤ i,
//   s_ij = scale·⟨q_i, k_j⟩,   M_h[i][j] = 0 for j > i.
// The operator maps values v (H·P channels, P per head) to y_c = M_{h(c)} v_c:
// every value channel of a head is mixed by the same matrix, so the operator
// is channel-separable and a layer has H attention matrices. The output
// projection W_o is not part of it.
//
// ops/softmax_attention/operator.hpp: the view (host and device); ops/softmax_attention/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/softmax_attention/operator.hpp"
#include "mixlens/ops/softmax_attention/mixer.hpp"
