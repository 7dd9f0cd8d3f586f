#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/error.h"
#include "model/encoder_config.h"

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

constexpr const char* kSupportedTypes =
    "\"qwen3\", \"qwen2\", \"mistral\", \"llama\", \"bert\" and \"xlm-roberta\" checkpoints";

const ModelFamily* FamilyOf(const std::string& model_type) {
  static const std::pair<const char*, ModelFamily> kFamilies[] = {
      {"qwen3", ModelFamily::kQwen3},     {"qwen2", ModelFamily::kQwen2},
      {"mistral", ModelFamily::kMistral}, {"llama", ModelFamily::kLlama},
      {"bert", ModelFamily::kBert},       {"xlm-roberta", ModelFamily::kXlmRoberta}};
  for (const auto& f : kFamilies) {
    if (model_type == f.first) return &f.second;
  }
  return nullptr;
}

// Only full attention layers (Qwen2/Qwen3 write layer_types in transformers 5).
void RequireFullAttention(const ConfigReader& r) {
  if (r.Flag("use_sliding_window")) r.Fail("use_sliding_window: true is not supported");
  if (const json::Value* layer_types = r.Get("layer_types")) {
    if (!layer_types->is_array()) r.Fail("layer_types must be an array");
    for (const auto& t : *layer_types) {
      if (!t.is_string() || t.get_ref<const std::string&>() != "full_attention") {
        r.Fail("layer_types other than \"full_attention\" are not supported");
      }
    }
  }
}

// What each decoder architecture adds to the common layer, as transformers builds it: biases are
// fixed by the architecture (Qwen2: q/k/v; Mistral: none) or configured (Qwen3, Llama).
void ReadDecoderFamily(const ConfigReader& r, ModelConfig& c) {
  switch (c.family) {
    case ModelFamily::kQwen3:
      c.qk_norm = true;
      c.qkv_bias = c.o_bias = r.Flag("attention_bias");
      if (r.Flag("mlp_bias")) r.Fail("mlp_bias: true is not supported for qwen3");
      RequireFullAttention(r);
      break;
    case ModelFamily::kQwen2:
      c.qk_norm = false;
      c.qkv_bias = true;  // Qwen2Attention: q/k/v with bias, o_proj without, whatever the config
      RequireFullAttention(r);
      break;
    case ModelFamily::kMistral:
      c.qk_norm = false;
      // Absent: MistralConfig's default window, 4096; null: none.
      if (json::Find(r.root(), "sliding_window") == nullptr) {
        c.sliding_window = 4096;
      } else if (r.Get("sliding_window") != nullptr) {
        c.sliding_window = r.PositiveInt("sliding_window");
      }
      if (c.sliding_window > 0) {
        c.max_position_embeddings = std::min(c.max_position_embeddings, c.sliding_window);
      }
      break;
    case ModelFamily::kLlama:
      c.qk_norm = false;
      c.qkv_bias = c.o_bias = r.Flag("attention_bias");
      c.mlp_bias = r.Flag("mlp_bias");
      break;
    case ModelFamily::kBert:
    case ModelFamily::kXlmRoberta:
      break;
  }
  if (const json::Value* partial = r.Get("partial_rotary_factor")) {
    if (!partial->is_number() || partial->get<double>() != 1.0) {
      r.Fail("partial_rotary_factor other than 1 is not supported");
    }
  }
}

double RopeNumber(const ConfigReader& r, const json::Value& rope, const char* object,
                  const char* key, const double* fallback) {
  const json::Value* v = json::Find(rope, key);
  if (v == nullptr || v->is_null()) {
    if (fallback != nullptr) return *fallback;
    r.Fail(std::string(object) + "." + key + " is missing");
  }
  if (!v->is_number() || !(v->get<double>() > 0) || !std::isfinite(v->get<double>())) {
    r.Fail(std::string(object) + "." + key + " must be a positive number");
  }
  return v->get<double>();
}

