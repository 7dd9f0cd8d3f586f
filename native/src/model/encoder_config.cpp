#include "model/encoder_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace qwen3 {

namespace {

class EncoderConfigReader {
 public:
  EncoderConfigReader(const json::Value& root, const std::string& source)
      : root_(root), source_(source) {}

  [[noreturn]] void Fail(const std::string& message) const {
    ThrowModelLoadFailed(source_ + ": " + message);
  }

  const json::Value* Get(const char* key) const {
    const json::Value* v = json::Find(root_, key);
    return (v == nullptr || v->is_null()) ? nullptr : v;
  }

  // An integer in [minimum, 2^31]; `fallback` when absent (else the field is required).
  int64_t Int(const char* key, int64_t minimum, const int64_t* fallback = nullptr) const {
    const json::Value* v = Get(key);
    if (v == nullptr) {
      if (fallback != nullptr) return *fallback;
      Fail(std::string("missing \"") + key + "\"");
    }
    const std::string kind = minimum > 0 ? "a positive integer" : "a non-negative integer";
    int64_t value = 0;
    try {
      if (!v->is_number()) throw json::TypeError("not a number");
      value = json::AsInt64(*v);
    } catch (const json::TypeError&) {
      Fail(std::string("\"") + key + "\" must be " + kind);
    }
    if (value < minimum || value > (int64_t{1} << 31)) {
      Fail(std::string("\"") + key + "\" must be " + kind + ", got " + std::to_string(value));
    }
    return value;
  }

  double PositiveNumber(const char* key, double fallback) const {
    const json::Value* v = Get(key);
    if (v == nullptr) return fallback;
    if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
      Fail(std::string("\"") + key + "\" must be a positive number");
    }
    return v->get<double>();
  }

  bool Flag(const char* key) const {
    const json::Value* v = Get(key);
    if (v == nullptr) return false;
    if (!v->is_boolean()) Fail(std::string("\"") + key + "\" must be a boolean");
    return v->get<bool>();
  }

  std::string String(const char* key, const char* fallback) const {
    const json::Value* v = Get(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) Fail(std::string("\"") + key + "\" must be a string");
    return v->get<std::string>();
  }

 private:
  const json::Value& root_;
  const std::string& source_;
};

// transformers' ACT2FN names of GELU: the exact (erf) form and the tanh approximation, which
// gelu_new, gelu_fast and gelu_pytorch_tanh all compute (up to rounding).
bool ParseGelu(const std::string& name, ModelConfig::Gelu* out) {
  if (name == "gelu" || name == "gelu_python") {
    *out = ModelConfig::Gelu::kErf;
    return true;
  }
  if (name == "gelu_new" || name == "gelu_fast" || name == "gelu_pytorch_tanh") {
    *out = ModelConfig::Gelu::kTanh;
    return true;
  }
  return false;
}

}  // namespace

void EncoderConfigFromJson(const json::Value& root, const std::string& source, ModelConfig& c) {
  EncoderConfigReader r(root, source);
  const bool roberta = c.family == ModelFamily::kXlmRoberta;

  c.hidden_size = r.Int("hidden_size", 1);
  c.num_hidden_layers = r.Int("num_hidden_layers", 1);
  c.num_attention_heads = r.Int("num_attention_heads", 1);
  if (c.hidden_size % c.num_attention_heads != 0) {
    r.Fail("hidden_size (" + std::to_string(c.hidden_size) +
           ") is not a multiple of num_attention_heads (" + std::to_string(c.num_attention_heads) +
           ")");
  }
  // Multi-head attention: the decoder-shaped fields the shared checks (tensor-parallel split,
  // engine info) read.
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.intermediate_size = r.Int("intermediate_size", 1);
  c.vocab_size = r.Int("vocab_size", 1);
  const int64_t default_types = 2;
  c.type_vocab_size = r.Int("type_vocab_size", 1, &default_types);
  c.layer_norm_eps = r.PositiveNumber("layer_norm_eps", 1e-12);

  const int64_t default_pad = roberta ? 1 : 0;
  c.pad_token_id = r.Int("pad_token_id", 0, &default_pad);
  if (c.pad_token_id >= c.vocab_size) {
    r.Fail("\"pad_token_id\" (" + std::to_string(c.pad_token_id) + ") is not below vocab_size (" +
           std::to_string(c.vocab_size) + ")");
  }
  // XLM-RoBERTa numbers positions from padding_idx + 1 (create_position_ids_from_input_ids), so
  // the first pad_token_id + 1 rows of its position table are never read by a real token.
  c.position_offset = roberta ? c.pad_token_id + 1 : 0;
  const int64_t default_positions = 512;
  c.position_embeddings = r.Int("max_position_embeddings", 1, &default_positions);
  if (c.position_embeddings <= c.position_offset) {
    r.Fail("\"max_position_embeddings\" (" + std::to_string(c.position_embeddings) +
           ") leaves no position after the padding index (pad_token_id " +
           std::to_string(c.pad_token_id) + ")");
  }
  c.max_position_embeddings = c.position_embeddings - c.position_offset;

  const std::string act = r.String("hidden_act", "gelu");
  if (!ParseGelu(act, &c.hidden_act)) {
    r.Fail(
        "hidden_act \"" + act +
        "\" is not supported (gelu, gelu_python, gelu_new, gelu_fast and gelu_pytorch_tanh are)");
  }
  const std::string positions = r.String("position_embedding_type", "absolute");
  if (positions != "absolute") {
    r.Fail("position_embedding_type \"" + positions + "\" is not supported (only \"absolute\")");
  }
  if (r.Flag("is_decoder"))
    r.Fail("is_decoder: true is not supported (bidirectional encoders only)");
  if (r.Flag("add_cross_attention")) r.Fail("add_cross_attention: true is not supported");
  if (r.Get("embedding_size") != nullptr && r.Int("embedding_size", 1) != c.hidden_size) {
    r.Fail("\"embedding_size\" other than hidden_size (a factorised embedding) is not supported");
  }
}

int64_t EncoderParameterCount(const ModelConfig& m) {
  const int64_t h = m.hidden_size;
  const int64_t i = m.intermediate_size;
  const int64_t embeddings = (m.vocab_size + m.position_embeddings + m.type_vocab_size) * h + 2 * h;
  const int64_t attention = 4 * h * h + 4 * h + 2 * h;  // q/k/v/o with biases, LayerNorm
  const int64_t mlp = 2 * h * i + i + h + 2 * h;        // intermediate, output, LayerNorm
  return embeddings + m.num_hidden_layers * (attention + mlp);
}

}  // namespace qwen3
