// The architecture read from a checkpoint's config.json. Only what the forward pass needs is kept;
// anything that would change the math and is not implemented (dynamic/yarn rope scaling, sliding
// windows beyond the sequence limit, another activation) is rejected by FromJson with a message
// naming the field.
#pragma once

#include <cstdint>
#include <string>

#include "loader/json.h"

namespace qwen3 {

// The architecture family, from config.json's model_type.
enum class ModelFamily { kQwen3, kQwen2, kMistral, kLlama, kBert, kXlmRoberta };

// How the rotary inverse frequencies are derived (transformers' rope_type): kDefault
// theta^(-2i/D); kLinear divides them by `factor`; kLlama3 divides the low frequencies by
// `factor` and interpolates the middle band (Llama 3.1+).
enum class RopeType { kDefault, kLinear, kLlama3 };

struct RopeScaling {
  RopeType type = RopeType::kDefault;
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

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

  // Decoder families (Qwen3, Qwen2, Mistral, Llama).
  bool qk_norm = true;    // Qwen3: per-head RMSNorm of q and k before RoPE
  bool qkv_bias = false;  // q/k/v_proj biases (Qwen2 always; Qwen3/Llama attention_bias)
  bool o_bias = false;    // o_proj bias (Qwen3/Llama attention_bias)
  bool mlp_bias = false;  // gate/up/down_proj biases (Llama mlp_bias)
  RopeScaling rope_scaling;
  // Mistral's sliding window (0: none). max_position_embeddings is capped to it, so no sequence
  // is long enough for the window to mask anything: attention stays plain causal, exactly.
  int64_t sliding_window = 0;

  // ---- Encoder families (BERT, XLM-RoBERTa): fields read by EncoderConfigFromJson ----
  // transformers' GELU variants: exact (erf) or the tanh approximation (gelu_new & co).
  enum class Gelu { kErf, kTanh };
  double layer_norm_eps = 1e-12;
  int64_t type_vocab_size = 2;
  Gelu hidden_act = Gelu::kErf;
  int64_t pad_token_id = 0;
  // First row of the position table a sequence reads: pad_token_id + 1 for XLM-RoBERTa, else 0.
  int64_t position_offset = 0;
  // Rows of the position table (config.json's max_position_embeddings); max_position_embeddings
  // above is the longest sequence, position_embeddings - position_offset.
  int64_t position_embeddings = 0;
  // ---- end of encoder fields ----

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
