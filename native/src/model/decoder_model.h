// The decoder families (Qwen3, Qwen2, Mistral, Llama) as embedding models: token ids of a packed
// batch in, the final-norm hidden state of each sequence pooled (last token, first token or mean)
// out. One layer serves all four: pre-norm RMSNorm, GQA causal attention with rotary positions,
// SwiGLU MLP; the families differ only in what ModelConfig says (q/k norm: Qwen3; biases: Qwen2
// q/k/v, Llama/Qwen3 as configured; rope scaling). One instance holds one tensor-parallel rank's
// shard.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/embedding_model.h"
#include "model/fused_ops.h"
#include "model/layers.h"
#include "model/packed_input.h"
#include "parallel/communicator.h"

namespace qwen3 {

// Checks every tensor the model reads (presence, dtype, shape from config) before any is loaded.
// Throws kModelLoadFailed naming the file and the tensor.
void ValidateDecoderCheckpoint(const Checkpoint& checkpoint, const ModelConfig& config);

class DecoderLayer {
 public:
  DecoderLayer(const Checkpoint& checkpoint, const ModelConfig& config, const ModelOptions& options,
               int index);

  // x is the residual stream, fp32 [T, hidden], updated in place; `delta` is this rank's partial
  // sum of the previous layer's MLP output, not yet all-reduced nor added to x (undefined before
  // the first layer). Returns this layer's partial MLP output, which the next norm all-reduces and
  // adds (ReduceAddRmsNorm). With `keep_rows` defined (int64 [n]: each sequence's pooled token),
  // only those rows go on past attention: x is replaced by them and the result is [n, hidden].
  at::Tensor Forward(at::Tensor& x, const at::Tensor& delta, const PackedInput& in,
                     const RotaryInputs& rotary, Communicator& comm,
                     const at::Tensor& keep_rows) const;
  int64_t weight_bytes() const;

 private:
  double eps_;
  int64_t q_heads_;   // on this rank
  int64_t kv_heads_;  // on this rank
  int64_t head_dim_;
  int64_t intermediate_;  // on this rank
  at::ScalarType dtype_;  // compute dtype of matmuls and attention
  bool use_flash_;
  at::Tensor input_norm_;  // norm weights in fp32
  at::Tensor post_attention_norm_;
  at::Tensor q_norm_;  // Qwen3 only; undefined: no q/k norm
  at::Tensor k_norm_;
  ColumnParallelLinear qkv_proj_;      // q, k, v rows of this rank's heads, fused (bias: split too)
  RowParallelLinear o_proj_;           // all-reduce
  ColumnParallelLinear gate_up_proj_;  // gate and up rows of this rank's slice, fused
  RowParallelLinear down_proj_;        // all-reduce
  // Row-parallel biases, fp32, whole on every rank: added once to the fp32 residual stream (which
  // the all-reduced partial sums join), not to each rank's partial sum. Undefined: no bias.
  at::Tensor o_bias_;
  at::Tensor down_bias_;
};

class DecoderModel final : public EmbeddingModel {
 public:
  // Loads this rank's shard of every weight onto options.device. Checks `cancel` between layers.
  DecoderModel(const Checkpoint& checkpoint, const ModelConfig& config, const ModelOptions& options,
               const ProgressCallback& progress = nullptr,
               const std::atomic<bool>* cancel = nullptr);

  // Returns [n, hidden] fp32 on the device: the final-norm hidden states of each sequence pooled
  // per options().pooling. Every rank of the group must call it with the same batch.
  at::Tensor Forward(const PackedInput& in, Communicator& comm,
                     const LayerHook& hook = nullptr) const override;

  const ModelConfig& config() const override { return config_; }
  const ModelOptions& options() const override { return options_; }
  int64_t weight_bytes() const override;
  bool uses_flash_attention() const override;

 private:
  ModelConfig config_;
  ModelOptions options_;
  at::Tensor embed_tokens_;  // replicated; on the CPU kept in the checkpoint dtype
  at::Tensor norm_;
  RotaryEmbedding rotary_;
  std::vector<DecoderLayer> layers_;
};

}  // namespace qwen3
