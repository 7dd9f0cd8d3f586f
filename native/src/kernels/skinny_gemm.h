// A matrix product for a short query's few tokens: y [m, n] = x [m, k] w [n, k]^T with m <= 16,
// which streams the weights once with tensor-core MMAs (m16n8k16, fp32 accumulation). At 16
// tokens cuBLAS reaches 1.8-3.4 TB/s on the weights on H200 (benchmarks.md, gemm_search) against a
// peak of 4.8; this kernel is the candidate to do better there. It is not wired into the forward:
// `gemm_search` times it against at::linear first (a developer tool, run.sh step `gemmsearch`).
// Plain C++ header, like fused_kernels.h.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/fused_kernels.h"

namespace qwen3::kernels {

// The most rows of x (tokens) SkinnyLinear takes.
constexpr int64_t kSkinnyMaxRows = 16;

// Whether SkinnyLinear takes these: type fp16 or bf16; 1 <= m <= kSkinnyMaxRows; n a multiple of
// 8; k a multiple of 256; x and w 16-byte aligned and y 4-byte aligned (contiguous row-major).
bool SkinnyLinearFits(ElementType type, int64_t m, int64_t n, int64_t k, const void* x,
                      const void* w, const void* y);

// y [m, n] = x [m, k] w [n, k]^T, summed in fp32 and rounded once to `type` (x, w and y all in
// `type`). Each block takes 8 output features over all of k, split over its 8 warps and summed in
// a fixed order, so the result does not depend on timing. cudaErrorInvalidValue when
// !SkinnyLinearFits, cudaErrorNotSupported on a device older than sm_80 (no bf16 MMA).
cudaError_t SkinnyLinear(ElementType type, const void* x, const void* w, void* y, int64_t m,
                         int64_t n, int64_t k, cudaStream_t stream);

}  // namespace qwen3::kernels
