// The decoder's non-matmul steps, each one call: on a CUDA tensor in a CUDA build they run as one
// fused kernel (kernels/fused_kernels.h); otherwise as the ATen composite below, which is also the
// reference the kernels are tested against. Both compute in fp32 and round once to the output
// dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <tuple>

#include "model/packed_input.h"

namespace qwen3 {

// What the rotary step needs: on the fused path the positions and inverse frequencies, on the
// composite path the cos/sin tables built from them once per forward.
struct RotaryInputs {
  at::Tensor positions;  // int32 [T]
  at::Tensor inv_freq;   // fp32 [head_dim / 2]
  at::Tensor cos;        // fp32 [T, 1, head_dim / 2] (composite path only)
  at::Tensor sin;
};

// True where the fused kernels run for tensors on `device`.
bool FusedKernelsAvailable(const at::Device& device);

// residual (fp32 [rows, width], contiguous) += delta (skipped when undefined), in place; returns
// RMSNorm(residual) * weight in `out`, weight fp32 [width].
at::Tensor AddRmsNorm(at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                      double eps, at::ScalarType out);

// Splits the fused projection qkv [T, (q_heads + 2 kv_heads) * head_dim] into q [T, q_heads, D],
// k and v [T, kv_heads, D] (contiguous, qkv's dtype); q and k get Qwen3's per-head RMSNorm
// (q_norm / k_norm, fp32 [D]; both undefined: no norm, as in Qwen2/Mistral/Llama) and the rotary
// embedding.
std::tuple<at::Tensor, at::Tensor, at::Tensor> QkNormRope(const at::Tensor& qkv, int64_t q_heads,
                                                          int64_t kv_heads, int64_t head_dim,
                                                          const at::Tensor& q_norm,
                                                          const at::Tensor& k_norm,
                                                          const RotaryInputs& rotary, double eps);

// gate_up [rows, 2 * width] -> silu(gate) * up [rows, width], in gate_up's dtype.
at::Tensor SiluMul(const at::Tensor& gate_up);

// Causal attention (as CausalAttention in model/attention.h) by the short-sequence kernel, where it
// applies: CUDA, fp16/bf16 contiguous q/k/v (k, v 16-byte aligned), head_dim 64, 128 or 256, and
// in.max_seqlen at most 32 (kernels::kShortAttentionMaxLen). Otherwise returns an undefined tensor
// and does nothing.
at::Tensor ShortCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const PackedInput& in, double scale);

// The ATen composites, on any device (the CPU path, and the tests' reference for the kernels).
namespace composite {
at::Tensor AddRmsNorm(at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                      double eps, at::ScalarType out);
std::tuple<at::Tensor, at::Tensor, at::Tensor> QkNormRope(const at::Tensor& qkv, int64_t q_heads,
                                                          int64_t kv_heads, int64_t head_dim,
                                                          const at::Tensor& q_norm,
                                                          const at::Tensor& k_norm,
                                                          const RotaryInputs& rotary, double eps);
at::Tensor SiluMul(const at::Tensor& gate_up);
}  // namespace composite

}  // namespace qwen3
