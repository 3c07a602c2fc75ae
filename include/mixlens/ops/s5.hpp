// S5 (Smith, Warrington, Linderman 2023): one multi-input multi-output diagonal
// SSM shared by all H channels,
//   x_t = Λ̄ ⊙ x_{t−1} + B̄·u_t,   y_t = f·Re(C̃·x_t) + D ⊙ u_t,
// with Λ ∈ C^P (Re < 0), B̃ ∈ C^{P×H}, C̃ ∈ C^{H×P}, a step Δ_p = exp(log_step_p)
// per state, D ∈ R^H, and f = 2 under conjugate symmetry (only one state of each
// conjugate pair is stored), else f = 1.
// Discretization: ZOH Λ̄ = exp(ΛΔ), B̄ = (Λ̄ − 1)/Λ·B̃; bilinear
// Λ̄ = (1 + ΛΔ/2)/(1 − ΛΔ/2), B̄ = Δ/(1 − ΛΔ/2)·B̃.
// The mixing matrix is block lower-triangular Toeplitz with H×H blocks: block
// (o, i) has entries m[t][s] = f·Re Σ_p C̃(o,p)·Λ̄_p^{t−s}·B̄(p,i) + D_o·[t = s]·[o = i].
//
// ops/s5/operator.hpp: the view (host and device); ops/s5/mixer.hpp: parameters, init, bind.
// ops/s5/device.cuh (included by mixlens.cuh): the GPU fast paths.
#pragma once

#include "mixlens/ops/s5/operator.hpp"
#include "mixlens/ops/s5/mixer.hpp"
