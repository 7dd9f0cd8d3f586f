// Device side of L2Prefetch (l2_prefetch.h), for the fused kernels.
#pragma once

#include <cstdint>

#include "kernels/l2_prefetch.h"

namespace qwen3::kernels {

// The size of one bulk prefetch.
constexpr int64_t kL2PrefetchChunk = 64 << 10;

// Issues the prefetch of `p` spread over every thread of the grid (chunk i from thread i, so a
// grid of 16 blocks of 256 threads covers 256 MiB in one instruction each). Only on sm_90 and
// newer; a no-op elsewhere. Never waits.
__device__ __forceinline__ void IssueL2Prefetch(const L2Prefetch& p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (p.bytes <= 0) return;
  const int64_t threads = static_cast<int64_t>(gridDim.x) * gridDim.y * blockDim.x;
  const int64_t block = static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;
  const char* base = static_cast<const char*>(p.data);
  for (int64_t offset = (block * blockDim.x + threadIdx.x) * kL2PrefetchChunk; offset < p.bytes;
       offset += threads * kL2PrefetchChunk) {
    const auto size = static_cast<uint32_t>(p.bytes - offset < kL2PrefetchChunk ? p.bytes - offset
                                                                                : kL2PrefetchChunk);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(base + offset), "r"(size)
                 : "memory");
  }
#else
  (void)p;
#endif
}

}  // namespace qwen3::kernels
