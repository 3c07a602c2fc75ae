// A depthwise causal convolution y(c, t) = Σ_s K(c, t−s)·x(c, s) + D(c)·x(c, t):
// the bound form of every single-input single-output LTI mixer (S4, S4D, DSS) and
// of short convolutions. Its mixing matrix is lower-triangular Toeplitz.
//
// ops/causal_conv/operator.hpp: the view (host and device); ops/causal_conv/mixer.hpp: parameters, init, bind;
// ops/causal_conv/two_sided.hpp: the bidirectional form (a two-sided convolution) and its mixer.
// ops/causal_conv/device.cuh (included by mixlens.cuh): the GPU fast paths.
#pragma once

#include "mixlens/ops/causal_conv/operator.hpp"
#include "mixlens/ops/causal_conv/mixer.hpp"
#include "mixlens/ops/causal_conv/two_sided.hpp"
