// RWKV-4 time mixing (Peng et al. 2023, "RWKV: Reinventing RNNs for the
// Transformer Era"): the wkv operator as a linear operator on the values v.
//
// Per channel, with keys k_t, decay w > 0 (weight e^{−w} per step) and bonus u
// for the current token:
//   wkv_t = (Σ_{j<t} e^{k_j − (t−1−j)w} v_j + e^{u + k_t} v_t) / Z_t,
//   Z_t   =  Σ_{j<t} e^{k_j − (t−1−j)w}     + e^{u + k_t},
// a softmax over the past with a fixed positional bias, so
//   M[t][j] = ρ_t · exp(b_{t−j} + k_j − log Z_t),  b_0 = u,  b_d = −(d−1)w,
// with the receptance ρ_t = σ(r_t) when the operator includes it (else 1).
// Every exponent is taken after subtracting the running maximum (the log-sum-
// exp form of RWKV's kernel), so nothing overflows for any k.
//
// Class: M = diag(ρ/Z) · T · diag(e^k) with T the fixed Toeplitz matrix of the
// positional bias: a fixed mixer between data-controlled diagonal gates
// (diagonal data control, class ii); the data never enter T itself.
//
// ops/rwkv4/operator.hpp: the view (host and device); ops/rwkv4/mixer.hpp: parameters, init, bind.
#pragma once

#include "mixlens/ops/rwkv4/operator.hpp"
#include "mixlens/ops/rwkv4/mixer.hpp"
