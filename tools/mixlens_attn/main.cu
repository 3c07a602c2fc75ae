// mixlens-attn-cuda: mixlens-attn with its GPU path (MIXLENS_TOOL_CUDA), compiled by
// nvcc; mixlens-attn hands --device cuda runs to it (tools/CMakeLists.txt).
#include "main.cpp"
