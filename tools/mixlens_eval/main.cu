// mixlens-eval-cuda: mixlens-eval with its GPU path (MIXLENS_TOOL_CUDA), compiled by
// nvcc; mixlens-eval hands --device cuda runs to it (tools/CMakeLists.txt).
#include "main.cpp"
