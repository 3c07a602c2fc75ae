// S6, the selective state-space model of Mamba, as a data-controlled linear
// operator, and its hidden attention α (Ali, Zimerman, Wolf 2024, eq. 12).
//
// Per channel d, with control signals Δ (D×L, ≥ 0), B and C (G×N×L, channel d
// reads group d / (D/G)) and A (D×N, Re ≤ 0):
//   h_t = exp(Δ_t A) ⊙ h_{t−1} + Δ_t B_t u_t,   y_t = ⟨C_t, h_t⟩ (+ D u_t) (· gate_t)
//   α[d][i][j] = Σ_n C_i[n] · exp(A_n Σ_{k=j+1..i} Δ_k) · Δ_j B_j[n]     (j ≤ i)
// For complex A (with complex B, C) the conjugate partner of each state is
// implied and the output is 2·Re⟨C_t, h_t⟩, as in Mamba's reference scan.
//
// ops/s6/operator.hpp: the view (host and device); ops/s6/mixer.hpp: parameters, init, bind.
// ops/s6/device.cuh (included by mixlens.cuh): the GPU fast paths.
#pragma once

#include "mixlens/ops/s6/operator.hpp"
#include "mixlens/ops/s6/mixer.hpp"
