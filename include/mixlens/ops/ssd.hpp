// Mamba-2's state space duality (SSD; Dao & Gu 2024, "Transformers are SSMs") as a
// data-controlled linear operator: a selective SSM whose decay is one scalar per
// head, so that its mixing matrix is a masked attention matrix
//   M_h = L_h ∘ (C Bᵀ) · diag(Δ_h),   L_h[i][j] = exp(a_h Σ_{k=j+1..i} Δ_h[k])  (j ≤ i),
// i.e. M_h[i][j] = ⟨C_i, B_j⟩ · exp(a_h Σ_{k=j+1..i} Δ_k) · Δ_j (+ D_h on the diagonal),
// exactly state-spaces/mamba's ssd_minimal with X·Δ and A·Δ. Channels: H heads
// of P value channels; every channel of a head is mixed by the same M_h. B and C
// are shared by the heads of a group (G groups). Strictly lower blocks of M_h
// have rank ≤ N (semiseparable).
//
// apply runs the chunked SSD algorithm (intra-chunk quadratic form, chunk
// states, inter-chunk recurrence, state-to-output); apply_recurrent runs the
// plain recurrence; materialize uses the quadratic form. Segment sums are
// accumulated term by term (never as differences of long prefix sums), and every
// exponent is ≤ 0, so nothing overflows.
//
// ops/ssd/operator.hpp: the view (host and device); ops/ssd/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/ssd/operator.hpp"
#include "mixlens/ops/ssd/mixer.hpp"
