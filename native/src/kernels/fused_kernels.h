// Fused CUDA kernels for the decoder's small elementwise steps. Without them a layer is ~60 kernel
// launches, most of them tiny; with them the non-matmul work of a layer is four launches. This
// header is plain C++ (raw pointers and a stream) so the .cu file builds without libtorch; the
// model calls it through model/fused_ops.h, which checks shapes and dtypes first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace qwen3::kernels {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

// residual [rows, width] fp32, in place: residual += delta (skipped when delta is null; delta has
// `delta_type`), then out [rows, width] = residual * rsqrt(mean(residual^2) + eps) * weight,
// computed in fp32 and rounded once to `out_type`. weight is fp32 [width].
cudaError_t AddRmsNorm(float* residual, const void* delta, ElementType delta_type,
                       const float* weight, float eps, void* out, ElementType out_type,
                       int64_t rows, int64_t width, cudaStream_t stream);

// qkv [tokens, (q_heads + 2 * kv_heads) * head_dim] (the fused projection, in `type`) ->
//   q [tokens, q_heads, head_dim], k [tokens, kv_heads, head_dim]: per-head RMSNorm with the fp32
//   weight (q_norm / k_norm; both null: no norm), then the half-split rotary embedding at
//   position positions[t] with
//   inv_freq [head_dim / 2], all in fp32, rounded once to `type`;
//   v [tokens, kv_heads, head_dim]: a contiguous copy.
// head_dim must be even and at most 1024.
cudaError_t QkNormRope(const void* qkv, ElementType type, const float* q_norm, const float* k_norm,
                       const int32_t* positions, const float* inv_freq, float eps, void* q, void* k,
                       void* v, int64_t tokens, int q_heads, int kv_heads, int head_dim,
                       cudaStream_t stream);

// gate_up [rows, 2 * width] (gate columns, then up columns) -> out [rows, width] =
// silu(gate) * up, in fp32, rounded once to `type`.
cudaError_t SiluMul(const void* gate_up, ElementType type, void* out, int64_t rows, int64_t width,
                    cudaStream_t stream);

// The longest sequence ShortCausalAttention takes.
constexpr int kShortAttentionMaxLen = 32;

// Causal self-attention for packed batches of short sequences: q [T, q_heads, head_dim], k and v
// [T, kv_heads, head_dim] (contiguous, in `type`), sequence s the rows cu_seqlens[s] ..
// cu_seqlens[s + 1] (int32, on the device, `sequences` + 1 entries), each at most
// kShortAttentionMaxLen long (longer ones are cut there: the caller must not pass them); k and v
// 16-byte aligned. Query head
// h reads key/value head h / (q_heads / kv_heads). out [T, q_heads, head_dim] = softmax(scale
// q.k^T) v, in fp32, rounded once to `type`. A block per (sequence, query head) holds its keys and
// values; flash attention's tiles of 128 queries spend ~9 us on a 16-token text. `type` must be
// fp16 or bf16 (flash attention's), head_dim 64, 128 or 256.
cudaError_t ShortCausalAttention(const void* q, const void* k, const void* v, ElementType type,
                                 const int32_t* cu_seqlens, int64_t sequences, int q_heads,
                                 int kv_heads, int head_dim, float scale, void* out,
                                 cudaStream_t stream);

}  // namespace qwen3::kernels
