// See peer_all_reduce.h. Protocol of one launch, for block b of rank r at epoch e (its previous
// epoch + 1; the staging half is e & 1):
//   1. copy this block's slice of the input into r's staging half (16-byte vectors);
//   2. __syncthreads, then thread p stores e into flags[b][r] of rank p (a release at system scope)
//      and waits until its own flags[b][p] reaches e (an acquire), i.e. until rank p's block b has
//      staged the same slice;
//   3. __syncthreads, then sum the slice over every rank's staging half, in rank order, in fp32.
// Why two halves suffice without a second barrier: rank r writes half (e & 1) again at epoch e + 2,
// after its barrier of epoch e + 1, which every peer's block b joined from its launch e + 1; a
// stream runs its launches in order, so every peer's launch e (all its reads of that half) had
// finished. This needs every launch to use the same blocks, hence the fixed grid.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/peer_all_reduce.h"

namespace qwen3::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kVectorBytes = 16;
// How many spins between two looks at the host-mapped abort word and the clock.
constexpr uint32_t kSpinsPerCheck = 64;

__device__ __forceinline__ void StoreRelease(uint32_t* address, uint32_t value) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(address), "r"(value) : "memory");
}

__device__ __forceinline__ uint32_t LoadAcquire(const uint32_t* address) {
  uint32_t value;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(value) : "l"(address) : "memory");
  return value;
}

__device__ __forceinline__ uint64_t GlobalTimerNs() {
  uint64_t ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  return ns;
}

// Adds the 16 bytes in `v` (holding kVectorBytes / sizeof(T) values of T) to acc.
template <typename T>
__device__ __forceinline__ void Accumulate(const uint4& v, float* acc) {
  if constexpr (std::is_same_v<T, float>) {
    acc[0] += __uint_as_float(v.x);
    acc[1] += __uint_as_float(v.y);
    acc[2] += __uint_as_float(v.z);
    acc[3] += __uint_as_float(v.w);
  } else {
    const T* values = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if constexpr (std::is_same_v<T, __half>) {
        acc[i] += __half2float(values[i]);
      } else {
        acc[i] += __bfloat162float(values[i]);
      }
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    PeerAllReduceKernel(PeerGroup group, const T* input, float* out, int64_t vectors) {
  constexpr int kPerVector = kVectorBytes / static_cast<int>(sizeof(T));
  const int b = static_cast<int>(blockIdx.x);
  PeerSignals* self = group.signals[group.rank];
  const uint32_t epoch = self->epochs[b] + 1;
  const int64_t half_vectors = group.half_bytes / kVectorBytes;
  const int64_t offset = static_cast<int64_t>(epoch & 1u) * half_vectors;
  const int64_t first = static_cast<int64_t>(b) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(kPeerBlocks) * kThreads;

  // 1. Stage this block's slice.
  uint4* mine = static_cast<uint4*>(group.staging[group.rank]) + offset;
  const uint4* in = reinterpret_cast<const uint4*>(input);
  for (int64_t i = first; i < vectors; i += stride) mine[i] = in[i];
  __syncthreads();

  // 2. Meet every peer's block b.
  if (threadIdx.x < static_cast<unsigned>(group.world)) {
    const int peer = static_cast<int>(threadIdx.x);
    __threadfence_system();
    StoreRelease(&group.signals[peer]->flags[b][group.rank], epoch);
    const uint32_t* flag = &self->flags[b][peer];
    uint64_t started = 0;
    uint32_t spins = 0;
    while (static_cast<int32_t>(LoadAcquire(flag) - epoch) < 0) {
      if (++spins % kSpinsPerCheck != 0) continue;
      if (*group.abort_word != 0) break;
      const uint64_t now = GlobalTimerNs();
      if (started == 0) {
        started = now;
      } else if (now - started > group.timeout_ns) {
        *group.timed_out_word = 1;
        break;
      }
    }
  }
  __syncthreads();

  // 3. Sum the slice over the ranks, in rank order (the same bits on every rank).
  for (int64_t i = first; i < vectors; i += stride) {
    float acc[kPerVector] = {};
    for (int r = 0; r < group.world; ++r) {
      const uint4 v = __ldcg(static_cast<const uint4*>(group.staging[r]) + offset + i);
      Accumulate<T>(v, acc);
    }
    float4* o = reinterpret_cast<float4*>(out + i * kPerVector);
#pragma unroll
    for (int k = 0; k < kPerVector / 4; ++k) {
      o[k] = make_float4(acc[4 * k], acc[4 * k + 1], acc[4 * k + 2], acc[4 * k + 3]);
    }
  }
  if (threadIdx.x == 0) self->epochs[b] = epoch;
}

int ElementBytes(ElementType type) { return type == ElementType::kFloat32 ? 4 : 2; }

}  // namespace

bool PeerAllReduceFits(const PeerGroup& group, const void* input, ElementType type, int64_t count) {
  const int64_t bytes = count * ElementBytes(type);
  return group.world >= 1 && group.world <= kPeerMaxRanks && count > 0 &&
         bytes % kVectorBytes == 0 && bytes <= group.half_bytes &&
         reinterpret_cast<uintptr_t>(input) % kVectorBytes == 0;
}

cudaError_t PeerAllReduceToFloat(const PeerGroup& group, const void* input, ElementType type,
                                 float* out, int64_t count, cudaStream_t stream) {
  if (!PeerAllReduceFits(group, input, type, count) ||
      reinterpret_cast<uintptr_t>(out) % kVectorBytes != 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t vectors = count * ElementBytes(type) / kVectorBytes;
  switch (type) {
    case ElementType::kFloat32:
      PeerAllReduceKernel<float><<<kPeerBlocks, kThreads, 0, stream>>>(
          group, static_cast<const float*>(input), out, vectors);
      break;
    case ElementType::kFloat16:
      PeerAllReduceKernel<__half><<<kPeerBlocks, kThreads, 0, stream>>>(
          group, static_cast<const __half*>(input), out, vectors);
      break;
    case ElementType::kBFloat16:
      PeerAllReduceKernel<__nv_bfloat16><<<kPeerBlocks, kThreads, 0, stream>>>(
          group, static_cast<const __nv_bfloat16*>(input), out, vectors);
      break;
  }
  return cudaGetLastError();
}

}  // namespace qwen3::kernels
