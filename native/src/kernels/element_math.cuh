// Helpers shared by the .cu files: fp32 <-> element type conversions (round to nearest even on the
// way out, as ATen's casts do), and the dispatch from an ElementType to its C++ type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/fused_kernels.h"

namespace qwen3::kernels {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls f with a null pointer of the C++ type for `type`.
template <typename F>
cudaError_t Dispatch(ElementType type, F&& f) {
  switch (type) {
    case ElementType::kFloat32:
      return f(static_cast<float*>(nullptr));
    case ElementType::kFloat16:
      return f(static_cast<__half*>(nullptr));
    case ElementType::kBFloat16:
      return f(static_cast<__nv_bfloat16*>(nullptr));
  }
  return cudaErrorInvalidValue;
}

}  // namespace qwen3::kernels
