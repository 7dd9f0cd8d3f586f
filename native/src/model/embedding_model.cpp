#include "model/embedding_model.h"

#include "common/error.h"
#include "model/decoder_model.h"
#include "model/encoder_model.h"

namespace qwen3 {

void ValidateCheckpoint(const Checkpoint& checkpoint, const ModelConfig& config) {
  if (config.is_encoder()) {
    ValidateEncoderCheckpoint(checkpoint, config);
  } else {
    ValidateDecoderCheckpoint(checkpoint, config);
  }
}

std::unique_ptr<EmbeddingModel> CreateModel(const Checkpoint& checkpoint, const ModelConfig& config,
                                            const ModelOptions& options,
                                            const ProgressCallback& progress,
                                            const std::atomic<bool>* cancel) {
  if (config.is_encoder()) {
    return std::make_unique<EncoderModel>(checkpoint, config, options, progress, cancel);
  }
  return std::make_unique<DecoderModel>(checkpoint, config, options, progress, cancel);
}

}  // namespace qwen3
