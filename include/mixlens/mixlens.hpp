// The host operator library in one include: the concept, the scans, every
// operator of the registry (mixlens/ops/registry.hpp lists them), the host
// backend and the analysis instruments. Models and I/O (mixlens/models/,
// mixlens/io/) need nlohmann-json and are included on their own; the device
// side is mixlens/mixlens.cuh.
#pragma once

#include "mixlens/analysis/attention_count.hpp"
#include "mixlens/analysis/attention_maps.hpp"
#include "mixlens/analysis/attention_span.hpp"
#include "mixlens/analysis/classify.hpp"
#include "mixlens/analysis/data_dependence.hpp"
#include "mixlens/analysis/diagonal_control.hpp"
#include "mixlens/analysis/layer_maps.hpp"
#include "mixlens/analysis/rank.hpp"
#include "mixlens/analysis/semiseparable.hpp"
#include "mixlens/analysis/time_invariance.hpp"
#include "mixlens/backend.hpp"
#include "mixlens/config.hpp"
#include "mixlens/detail/rebase.hpp"
#include "mixlens/error.hpp"
#include "mixlens/linear_operator.hpp"
#include "mixlens/ops/registry.hpp"
#include "mixlens/scan.hpp"
#include "mixlens/tensor.hpp"
