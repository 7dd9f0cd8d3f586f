// Building blocks of the Qwen3 decoder: RMSNorm, rotary embeddings and the tensor-parallel linear
// layers (Megatron layout). Weights are [out_features, in_features], as in the checkpoint.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

#include "model/config.h"
#include "parallel/communicator.h"

namespace qwen3 {

// RMSNorm over the last dimension: normalises AND applies the weight in fp32, then rounds once to
// `out`. x may be the fp32 residual stream. With fp32 compute this is exactly Qwen3's formula; with
// bf16 it rounds once where transformers' bf16 path (cast back, then multiply) rounds twice.
at::Tensor RmsNormTo(const at::Tensor& x, const at::Tensor& weight, double eps, at::ScalarType out);

// cos and sin of position * inv_freq, [T, 1, D / 2] in fp32, for integer positions [T] and
// inv_freq [D / 2] (fp32), computed as transformers does.
std::pair<at::Tensor, at::Tensor> RotaryCosSin(const at::Tensor& positions,
                                               const at::Tensor& inv_freq);

// Rotary position embedding in the half-split layout (GPT-NeoX "rotate_half"): dimension i of the
// first half pairs with dimension i of the second half and rotates by position * theta^(-2i/D).
class RotaryEmbedding {
 public:
  RotaryEmbedding() = default;
  // `scaling` adjusts the inverse frequencies as transformers' rope_type does (linear, llama3).
  RotaryEmbedding(int64_t head_dim, double theta, at::Device device,
                  const RopeScaling& scaling = RopeScaling{});

  // cos and sin of position * inv_freq, [T, 1, head_dim / 2] in fp32, for integer positions [T].
  std::pair<at::Tensor, at::Tensor> CosSin(const at::Tensor& positions) const;
  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  at::Tensor inv_freq_;  // [head_dim / 2] fp32, computed as transformers does
};

// Rotates x [T, heads, head_dim] (computed in fp32, returned in x's dtype).
at::Tensor ApplyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// y = x W^T with W split by rows (output features): rank r of `world` holds rows
// [r * out / world, (r + 1) * out / world). The input is replicated on every rank and the output
// is this rank's slice of the features, so no collective is needed. Several projections that read
// the same input (q/k/v, gate/up) are fused by concatenating their row shards. A bias is split
// with its rows (undefined: none).
class ColumnParallelLinear {
 public:
  ColumnParallelLinear() = default;
  explicit ColumnParallelLinear(at::Tensor weight_shard, at::Tensor bias_shard = at::Tensor())
      : weight_(std::move(weight_shard)), bias_(std::move(bias_shard)) {}
  at::Tensor Forward(const at::Tensor& x) const;
  const at::Tensor& weight() const { return weight_; }
  const at::Tensor& bias() const { return bias_; }

 private:
  at::Tensor weight_;  // [out / world, in]
  at::Tensor bias_;    // [out / world] or undefined
};

// y = x W^T with W split by columns (input features): rank r holds columns
// [r * in / world, (r + 1) * in / world) and takes the matching slice of the input, i.e. the output
// of a ColumnParallelLinear. Each rank's product is a partial sum of y, which Forward returns; one
// all-reduce (sum, in fp32) over the group makes the full output on every rank, and
// ReduceAddRmsNorm does it together with the residual add and norm that read y.
class RowParallelLinear {
 public:
  RowParallelLinear() = default;
  explicit RowParallelLinear(at::Tensor weight_shard) : weight_(std::move(weight_shard)) {}
  at::Tensor Forward(const at::Tensor& x) const;
  const at::Tensor& weight() const { return weight_; }

 private:
  at::Tensor weight_;  // [out, in / world]
};

// AddRmsNorm(residual, delta, weight, eps, out) where delta is the sum over the group of every
// rank's `partial` (a RowParallelLinear output; undefined: no delta): one fused step where the
// communicator offers it (the peer kernel), else an fp32 all-reduce and then AddRmsNorm. With one
// rank, `partial` is the delta itself.
at::Tensor ReduceAddRmsNorm(Communicator& comm, at::Tensor& residual, const at::Tensor& partial,
                            const at::Tensor& weight, double eps, at::ScalarType out);

}  // namespace qwen3
