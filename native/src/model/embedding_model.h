// The model interface the runtime serves: a packed batch of token ids in, one pooled hidden state
// per sequence out. Each family (the decoders of model/decoder_model.h, the encoders) implements
// it; CreateModel picks the implementation from ModelConfig::family. One instance holds one
// tensor-parallel rank's shard.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/progress.h"
#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/packed_input.h"
#include "parallel/communicator.h"

namespace qwen3 {

enum class Pooling { kLastToken, kCls, kMean };

struct ModelOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;  // compute dtype of weights and activations
  int rank = 0;                       // tensor-parallel rank and size
  int world = 1;
  Pooling pooling = Pooling::kLastToken;
};

// Called by Forward before each layer with the layer index (tests inject failures through it).
using LayerHook = std::function<void(int layer)>;

class EmbeddingModel {
 public:
  virtual ~EmbeddingModel() = default;
  // [n, hidden] fp32 on the device: each sequence's pooled hidden state per options().pooling
  // (mean pooling skips in.prompt_lengths tokens). Every rank of the group calls it with the same
  // batch.
  virtual at::Tensor Forward(const PackedInput& in, Communicator& comm,
                             const LayerHook& hook = nullptr) const = 0;
  virtual const ModelConfig& config() const = 0;
  virtual const ModelOptions& options() const = 0;
  virtual int64_t weight_bytes() const = 0;
  virtual bool uses_flash_attention() const = 0;
};

// Dispatch on config.family: ValidateCheckpoint checks every tensor the family reads (presence,
// dtype, shape from config) before any is loaded, throwing kModelLoadFailed naming the file and
// the tensor; CreateModel loads this rank's shard onto options.device, checking `cancel` between
// layers.
void ValidateCheckpoint(const Checkpoint& checkpoint, const ModelConfig& config);
std::unique_ptr<EmbeddingModel> CreateModel(const Checkpoint& checkpoint, const ModelConfig& config,
                                            const ModelOptions& options,
                                            const ProgressCallback& progress = nullptr,
                                            const std::atomic<bool>* cancel = nullptr);

}  // namespace qwen3
