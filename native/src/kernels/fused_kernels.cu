// See fused_kernels.h. Every kernel computes in fp32 and rounds once on the way out, which is the
// rounding the composite (ATen) path of model/fused_ops.cpp does too. No fast-math: the rotary
// angles go through the accurate cosf/sinf, as in PyTorch.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "kernels/element_math.cuh"
#include "kernels/fused_kernels.h"

namespace qwen3::kernels {
namespace {

// Sum over the block; blockDim.x is a multiple of 32 (at most 1024). Every thread of the block
// must call it, once per kernel.
__device__ float BlockSum(float v) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = static_cast<int>(blockDim.x) >> 5;
    v = lane < warps ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) partial[0] = v;
  }
  __syncthreads();
  return partial[0];
}

int RoundUpToWarps(int threads) { return std::min(1024, (threads + 31) / 32 * 32); }

template <typename TDelta, typename TOut>
__global__ void AddRmsNormKernel(float* __restrict__ residual, const TDelta* __restrict__ delta,
                                 const float* __restrict__ weight, float eps,
                                 TOut* __restrict__ out, int64_t width) {
  const int64_t row = blockIdx.x;
  float* r = residual + row * width;
  float sum = 0.0f;
  if (delta != nullptr) {
    const TDelta* d = delta + row * width;
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
      const float value = r[i] + ToFloat(d[i]);
      r[i] = value;
      sum += value * value;
    }
  } else {
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) sum += r[i] * r[i];
  }
  const float scale = rsqrtf(BlockSum(sum) / static_cast<float>(width) + eps);
  TOut* o = out + row * width;
  // Each thread reads back only the elements it wrote above.
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    o[i] = FromFloat<TOut>(r[i] * scale * weight[i]);
  }
}

template <typename T, bool kNorm>
__global__ void QkNormRopeKernel(const T* __restrict__ qkv, const float* __restrict__ q_norm,
                                 const float* __restrict__ k_norm,
                                 const int32_t* __restrict__ positions,
                                 const float* __restrict__ inv_freq, float eps, T* __restrict__ q,
                                 T* __restrict__ k, T* __restrict__ v, int q_heads, int kv_heads,
                                 int head_dim) {
  const int64_t t = blockIdx.x;
  const int h = static_cast<int>(blockIdx.y);
  const int half = head_dim / 2;
  const int i = static_cast<int>(threadIdx.x);
  const int heads = q_heads + 2 * kv_heads;
  const T* src = qkv + (t * heads + h) * head_dim;
  if (h >= q_heads + kv_heads) {  // a value head: the whole block takes this branch
    T* dst = v + (t * kv_heads + (h - q_heads - kv_heads)) * head_dim;
    if (i < half) {
      dst[i] = src[i];
      dst[i + half] = src[i + half];
    }
    return;
  }
  float x1 = 0.0f;
  float x2 = 0.0f;
  if (i < half) {
    x1 = ToFloat(src[i]);
    x2 = ToFloat(src[i + half]);
  }
  float a = x1;
  float b = x2;
  if constexpr (kNorm) {
    const float scale = rsqrtf(BlockSum(x1 * x1 + x2 * x2) / static_cast<float>(head_dim) + eps);
    if (i >= half) return;
    const float* w = h < q_heads ? q_norm : k_norm;
    a = x1 * scale * w[i];
    b = x2 * scale * w[i + half];
  } else {
    if (i >= half) return;
  }
  const bool is_query = h < q_heads;
  const float angle = static_cast<float>(positions[t]) * inv_freq[i];
  const float c = cosf(angle);
  const float s = sinf(angle);
  T* dst =
      is_query ? q + (t * q_heads + h) * head_dim : k + (t * kv_heads + (h - q_heads)) * head_dim;
  dst[i] = FromFloat<T>(a * c - b * s);
  dst[i + half] = FromFloat<T>(b * c + a * s);
}

template <typename T>
__global__ void SiluMulKernel(const T* __restrict__ gate_up, T* __restrict__ out, int64_t rows,
                              int64_t width) {
  const int64_t n = rows * width;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += stride) {
    const int64_t r = idx / width;
    const int64_t c = idx - r * width;
    const float g = ToFloat(gate_up[r * 2 * width + c]);
    const float u = ToFloat(gate_up[r * 2 * width + width + c]);
    out[idx] = FromFloat<T>(g / (1.0f + expf(-g)) * u);
  }
}

