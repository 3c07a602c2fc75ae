// Causal linear attention (Katharopoulos et al. 2020, "Transformers are RNNs") as
// a linear operator on the values.
//
// With the feature map φ(z) = elu(z) + 1 > 0 applied to queries and keys (the
// bound operator stores φ(q), φ(k)), per head h:
//   M_h[i][j] = ⟨φ(q_i), φ(k_j)⟩ / n_i      (j ≤ i),
//   n_i = ⟨φ(q_i), Σ_{j'≤i} φ(k_j')⟩ when normalized, else 1.
// Fast path: the recurrence S_t = S_{t−1} + φ(k_t) v_tᵀ, z_t = z_{t−1} + φ(k_t),
// y_t = φ(q_t)ᵀ S_t / ⟨φ(q_t), z_t⟩, O(L·E·P) per head. The off-diagonal
// blocks have rank ≤ E (the key width). Layout as in softmax_attention.hpp.
//
// ops/linear_attention/operator.hpp: the view (host and device); ops/linear_attention/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/linear_attention/operator.hpp"
#include "mixlens/ops/linear_attention/mixer.hpp"
