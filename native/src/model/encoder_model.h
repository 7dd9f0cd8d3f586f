// The encoder families (BERT, XLM-RoBERTa) as an embedding model, as transformers' BertModel /
// XLMRobertaModel compute them: word + absolute position + token type 0 embeddings and LayerNorm,
// then post-norm layers of bidirectional self-attention (within each packed sequence) and a GELU
// MLP, each sublayer followed by residual add and LayerNorm. No pooler layer: sentence-transformers
// pools the last hidden state (cls, mean or last token, model/pooler.h). One instance holds one
// tensor-parallel rank's shard.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <string>
#include <vector>

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/embedding_model.h"
#include "model/layers.h"
#include "model/packed_input.h"
#include "parallel/communicator.h"

namespace qwen3 {

// Where a checkpoint keeps the encoder's tensors: at the top (BertModel / XLMRobertaModel, as
// sentence-transformers saves them) or under the "bert." / "roberta." prefix of the task heads'
// layouts (*ForMaskedLM, ...), found from the word embeddings. LayerNorm parameters may carry the
// original TensorFlow names gamma/beta, which transformers renames to weight/bias when it loads.
class EncoderTensorNames {
 public:
  // Throws kModelLoadFailed when no layout's word embeddings are present.
  explicit EncoderTensorNames(const Checkpoint& checkpoint);
  // The checkpoint's name of the unprefixed transformers name `name`.
  std::string operator()(const std::string& name) const;
  const std::string& prefix() const { return prefix_; }

 private:
  const Checkpoint& checkpoint_;
  std::string prefix_;
};

// Checks every tensor the encoder reads (presence, dtype, shape from config) before any is loaded.
// Throws kModelLoadFailed naming the file and the tensor.
void ValidateEncoderCheckpoint(const Checkpoint& checkpoint, const ModelConfig& config);

class EncoderLayer {
 public:
  EncoderLayer(const Checkpoint& checkpoint, const EncoderTensorNames& names,
               const ModelConfig& config, const ModelOptions& options, int index);

  // x: the layer's input, fp32 [T, hidden] (the previous LayerNorm's output). Returns the layer's
  // output in fp32. With `rows` defined (int indices into the T tokens), only those rows go on past
  // attention and the result is [rows, hidden].
  at::Tensor Forward(const at::Tensor& x, const PackedInput& in, Communicator& comm,
                     const at::Tensor& rows) const;
  int64_t weight_bytes() const;

 private:
  double eps_;
  int64_t heads_;  // on this rank
  int64_t head_dim_;
  ModelConfig::Gelu gelu_;
  at::ScalarType dtype_;  // compute dtype of matmuls and attention
  bool use_flash_;
  ColumnParallelLinear qkv_proj_;     // query, key, value rows (and biases) of this rank's heads
  RowParallelLinear out_proj_;        // attention.output.dense; all-reduce
  at::Tensor out_bias_;               // fp32, added once after the all-reduce
  at::Tensor attention_norm_weight_;  // fp32
  at::Tensor attention_norm_bias_;
  ColumnParallelLinear intermediate_;  // intermediate.dense rows (and bias) of this rank's slice
  RowParallelLinear output_;           // output.dense; all-reduce
  at::Tensor output_bias_;             // fp32, added once after the all-reduce
  at::Tensor output_norm_weight_;      // fp32
  at::Tensor output_norm_bias_;
};

class EncoderModel final : public EmbeddingModel {
 public:
  // Loads this rank's shard of every weight onto options.device. Checks `cancel` between layers.
  // Throws kInvalidArgument when options.world does not divide the heads and the intermediate size.
  EncoderModel(const Checkpoint& checkpoint, const ModelConfig& config, const ModelOptions& options,
               const ProgressCallback& progress = nullptr,
               const std::atomic<bool>* cancel = nullptr);

  at::Tensor Forward(const PackedInput& in, Communicator& comm,
                     const LayerHook& hook = nullptr) const override;

  const ModelConfig& config() const override { return config_; }
  const ModelOptions& options() const override { return options_; }
  int64_t weight_bytes() const override;
  bool uses_flash_attention() const override;

 private:
  // The embedding LayerNorm's output, fp32 [T, hidden].
  at::Tensor Embed(const PackedInput& in) const;

  ModelConfig config_;
  ModelOptions options_;
  at::Tensor word_embeddings_;  // replicated; on the CPU kept in the checkpoint dtype
  // fp32 [positions, hidden]: each position's row plus token type 0's row (every token's type).
  at::Tensor position_and_type_;
  at::Tensor embedding_norm_weight_;  // fp32
  at::Tensor embedding_norm_bias_;
  std::vector<EncoderLayer> layers_;
};

}  // namespace qwen3