// transformers 5 writes rope_parameters {rope_type, rope_theta, factor, ...}; older versions
// rope_theta beside rope_scaling {rope_type (or type), factor, ...}.
void ReadRope(const ConfigReader& r, ModelConfig& c) {
  c.rope_theta = r.PositiveNumber("rope_theta", 10000.0);
  const json::Value* scaling = r.Get("rope_scaling");
  const json::Value* parameters = r.Get("rope_parameters");
  if (scaling != nullptr && !scaling->is_object()) r.Fail("rope_scaling must be an object or null");
  if (parameters != nullptr && !parameters->is_object()) {
    r.Fail("rope_parameters must be an object");
  }
  if (parameters != nullptr) {
    const double theta = c.rope_theta;
    c.rope_theta = RopeNumber(r, *parameters, "rope_parameters", "rope_theta", &theta);
  }
  const json::Value* rope = parameters != nullptr ? parameters : scaling;
  if (rope == nullptr) return;
  const char* object = parameters != nullptr ? "rope_parameters" : "rope_scaling";
  const json::Value* type = json::Find(*rope, "rope_type");
  if (type == nullptr || type->is_null()) type = json::Find(*rope, "type");
  std::string name = "default";
  if (type != nullptr && !type->is_null()) {
    if (!type->is_string()) r.Fail(std::string(object) + ".rope_type must be a string");
    name = type->get_ref<const std::string&>();
  }
  RopeScaling& s = c.rope_scaling;
  if (name == "default") {
    s.type = RopeType::kDefault;
    return;
  }
  if (name == "linear") {
    s.type = RopeType::kLinear;
    s.factor = RopeNumber(r, *rope, object, "factor", nullptr);
    return;
  }
  if (name == "llama3") {
    s.type = RopeType::kLlama3;
    s.factor = RopeNumber(r, *rope, object, "factor", nullptr);
    s.low_freq_factor = RopeNumber(r, *rope, object, "low_freq_factor", nullptr);
    s.high_freq_factor = RopeNumber(r, *rope, object, "high_freq_factor", nullptr);
    const double original =
        RopeNumber(r, *rope, object, "original_max_position_embeddings", nullptr);
    if (original != std::floor(original) || original > (int64_t{1} << 31)) {
      r.Fail(std::string(object) + ".original_max_position_embeddings must be an integer");
    }
    s.original_max_position_embeddings = static_cast<int64_t>(original);
    if (!(s.high_freq_factor > s.low_freq_factor)) {
      r.Fail(std::string(object) + ".high_freq_factor must be greater than low_freq_factor");
    }
    return;
  }
  r.Fail(std::string(object) + ".rope_type is \"" + name + "\": " + object +
         " is not supported for it (only default, linear and llama3 are)");
}

}  // namespace

ModelConfig ModelConfig::FromJson(const json::Value& root, const std::string& source) {
  ConfigReader r(root, source);
  if (!root.is_object()) r.Fail("not a JSON object");

  ModelConfig c;
  const json::Value* model_type = r.Get("model_type");
  if (model_type != nullptr) {
    const ModelFamily* family =
        model_type->is_string() ? FamilyOf(model_type->get_ref<const std::string&>()) : nullptr;
    if (family == nullptr) {
      r.Fail("model_type " +
             (model_type->is_string() ? "\"" + model_type->get_ref<const std::string&>() + "\""
                                      : "(not a string)") +
             " is not supported; this engine runs " + kSupportedTypes);
    }
    c.family = *family;
    c.model_type = model_type->get_ref<const std::string&>();
  } else if (!ListsQwen3Architecture(r.Get("architectures"))) {
    r.Fail("neither model_type \"qwen3\" nor architectures Qwen3ForCausalLM/Qwen3Model found");
  }

  // ---- Encoder families: engineer "enc"'s EncoderConfigFromJson reads them ----
  if (c.is_encoder()) {
    EncoderConfigFromJson(root, source, c);
    return c;
  }
  // ---- end of encoder families ----

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
  ReadDecoderFamily(r, c);
  ReadRope(r, c);
  return c;
}

int64_t ModelConfig::ParameterCount() const {
  if (is_encoder()) return EncoderParameterCount(*this);
  const int64_t attention = hidden_size * (q_size() + 2 * kv_size()) + q_size() * hidden_size +
                            (qk_norm ? 2 * head_dim : 0) +  // q_norm, k_norm
                            (qkv_bias ? q_size() + 2 * kv_size() : 0) + (o_bias ? hidden_size : 0);
  const int64_t mlp =
      3 * hidden_size * intermediate_size + (mlp_bias ? 2 * intermediate_size + hidden_size : 0);
  const int64_t norms = 2 * hidden_size;
  return vocab_size * hidden_size + num_hidden_layers * (attention + mlp + norms) + hidden_size;
}

}  // namespace qwen3
