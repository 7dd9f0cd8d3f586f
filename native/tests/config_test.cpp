#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "loader/json.h"
#include "model/config.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::ExpectError;

ModelConfig Parse(const std::string& text) {
  return ModelConfig::FromJson(json::Parse(text), "config.json");
}

// `text` with the top-level field `key` set to `value` (a JSON literal), or removed when value is
// empty. Works on the one-field-per-line layout of testing::ConfigJson.
std::string Edit(std::string text, const std::string& key, const std::string& value) {
  const std::string needle = "\"" + key + "\": ";
  const size_t at = text.find(needle);
  if (at == std::string::npos) {
    if (!value.empty()) text.insert(text.find('{') + 1, needle + value + ",");
    return text;
  }
  const size_t line_end = text.find('\n', at);
  size_t value_end = line_end;
  if (text[value_end - 1] == ',') --value_end;
  if (value.empty()) {
    const bool last = text[line_end - 1] != ',';
    text.erase(at, line_end + 1 - at);
    if (last) {
      const size_t comma = text.rfind(',', at);
      text.erase(comma, 1);
    }
    return text;
  }
  return text.replace(at + needle.size(), value_end - at - needle.size(), value);
}

std::string TinyWith(const std::string& key, const std::string& value) {
  return Edit(testing::ConfigJson(testing::TinyConfig{}), key, value);
}

TEST(ModelConfigTest, ReadsTheTinyConfig) {
  ModelConfig c = Parse(testing::ConfigJson(testing::TinyConfig{}));
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.max_position_embeddings, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
}

TEST(ModelConfigTest, AppliesTransformersDefaults) {
  ModelConfig c = Parse(R"({"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 1,
      "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 10})");
  EXPECT_EQ(c.head_dim, 16);            // hidden / heads
  EXPECT_EQ(c.num_key_value_heads, 4);  // = heads
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e4);  // Qwen3Config default
  EXPECT_EQ(c.max_position_embeddings, 32768);
}

TEST(ModelConfigTest, AcceptsArchitecturesWithoutModelType) {
  EXPECT_EQ(Parse(TinyWith("model_type", "")).hidden_size, 64);
}

TEST(ModelConfigTest, RejectsOtherArchitectures) {
  ExpectError([] { Parse(TinyWith("model_type", "\"gpt2\"")); }, ErrorCode::kModelLoadFailed,
              {"config.json", "model_type \"gpt2\""});
  std::string llama = TinyWith("model_type", "");
  llama = llama.replace(llama.find("Qwen3ForCausalLM"), 16, "LlamaForCausalLM");
  ExpectError([&] { Parse(llama); }, ErrorCode::kModelLoadFailed, {"architectures"});
}

TEST(ModelConfigTest, RejectsWhatTheEngineDoesNotImplement) {
  const std::pair<std::string, std::string> cases[] = {
      {"rope_scaling", R"({"type": "yarn", "factor": 4.0})"},
      {"mlp_bias", "true"},
      {"hidden_act", "\"gelu\""},
      {"use_sliding_window", "true"},
  };
  for (const auto& [key, value] : cases) {
    ExpectError([&] { Parse(TinyWith(key, value)); }, ErrorCode::kModelLoadFailed,
                {"config.json", key});
  }
  ExpectError([] { Parse(TinyWith("num_key_value_heads", "3")); }, ErrorCode::kModelLoadFailed,
              {"num_key_value_heads"});
  ExpectError([] { Parse(TinyWith("head_dim", "15")); }, ErrorCode::kModelLoadFailed, {"head_dim"});
}

TEST(ModelConfigTest, NamesMissingOrMistypedFields) {
  ExpectError([] { Parse(TinyWith("hidden_size", "")); }, ErrorCode::kModelLoadFailed,
              {"config.json", "missing \"hidden_size\""});
  ExpectError([] { Parse(TinyWith("vocab_size", "\"many\"")); }, ErrorCode::kModelLoadFailed,
              {"\"vocab_size\" must be a positive integer"});
  ExpectError([] { Parse(TinyWith("num_hidden_layers", "0")); }, ErrorCode::kModelLoadFailed,
              {"num_hidden_layers"});
  ExpectError([] { Parse("[1, 2]"); }, ErrorCode::kModelLoadFailed, {"not a JSON object"});
}

TEST(ModelConfigTest, ReadsTransformers5RopeParameters) {
  const std::string base = Edit(TinyWith("rope_theta", ""), "rope_scaling", "");
  EXPECT_DOUBLE_EQ(
      Parse(Edit(base, "rope_parameters", R"({"rope_type": "default", "rope_theta": 5000.0})"))
          .rope_theta,
      5000.0);
  ExpectError(
      [&] { Parse(Edit(base, "rope_parameters", R"({"rope_type": "yarn", "rope_theta": 5.0})")); },
      ErrorCode::kModelLoadFailed, {"rope_parameters.rope_type"});
}