// See ShortCausalAttention in the header. Lane l of a warp holds dims [l * kPerLane, (l + 1) *
// kPerLane) of one query row; the scores of all keys come first (four at a time, so their
// reductions overlap, key j's ending in lane j), then one softmax across the lanes, then the
// weighted sum of the values, all in fp32. (The online softmax, key after key, put two expf per key
// on the critical path: 7 us per layer on H200 for a 16-token text.)
template <typename T, int kPerLane>
__global__ void __launch_bounds__(256)
    ShortCausalAttentionKernel(const T* __restrict__ q, const T* __restrict__ k,
                               const T* __restrict__ v, const int32_t* __restrict__ cu_seqlens,
                               int q_heads, int kv_heads, float scale, T* __restrict__ out) {
  constexpr int kDim = 32 * kPerLane;
  constexpr int kWarps = 8;
  constexpr int kKeysAtOnce = 4;
  static_assert(sizeof(T) == 2, "fp16/bf16 only");
  constexpr int kRowVectors = kDim * 2 / 16;  // 16-byte vectors per key/value row
  __shared__ __align__(16) T keys[kShortAttentionMaxLen][kDim];
  __shared__ __align__(16) T values[kShortAttentionMaxLen][kDim];
  const int s = static_cast<int>(blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int begin = cu_seqlens[s];
  const int length = min(cu_seqlens[s + 1] - begin, kShortAttentionMaxLen);
  if (length <= 0) return;
  const int kv = h / (q_heads / kv_heads);
  // Stage the sequence's keys and values, 16 bytes per load (at most 4 per thread and tensor), all
  // issued before the first store.
#pragma unroll 4
  for (int idx = static_cast<int>(threadIdx.x); idx < length * kRowVectors;
       idx += static_cast<int>(blockDim.x)) {
    const int row = idx / kRowVectors;
    const int col = (idx - row * kRowVectors) * 8;
    const int64_t at = (static_cast<int64_t>(begin + row) * kv_heads + kv) * kDim + col;
    const uint4 key = *reinterpret_cast<const uint4*>(k + at);
    const uint4 value = *reinterpret_cast<const uint4*>(v + at);
    *reinterpret_cast<uint4*>(&keys[row][col]) = key;
    *reinterpret_cast<uint4*>(&values[row][col]) = value;
  }
  __syncthreads();

  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int warp = static_cast<int>(threadIdx.x) >> 5;
  const int first = lane * kPerLane;
  for (int i = warp; i < length; i += kWarps) {
    const int64_t row = (static_cast<int64_t>(begin + i) * q_heads + h) * kDim + first;
    float query[kPerLane];
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) query[e] = ToFloat(q[row + e]);
    // 1. Scores: lane j ends with key j's (keys are at most 32). Chunks of four keys do not
    //    depend on each other, so their reductions overlap.
    float score = -INFINITY;
#pragma unroll
    for (int chunk = 0; chunk < kShortAttentionMaxLen / kKeysAtOnce; ++chunk) {
      const int j0 = chunk * kKeysAtOnce;
      if (j0 > i) break;
      float dots[kKeysAtOnce];
#pragma unroll
      for (int c = 0; c < kKeysAtOnce; ++c) {
        dots[c] = 0.0f;
        if (j0 + c <= i) {
#pragma unroll
          for (int e = 0; e < kPerLane; ++e) dots[c] += query[e] * ToFloat(keys[j0 + c][first + e]);
        }
      }
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) {
#pragma unroll
        for (int c = 0; c < kKeysAtOnce; ++c) {
          dots[c] += __shfl_xor_sync(0xffffffffu, dots[c], offset);
        }
      }
#pragma unroll
      for (int c = 0; c < kKeysAtOnce; ++c) {
        if (lane == j0 + c && j0 + c <= i) score = dots[c] * scale;
      }
    }
    // 2. One softmax over the lanes: key j's weight in lane j.
    float running_max = score;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      running_max = fmaxf(running_max, __shfl_xor_sync(0xffffffffu, running_max, offset));
    }
    const float p = lane <= i ? expf(score - running_max) : 0.0f;
    float sum = p;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    // 3. The weighted values, the weights broadcast from their lanes.
    float acc[kPerLane] = {};
    for (int j = 0; j <= i; ++j) {
      const float weight = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) acc[e] += weight * ToFloat(values[j][first + e]);
    }
    const float inverse = 1.0f / sum;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) out[row + e] = FromFloat<T>(acc[e] * inverse);
  }
}

}  // namespace

