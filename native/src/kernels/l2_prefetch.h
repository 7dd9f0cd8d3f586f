// A range of device memory that a kernel asks the GPU to pull into its L2 cache while it runs, so
// the matrix product after it reads its weights from L2 instead of HBM. Plain C++ (no CUDA
// headers): the model and the communicators pass it through to the kernels.
//
// Why: a short query's forward is ~400 short kernels, and during the ones that are not matrix
// products (norms, RoPE, attention, the all-reduce waiting for its peer) HBM is idle. Each of the
// fused kernels takes the next weight to read and issues a bulk L2 prefetch for it at its start
// (sm_90's cp.async.bulk.prefetch.L2: fire-and-forget, done by the copy engine of each SM, so the
// kernel does not wait for it). Elsewhere (older GPUs, the CPU) it is ignored. docs/engine.md has
// the measurements.
#pragma once

#include <cstdint>

namespace qwen3::kernels {

struct L2Prefetch {
  const void* data = nullptr;  // 16-byte aligned
  int64_t bytes = 0;           // a multiple of 16; 0: nothing to prefetch
};

}  // namespace qwen3::kernels
