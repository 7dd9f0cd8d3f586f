#include "model/embedding_model.h"

#include "common/error.h"
#include "model/decoder_model.h"

namespace qwen3 {

void ValidateCheckpoint(const Checkpoint& checkpoint, const ModelConfig& config) {
  if (config.is_encoder()) {
    ThrowModelLoadFailed("model_type \"" + config.model_type + "\" is not supported yet");
  }
  ValidateDecoderCheckpoint(checkpoint, config);
}

std::unique_ptr<EmbeddingModel> CreateModel(const Checkpoint& checkpoint, const ModelConfig& config,
                                            const ModelOptions& options,
                                            const ProgressCallback& progress,
                                            const std::atomic<bool>* cancel) {
  if (config.is_encoder()) {
    ThrowModelLoadFailed("model_type \"" + config.model_type + "\" is not supported yet");
  }
  return std::make_unique<DecoderModel>(checkpoint, config, options, progress, cancel);
}

}  // namespace qwen3