TEST(ModelConfigTest, ReadsEachDecoderFamily) {
  const ModelConfig qwen3 = Parse(testing::ConfigJson(testing::TinyConfig{}));
  EXPECT_EQ(qwen3.family, ModelFamily::kQwen3);
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_FALSE(qwen3.qkv_bias || qwen3.o_bias || qwen3.mlp_bias || qwen3.is_encoder());

  const ModelConfig qwen2 = Parse(testing::ConfigJson(testing::Qwen2Tiny()));
  EXPECT_EQ(qwen2.family, ModelFamily::kQwen2);
  EXPECT_EQ(qwen2.model_type, "qwen2");
  EXPECT_FALSE(qwen2.qk_norm);
  EXPECT_TRUE(qwen2.qkv_bias);  // whatever attention_bias says
  EXPECT_FALSE(qwen2.o_bias || qwen2.mlp_bias);
  EXPECT_EQ(qwen2.head_dim, 8);  // hidden_size / num_attention_heads

  const ModelConfig mistral = Parse(testing::ConfigJson(testing::MistralTiny()));
  EXPECT_EQ(mistral.family, ModelFamily::kMistral);
  EXPECT_FALSE(mistral.qk_norm || mistral.qkv_bias || mistral.o_bias || mistral.mlp_bias);
  EXPECT_EQ(mistral.sliding_window, 96);
  EXPECT_EQ(mistral.max_position_embeddings, 96);  // capped to the window
  const std::string no_window =
      Edit(testing::ConfigJson(testing::MistralTiny()), "sliding_window", "null");
  EXPECT_EQ(Parse(no_window).max_position_embeddings, 128);
  const std::string default_window =
      Edit(Edit(testing::ConfigJson(testing::MistralTiny()), "sliding_window", ""),
           "max_position_embeddings", "32768");
  EXPECT_EQ(Parse(default_window).max_position_embeddings, 4096);  // MistralConfig's default

  const ModelConfig llama = Parse(testing::ConfigJson(testing::LlamaTiny()));
  EXPECT_EQ(llama.family, ModelFamily::kLlama);
  EXPECT_TRUE(llama.qkv_bias && llama.o_bias && llama.mlp_bias);
  EXPECT_FALSE(llama.qk_norm);
  EXPECT_EQ(llama.rope_scaling.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(llama.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(llama.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(llama.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(llama.rope_scaling.original_max_position_embeddings, 32);
  // Biases count as parameters.
  EXPECT_EQ(llama.ParameterCount() - Parse(Edit(Edit(testing::ConfigJson(testing::LlamaTiny()),
                                                     "attention_bias", "false"),
                                                "mlp_bias", "false"))
                                         .ParameterCount(),
            2 * (128 + 2 * 64 + 64 + 2 * 128 + 64));  // q/k/v, o, gate/up, down

  // transformers 5 form: rope_parameters with the scaling inside; older configs say "type".
  const std::string llama5 = Edit(
      Edit(Edit(testing::ConfigJson(testing::LlamaTiny()), "rope_scaling", ""), "rope_theta", ""),
      "rope_parameters", R"({"rope_type": "linear", "factor": 2.5, "rope_theta": 1000.0})");
  EXPECT_EQ(Parse(llama5).rope_scaling.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(Parse(llama5).rope_scaling.factor, 2.5);
  EXPECT_DOUBLE_EQ(Parse(llama5).rope_theta, 1000.0);
  EXPECT_EQ(Parse(Edit(testing::ConfigJson(testing::LlamaTiny()), "rope_scaling",
                       R"({"type": "linear", "factor": 2.0})"))
                .rope_scaling.type,
            RopeType::kLinear);
}

TEST(ModelConfigTest, RefusesWhatADecoderFamilyWouldComputeDifferently) {
  const std::string llama = testing::ConfigJson(testing::LlamaTiny());
  const std::pair<std::string, std::vector<std::string>> cases[] = {
      {Edit(llama, "rope_scaling", R"({"rope_type": "dynamic", "factor": 2.0})"),
       {"rope_scaling.rope_type is \"dynamic\"", "rope_scaling is not supported"}},
      {Edit(llama, "rope_scaling", R"({"rope_type": "yarn", "factor": 2.0})"),
       {"rope_scaling.rope_type is \"yarn\""}},
      {Edit(llama, "rope_scaling", R"({"rope_type": "llama3", "factor": 8.0})"),
       {"rope_scaling.low_freq_factor is missing"}},
      {Edit(llama, "rope_scaling", R"({"rope_type": "linear"})"), {"rope_scaling.factor"}},
      {Edit(llama, "hidden_act", "\"gelu\""), {"hidden_act"}},
      {Edit(llama, "partial_rotary_factor", "0.5"), {"partial_rotary_factor"}},
      {Edit(testing::ConfigJson(testing::Qwen2Tiny()), "use_sliding_window", "true"),
       {"use_sliding_window"}},
      {Edit(testing::ConfigJson(testing::MistralTiny()), "sliding_window", "0"),
       {"sliding_window"}},
  };
  for (const auto& [text, needles] : cases) {
    try {
      Parse(text);
      ADD_FAILURE() << "accepted: " << needles.front();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kModelLoadFailed);
      for (const auto& needle : needles) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      }
    }
  }
}

TEST(ModelConfigTest, CountsQwen3Embedding4BParameters) {
  ModelConfig c = Parse(R"({"model_type": "qwen3", "hidden_size": 2560, "num_hidden_layers": 36,
      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
      "intermediate_size": 9728, "vocab_size": 151665})");
  EXPECT_EQ(c.ParameterCount() - c.vocab_size * c.hidden_size, 3633511936LL);
}

}  // namespace
}  // namespace qwen3
