// S4: a fixed (data-independent) mixer that binds to a causal_conv_operator
// (ops/causal_conv/). Its parameters, init and kernel generation: ops/s4/mixer.hpp.
// The bound operator runs on the device like any causal convolution
// (ops/causal_conv/device.cuh); gpu/lti.cuh also generates its kernel there.
#pragma once

#include "mixlens/ops/s4/mixer.hpp"
