// Hyena (Poli et al. 2023, "Hyena Hierarchy"), computed as HazyResearch/safari's
// HyenaOperator does in eval mode (dropout = identity, one head, one block,
// inner_factor 1, identity activation, no outer mixing / post-order FFN):
//
//   z = in_proj(u)                                  ((order+1)·D × L)
//   uc = causal depthwise short conv of z           (kernel K, padding K−1, first L kept)
//   x^0 … x^{order−1}, v = channel blocks of uc     (D each)
//   for o = 0 … order−2:  v = v ⊙ x^{order−1−o};  v = k_o * v + b_o ⊙ v
//   y = out_proj(v ⊙ x^0)
//
// with long filters k_o from an implicit MLP over a positional embedding times an
// exponential decay window (HyenaFilter), and b_o the per-channel filter bias.
// Per channel, the map v ↦ v ⊙ x^0 after the loop is
//   M = D_{x^0} (T_{k_{N−2}} + b_{N−2}) D_{x^1} ⋯ (T_{k_0} + b_0) D_{x^{N−1}},   N = order,
// a product of data-controlled diagonal gates and fixed Toeplitz filters: the
// bound `hyena_operator`. The projections are outside it (they mix channels).
//
// ops/hyena/operator.hpp: the view (host and device); ops/hyena/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/hyena/operator.hpp"
#include "mixlens/ops/hyena/mixer.hpp"
