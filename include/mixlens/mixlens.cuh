// The device side in one include (nvcc): mixlens.hpp, the device concept
// (gpu::apply / materialize / rows / materialize_channels, to_device, to_host),
// every operator's fast device paths, the device backend and the GPU
// primitives (scans, S6, α, FFT convolutions, LTI kernels).
#pragma once

#include "mixlens/gpu/alpha.cuh"
#include "mixlens/gpu/backend.cuh"
#include "mixlens/gpu/fft_conv.cuh"
#include "mixlens/gpu/lti.cuh"
#include "mixlens/gpu/operator.cuh"
#include "mixlens/gpu/s6.cuh"
#include "mixlens/gpu/s6_backward.cuh"
#include "mixlens/gpu/scan.cuh"
#include "mixlens/mixlens.hpp"
#include "mixlens/ops/causal_conv/device.cuh"
#include "mixlens/ops/gss/device.cuh"
#include "mixlens/ops/mamba_block/device.cuh"
#include "mixlens/ops/s5/device.cuh"
#include "mixlens/ops/s6/device.cuh"
#include "mixlens/ops/ssd/device.cuh"
