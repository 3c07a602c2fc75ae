// The Real-Gated Linear Recurrent Unit of Griffin/Hawk (De et al. 2024) as a
// linear operator on its input x, with the gates that x induces held fixed.
//
// Per channel, with recurrence gate r_t = σ(W_a x_t + b_a), input gate
// i_t = σ(W_x x_t + b_x), a = σ(Λ) and c = 8:
//   a_t = a^{c·r_t},   h_t = a_t h_{t−1} + √(1 − a_t²) (i_t x_t),   y_t = h_t,
//   M[i][j] = (Π_{k=j+1..i} a_k) · √(1 − a_j²) · i_j        (j ≤ i).
// log a_t = −c·r_t·softplus(−Λ) and 1 − a_t² = −expm1(2 log a_t) are formed
// without cancellation.
//
// Class: one real decay per channel makes the operator diagonal data control:
// M = diag(P) · tril(1) · diag(√(1−a²)·i / P) with P_i = Π_{k≤i} a_k, a fixed
// mixer (the cumulative sum) between data-controlled diagonal gates, so
// M(x) ∘/ M(x₀) has rank one. (The gates have an exponential dynamic range,
// which is why the fast paths never form P.) S6 escapes this class only through
// its N > 1 decay rates per channel and its B, C.
//
// ops/rg_lru/operator.hpp: the view (host and device); ops/rg_lru/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/rg_lru/operator.hpp"
#include "mixlens/ops/rg_lru/mixer.hpp"