cudaError_t AddRmsNorm(float* residual, const void* delta, ElementType delta_type,
                       const float* weight, float eps, void* out, ElementType out_type,
                       int64_t rows, int64_t width, cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaSuccess;
  const int threads = RoundUpToWarps(static_cast<int>(std::min<int64_t>(width, 1024)));
  return Dispatch(delta_type, [&](auto* delta_tag) {
    using TDelta = std::remove_pointer_t<decltype(delta_tag)>;
    return Dispatch(out_type, [&](auto* out_tag) {
      using TOut = std::remove_pointer_t<decltype(out_tag)>;
      AddRmsNormKernel<TDelta, TOut><<<static_cast<unsigned>(rows), threads, 0, stream>>>(
          residual, static_cast<const TDelta*>(delta), weight, eps, static_cast<TOut*>(out), width);
      return cudaGetLastError();
    });
  });
}

cudaError_t QkNormRope(const void* qkv, ElementType type, const float* q_norm, const float* k_norm,
                       const int32_t* positions, const float* inv_freq, float eps, void* q, void* k,
                       void* v, int64_t tokens, int q_heads, int kv_heads, int head_dim,
                       cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024 || q_heads <= 0 || kv_heads <= 0) {
    return cudaErrorInvalidValue;
  }
  if (tokens <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(tokens), static_cast<unsigned>(q_heads + 2 * kv_heads));
  const int threads = RoundUpToWarps(head_dim / 2);
  return Dispatch(type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const auto launch = [&](auto kernel) {
      kernel<<<grid, threads, 0, stream>>>(static_cast<const T*>(qkv), q_norm, k_norm, positions,
                                           inv_freq, eps, static_cast<T*>(q), static_cast<T*>(k),
                                           static_cast<T*>(v), q_heads, kv_heads, head_dim);
      return cudaGetLastError();
    };
    if (q_norm == nullptr || k_norm == nullptr) return launch(QkNormRopeKernel<T, false>);
    return launch(QkNormRopeKernel<T, true>);
  });
}

cudaError_t SiluMul(const void* gate_up, ElementType type, void* out, int64_t rows, int64_t width,
                    cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>((rows * width + kThreads - 1) / kThreads, 1 << 20);
  return Dispatch(type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    SiluMulKernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        static_cast<const T*>(gate_up), static_cast<T*>(out), rows, width);
    return cudaGetLastError();
  });
}

cudaError_t ShortCausalAttention(const void* q, const void* k, const void* v, ElementType type,
                                 const int32_t* cu_seqlens, int64_t sequences, int q_heads,
                                 int kv_heads, int head_dim, float scale, void* out,
                                 cudaStream_t stream) {
  if (q_heads <= 0 || kv_heads <= 0 || q_heads % kv_heads != 0 || sequences > 65535 ||
      (head_dim != 64 && head_dim != 128 && head_dim != 256)) {
    return cudaErrorInvalidValue;
  }
  if (sequences <= 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(sequences), static_cast<unsigned>(q_heads));
  return Dispatch(type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if constexpr (std::is_same_v<T, float>) {
      return cudaErrorInvalidValue;  // flash attention's dtypes only (fp32 keys would not fit)
    } else {
      const auto launch = [&](auto kernel) {
        kernel<<<grid, 256, 0, stream>>>(static_cast<const T*>(q), static_cast<const T*>(k),
                                         static_cast<const T*>(v), cu_seqlens, q_heads, kv_heads,
                                         scale, static_cast<T*>(out));
        return cudaGetLastError();
      };
      if (head_dim == 64) return launch(ShortCausalAttentionKernel<T, 2>);
      if (head_dim == 128) return launch(ShortCausalAttentionKernel<T, 4>);
      return launch(ShortCausalAttentionKernel<T, 8>);
    }
  });
}

}  // namespace qwen3::kernels
