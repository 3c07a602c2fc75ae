// GSS: gated state spaces (Mehta, Gupta, Cutkosky, Neyshabur 2022, "Long Range
// Language Modeling via Gated State Spaces"), the class-(ii) operator: a
// data-controlled diagonal gate in front of a fixed DSS Toeplitz mixer.
//
// The layer computes, from its (normalized) input x (in_channels × L),
//   gate  g = GELU(W_g x + b_g)    (channels × L)
//   value v = GELU(W_v x + b_v)    (channels × L)
//   y     = g ⊙ DSS(v)             (the mixing part modelled here)
// then projects y and adds the residual. The bound operator is the linear map
// the gate leaves on the value signal: v ↦ g ⊙ (K ∗ v + D·v), i.e. per channel
//   M(x) = diag(g(x)) · (T_K + D·I)
// with T_K the lower-triangular Toeplitz matrix of the DSS kernel. It acts on the
// signal passed to apply (normally v(x); `forward` does the whole mixing part).
//
// Simplification against the paper's layer: there the DSS runs at a reduced
// width H and a dense H → F projection sits between the DSS output and the
// F-wide gate; here the gate has the DSS's width and that projection is the
// identity, so channels do not mix. (With that projection P the operator would
// be diag(g)·(P ⊗ I)·T_K, which mixes channels; it is not modelled here.)
//
// ops/gss/operator.hpp: the view (host and device); ops/gss/mixer.hpp: parameters, init, bind.
// ops/gss/device.cuh (included by mixlens.cuh): the GPU fast paths.
#pragma once

#include "mixlens/ops/gss/operator.hpp"
#include "mixlens/ops/gss/mixer.hpp"
