// config.json of the encoder families (BERT, XLM-RoBERTa), read into ModelConfig's encoder fields.
// ModelConfig::FromJson calls it once model_type has named an encoder family.
#pragma once

#include <cstdint>
#include <string>

#include "loader/json.h"
#include "model/config.h"

namespace qwen3 {

// Reads the encoder architecture of `root` into `config` (family and model_type already set), as
// transformers' BertConfig / XLMRobertaConfig default it. Anything that would change the math and
// is not implemented (relative position embeddings, a decoder or cross-attention configuration,
// another activation) is refused naming the field. `source` names the file in error messages.
// Throws qwen3::Error(kModelLoadFailed).
void EncoderConfigFromJson(const json::Value& root, const std::string& source, ModelConfig& config);

// Every parameter of the encoder, the embedding tables included (no pooler layer).
int64_t EncoderParameterCount(const ModelConfig& config);

}  // namespace qwen3
