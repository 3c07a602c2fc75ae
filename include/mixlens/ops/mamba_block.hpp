// The unified implicit-attention form of a whole Mamba mixer block (Zimerman,
// Ali, Wolf, ICLR 2025): from the in_proj output x (D × L) to the gated output,
//   y = diag(g)·(α + diag(D))·diag(σ(c + bias))·M_conv · x  +  offset,
// with c = conv1d(x) before its bias, g = SiLU(z), and σ(c + bias) the factor
// that turns the SiLU into a diagonal matrix: SiLU(p) = p·σ(p). The conv bias
// makes the block affine; `offset` is that constant part, so that
// apply(x) + offset reproduces the block exactly.
//
// ops/mamba_block/operator.hpp: the view (host and device); ops/mamba_block/mixer.hpp: parameters, init, bind.
// ops/mamba_block/device.cuh (included by mixlens.cuh): the GPU fast paths.
#pragma once

#include "mixlens/ops/mamba_block/operator.hpp"
#include "mixlens/ops/mamba_block/mixer.hpp"
