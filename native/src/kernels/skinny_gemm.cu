// See skinny_gemm.h. Block b computes y[:, 8b .. 8b + 8); warp j of its 8 takes k in
// [j k/8, (j + 1) k/8), 32 at a time: lane (g, t) = (lane / 4, lane % 4) loads 16 bytes of weight
// row 8b + g at k offset 8t and 16 bytes of x rows g and g + 8 at the same offset, which feed two
// m16n8k16 MMAs. The MMA's k order is a permutation of the chunk's (its logical k {2t, 2t + 1,
// 2t + 8, 2t + 9} are the lane's physical 8t + {0, 1, 2, 3} in the first MMA and 8t + {4, 5, 6, 7}
// in the second), the same for x and w, so the products are those of matching k. The 8 warps'
// accumulators are summed in warp order through shared memory.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kernels/skinny_gemm.h"

namespace qwen3::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTileN = 8;
constexpr int kChunk = 32;  // k per step of a warp: two MMAs
constexpr int kUnroll = 4;  // steps whose loads are in flight together

// The MMAs need sm_80 or later: SkinnyLinear refuses older devices, and code built for an older
// architecture traps (that code can still reach a newer device through PTX JIT, where a silent
// no-op would return zeros).
template <typename T>
__device__ __forceinline__ void Mma(float* c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                    uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)c, (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1;
  __trap();
#else
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
#endif
}

// One 32-wide k step: the A fragments from x rows g (xg) and g + 8 (x8), the B fragment from w.
template <typename T>
__device__ __forceinline__ void Step(float* c, const uint4& xg, const uint4& x8, const uint4& w) {
  Mma<T>(c, xg.x, x8.x, xg.y, x8.y, w.x, w.y);
  Mma<T>(c, xg.z, x8.z, xg.w, x8.w, w.z, w.w);
}

template <typename T>
__device__ __forceinline__ void StorePair(T* at, float a, float b) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    *reinterpret_cast<__nv_bfloat162*>(at) = __floats2bfloat162_rn(a, b);
  } else {
    *reinterpret_cast<__half2*>(at) = __floats2half2_rn(a, b);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    SkinnyLinearKernel(const T* x, const T* w, T* y, int m, int64_t n, int64_t k) {
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t k_begin = warp * (k / kWarps);
  const int steps = static_cast<int>(k / kWarps / kChunk);
  const bool has_g = g < m;
  const bool has_8 = g + 8 < m;
  // 16-byte vectors; a step advances 4 of them (32 values) along a row. Rows past m are not read
  // (their pointers stay on row 0).
  const uint4* wv = reinterpret_cast<const uint4*>(w + (n0 + g) * k + k_begin) + t;
  const uint4* xg = reinterpret_cast<const uint4*>(x + (has_g ? g : 0) * k + k_begin) + t;
  const uint4* x8 = reinterpret_cast<const uint4*>(x + (has_8 ? g + 8 : 0) * k + k_begin) + t;
  const uint4 zero = make_uint4(0, 0, 0, 0);

  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int s = 0;
  for (; s + kUnroll <= steps; s += kUnroll) {
    uint4 wr[kUnroll];
    uint4 ar[kUnroll];
    uint4 br[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      wr[u] = __ldcs(wv + 4 * (s + u));  // read once: do not keep it in the caches
      ar[u] = has_g ? __ldg(xg + 4 * (s + u)) : zero;
      br[u] = has_8 ? __ldg(x8 + 4 * (s + u)) : zero;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) Step<T>(c, ar[u], br[u], wr[u]);
  }
  for (; s < steps; ++s) {
    const uint4 wr = __ldcs(wv + 4 * s);
    const uint4 ar = has_g ? __ldg(xg + 4 * s) : zero;
    const uint4 br = has_8 ? __ldg(x8 + 4 * s) : zero;
    Step<T>(c, ar, br, wr);
  }

  // Sum the warps' accumulators in warp order. Lane (g, t) holds y[g][n0 + 2t + {0, 1}] (c[0],
  // c[1]) and y[g + 8][n0 + 2t + {0, 1}] (c[2], c[3]).
  __shared__ float4 partial[kWarps][32];
  partial[warp][lane] = make_float4(c[0], c[1], c[2], c[3]);
  __syncthreads();
  if (warp != 0) return;
  float4 sum = partial[0][lane];
#pragma unroll
  for (int j = 1; j < kWarps; ++j) {
    const float4 p = partial[j][lane];
    sum.x += p.x;
    sum.y += p.y;
    sum.z += p.z;
    sum.w += p.w;
  }
  if (has_g) StorePair(y + g * n + n0 + 2 * t, sum.x, sum.y);
  if (has_8) StorePair(y + (g + 8) * n + n0 + 2 * t, sum.z, sum.w);
}

}  // namespace

bool SkinnyLinearFits(ElementType type, int64_t m, int64_t n, int64_t k, const void* x,
                      const void* w, const void* y) {
  const auto aligned = [](const void* p, uintptr_t bytes) {
    return reinterpret_cast<uintptr_t>(p) % bytes == 0;
  };
  return type != ElementType::kFloat32 && m >= 1 && m <= kSkinnyMaxRows && n > 0 &&
         n % kTileN == 0 && k > 0 && k % (kWarps * kChunk) == 0 && aligned(x, 16) &&
         aligned(w, 16) && aligned(y, 4);
}

cudaError_t SkinnyLinear(ElementType type, const void* x, const void* w, void* y, int64_t m,
                         int64_t n, int64_t k, cudaStream_t stream) {
  if (!SkinnyLinearFits(type, m, n, k, x, w, y)) return cudaErrorInvalidValue;
  int device = 0;
  int major = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess) {
    status = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  }
  if (status != cudaSuccess) return status;
  if (major < 8) return cudaErrorNotSupported;
  const dim3 grid(static_cast<unsigned>(n / kTileN));
  if (type == ElementType::kBFloat16) {
    SkinnyLinearKernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(x), static_cast<const __nv_bfloat16*>(w),
        static_cast<__nv_bfloat16*>(y), static_cast<int>(m), n, k);
  } else {
    SkinnyLinearKernel<__half><<<grid, kThreads, 0, stream>>>(
        static_cast<const __half*>(x), static_cast<const __half*>(w), static_cast<__half*>(y),
        static_cast<int>(m), n, k);
  }
  return cudaGetLastError();
}

}  // namespace qwen3::kernels
