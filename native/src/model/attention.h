// Self-attention over a packed batch: each sequence attends only to its own tokens, either causally
// (each token to itself and the tokens before it: the decoders) or bidirectionally (to every token
// of its sequence: the encoders). Grouped-query attention: query head h reads key/value head
// h / (q_heads / kv_heads); K and V are never repeated in memory.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "model/packed_input.h"

namespace qwen3 {

// Whether the fused flash-attention kernel can run q/k/v of this dtype and head size here
// (CUDA build, sm80+, fp16/bf16, head_dim a multiple of 8 up to 256).
bool FlashAttentionSupported(at::Device device, at::ScalarType dtype, int64_t head_dim);

// q [T, Hq, D], k and v [T, Hkv, D] -> [T, Hq, D] in q's dtype. `scale` multiplies q.k. With
// use_flash: the short-sequence kernel (causal only) or varlen flash attention; else the math path.
at::Tensor PackedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const PackedInput& in, double scale, bool use_flash, bool causal);

// The reference path (and the CPU / fp32 path): one sequence at a time, fp32 scores, explicit
// causal mask (when causal) and softmax, queries in chunks so the score matrix stays small.
at::Tensor PackedAttentionMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const PackedInput& in, double scale, bool causal);

inline at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const PackedInput& in, double scale, bool use_flash) {
  return PackedAttention(q, k, v, in, scale, use_flash, /*causal=*/true);
}

inline at::Tensor CausalAttentionMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const PackedInput& in, double scale) {
  return PackedAttentionMath(q, k, v, in, scale, /*causal=*/true);
}

}  // namespace qwen3
