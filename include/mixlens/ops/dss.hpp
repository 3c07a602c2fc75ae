// DSS: a fixed (data-independent) mixer that binds to a causal_conv_operator
// (ops/causal_conv/). Its parameters, init and kernel generation: ops/dss/mixer.hpp.
// The bound operator runs on the device like any causal convolution
// (ops/causal_conv/device.cuh).
#pragma once

#include "mixlens/ops/dss/mixer.hpp"
