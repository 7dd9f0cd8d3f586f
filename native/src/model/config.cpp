#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace qwen3 {

namespace {

class ConfigReader {
 public:
  ConfigReader(const json::Value& root, const std::string& source) : root_(root), source_(source) {}

  [[noreturn]] void Fail(const std::string& message) const {
    ThrowModelLoadFailed(source_ + ": " + message);
  }

  const json::Value* Get(const char* key) const {
    const json::Value* v = json::Find(root_, key);
    return (v == nullptr || v->is_null()) ? nullptr : v;
  }

  int64_t PositiveInt(const char* key, const int64_t* fallback = nullptr) const {
    const json::Value* v = Get(key);
    if (v == nullptr) {
      if (fallback != nullptr) return *fallback;
      Fail(std::string("missing \"") + key + "\"");
    }
    if (!v->is_number()) Fail(std::string("\"") + key + "\" must be a positive integer");
    int64_t value = 0;
    try {
      value = json::AsInt64(*v);
    } catch (const json::TypeError&) {
      Fail(std::string("\"") + key + "\" must be a positive integer");
    }
    if (value <= 0 || value > (int64_t{1} << 31)) {
      Fail(std::string("\"") + key + "\" must be a positive integer, got " + std::to_string(value));
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

  const json::Value& root() const { return root_; }

 private:
  const json::Value& root_;
  const std::string& source_;
};

bool ListsQwen3Architecture(const json::Value* architectures) {
  if (architectures == nullptr || !architectures->is_array()) return false;
  for (const auto& a : *architectures) {
    if (a.is_string() && (a.get_ref<const std::string&>() == "Qwen3ForCausalLM" ||
                          a.get_ref<const std::string&>() == "Qwen3Model")) {
      return true;
    }
  }
  return false;
}

}  // namespace

ModelConfig ModelConfig::FromJson(const json::Value& root, const std::string& source) {
  ConfigReader r(root, source);
  if (!root.is_object()) r.Fail("not a JSON object");

  ModelConfig c;
  const json::Value* model_type = r.Get("model_type");
  if (model_type != nullptr) {
    if (!model_type->is_string() || model_type->get_ref<const std::string&>() != "qwen3") {
      r.Fail("model_type " +
             (model_type->is_string() ? "\"" + model_type->get_ref<const std::string&>() + "\""
                                      : "(not a string)") +
             " is not supported; this engine runs \"qwen3\" (Qwen3-Embedding) checkpoints");
    }
  } else if (!ListsQwen3Architecture(r.Get("architectures"))) {
    r.Fail("neither model_type \"qwen3\" nor architectures Qwen3ForCausalLM/Qwen3Model found");
  }

  c.hidden_size = r.PositiveInt("hidden_size");
  c.num_hidden_layers = r.PositiveInt("num_hidden_layers");
  c.num_attention_heads = r.PositiveInt("num_attention_heads");
  c.num_key_value_heads = r.PositiveInt("num_key_value_heads", &c.num_attention_heads);
  if (c.hidden_size % c.num_attention_heads != 0 && r.Get("head_dim") == nullptr) {
    r.Fail("head_dim is missing and hidden_size is not a multiple of num_attention_heads");
  }
  const int64_t default_head_dim = c.hidden_size / c.num_attention_heads;
  c.head_dim = r.PositiveInt("head_dim", &default_head_dim);
  c.intermediate_size = r.PositiveInt("intermediate_size");
  c.vocab_size = r.PositiveInt("vocab_size");
  const int64_t default_max_positions = 32768;
  c.max_position_embeddings = r.PositiveInt("max_position_embeddings", &default_max_positions);
  c.rms_norm_eps = r.PositiveNumber("rms_norm_eps", 1e-6);

  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    r.Fail("num_attention_heads (" + std::to_string(c.num_attention_heads) +
           ") is not a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) +
           ")");
  }
  if (c.head_dim % 2 != 0) r.Fail("head_dim must be even for rotary embeddings");

  const json::Value* act = r.Get("hidden_act");
  if (act != nullptr && (!act->is_string() || act->get_ref<const std::string&>() != "silu")) {
    r.Fail("hidden_act must be \"silu\"");
  }
  if (r.Flag("attention_bias")) r.Fail("attention_bias: true is not supported");
  if (r.Flag("mlp_bias")) r.Fail("mlp_bias: true is not supported");
  if (r.Flag("use_sliding_window")) r.Fail("use_sliding_window: true is not supported");
  if (const json::Value* layer_types = r.Get("layer_types")) {
    if (!layer_types->is_array()) r.Fail("layer_types must be an array");
    for (const auto& t : *layer_types) {
      if (!t.is_string() || t.get_ref<const std::string&>() != "full_attention") {
        r.Fail("layer_types other than \"full_attention\" are not supported");
      }
    }
  }
  if (r.Get("rope_scaling") != nullptr) {
    r.Fail("rope_scaling is not supported (it must be null or absent)");
  }

  // transformers 5 writes rope_parameters {rope_type, rope_theta}; older versions rope_theta.
  c.rope_theta = r.PositiveNumber("rope_theta", 10000.0);
  if (const json::Value* rope = r.Get("rope_parameters")) {
    if (!rope->is_object()) r.Fail("rope_parameters must be an object");
    const json::Value* type = json::Find(*rope, "rope_type");
    if (type != nullptr && !type->is_null() &&
        (!type->is_string() || type->get_ref<const std::string&>() != "default")) {
      r.Fail("rope_parameters.rope_type must be \"default\" (scaled RoPE is not supported)");
    }
    const json::Value* theta = json::Find(*rope, "rope_theta");
    if (theta != nullptr && !theta->is_null()) {
      if (!theta->is_number() || !(theta->get<double>() > 0)) {
        r.Fail("rope_parameters.rope_theta must be a positive number");
      }
      c.rope_theta = theta->get<double>();
    }
  }
  return c;
}

int64_t ModelConfig::ParameterCount() const {
  const int64_t attention = hidden_size * (q_size() + 2 * kv_size()) + q_size() * hidden_size +
                            2 * head_dim;  // q/k/v/o projections, q_norm, k_norm
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t norms = 2 * hidden_size;
  return vocab_size * hidden_size + num_hidden_layers * (attention + mlp + norms) + hidden_size;
}

}  // namespace qwen3
