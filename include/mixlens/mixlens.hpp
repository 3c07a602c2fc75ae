// The whole host library in one include.
#pragma once

#include "mixlens/config.hpp"
#include "mixlens/error.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/scan.hpp"
#include "mixlens/tensor.hpp"
#include "mixlens/ops/causal_conv.hpp"
#include "mixlens/ops/dss.hpp"
#include "mixlens/ops/gss.hpp"
#include "mixlens/ops/hyena.hpp"
#include "mixlens/ops/mamba_block.hpp"
#include "mixlens/ops/s4.hpp"
#include "mixlens/ops/s4d.hpp"
#include "mixlens/ops/s5.hpp"
#include "mixlens/ops/s6.hpp"
