// The whole host library in one include.
#pragma once

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"
#include "mixlens/tensor.hpp"
#include "mixlens/ops/causal_conv.hpp"
