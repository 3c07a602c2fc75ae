// RetNet retention (Sun et al. 2023, "Retentive Network") as a linear operator on
// the values: a fixed exponential decay γ^{i−j} on data-controlled scores q·k.
//
// Per head h with decay γ_h ∈ (0, 1) (RetNet: γ_h = 1 − 2^{−5−h}):
//   M_h[i][j] = γ_h^{i−j} · ⟨q_i, k_j⟩   (j ≤ i)
// Fast path: the recurrent form S_t = γ S_{t−1} + k_t v_tᵀ, y_t = S_tᵀ q_t.
// The mixer scales keys by 1/√E as RetNet does. Not modelled: the xPos rotation
// of q and k (a fixed position-dependent rotation applied before binding), the
// row normalizations of RetNet's parallel form (numerical safeguards that the
// recurrent form does not have) and the GroupNorm and swish gate after it.
// Strictly lower blocks have rank ≤ E: M = diag(γ^i) tril(Q Kᵀ) diag(γ^{−j}).
//
// ops/retnet/operator.hpp: the view (host and device); ops/retnet/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/retnet/operator.hpp"
#include "mixlens/ops/retnet/mixer.hpp"
