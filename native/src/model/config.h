// The architecture read from a checkpoint's config.json. Only what the forward pass needs is kept;
// anything that would change the math and is not implemented (rope scaling, biases, sliding
// windows, another activation) is rejected by FromJson with a message naming the field.
#pragma once

#include <cstdint>
#include <string>

#include "loader/json.h"

namespace qwen3 {

// The architecture family, from config.json's model_type.
enum class ModelFamily { kQwen3, kQwen2, kMistral, kLlama, kBert, kXlmRoberta };

struct ModelConfig {
  std::string model_type = "qwen3";
  ModelFamily family = ModelFamily::kQwen3;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 32768;
  double rms_norm_eps = 1e-6;
  double rope_theta = 1e6;

  // `source` names the file in error messages. Throws qwen3::Error(kModelLoadFailed).
  static ModelConfig FromJson(const json::Value& root, const std::string& source);

  bool is_encoder() const {
    return family == ModelFamily::kBert || family == ModelFamily::kXlmRoberta;
  }
  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
  // Every parameter, the embedding table included.
  int64_t ParameterCount() const;
};

}  // namespace qwen3
