#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

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

// The spec's config.json with `key` set to `value` (a JSON literal), or removed when empty.
std::string With(const testing::EncoderSpec& spec, const std::string& key,
                 const std::string& value) {
  json::Value root = json::Parse(testing::EncoderConfigJson(spec));
  if (value.empty()) {
    root.erase(key);
  } else {
    root[key] = json::Parse(value);
  }
  return root.dump();
}

TEST(EncoderConfigTest, ReadsABertConfig) {
  const ModelConfig c = Parse(testing::EncoderConfigJson(testing::BertSpec()));
  EXPECT_EQ(c.family, ModelFamily::kBert);
  EXPECT_TRUE(c.is_encoder());
  EXPECT_EQ(c.model_type, "bert");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 4);  // multi-head: the shared tensor-parallel checks read it
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 128);
  EXPECT_EQ(c.vocab_size, 256);
  EXPECT_EQ(c.type_vocab_size, 2);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.position_offset, 0);
  EXPECT_EQ(c.position_embeddings, 40);
  EXPECT_EQ(c.max_position_embeddings, 40);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-12);
  EXPECT_EQ(c.hidden_act, ModelConfig::Gelu::kErf);
}

TEST(EncoderConfigTest, XlmRobertaPositionsStartAfterThePaddingIndex) {
  const ModelConfig c = Parse(testing::EncoderConfigJson(testing::XlmRobertaSpec()));
  EXPECT_EQ(c.family, ModelFamily::kXlmRoberta);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.position_offset, 2);
  EXPECT_EQ(c.position_embeddings, 42);
  // The longest sequence the table serves: multilingual-e5's 514 rows give 512 tokens.
  EXPECT_EQ(c.max_position_embeddings, 40);
  EXPECT_EQ(c.type_vocab_size, 1);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-5);
}

TEST(EncoderConfigTest, AppliesTransformersDefaults) {
  const testing::EncoderSpec roberta = testing::XlmRobertaSpec();
  std::string text = testing::EncoderConfigJson(roberta);
  for (const char* key : {"pad_token_id", "max_position_embeddings", "type_vocab_size",
                          "layer_norm_eps", "hidden_act", "position_embedding_type"}) {
    json::Value root = json::Parse(text);
    root.erase(key);
    text = root.dump();
  }
  const ModelConfig c = Parse(text);
  EXPECT_EQ(c.pad_token_id, 1);  // XLMRobertaConfig's default
  EXPECT_EQ(c.position_offset, 2);
  EXPECT_EQ(c.position_embeddings, 512);
  EXPECT_EQ(c.max_position_embeddings, 510);
  EXPECT_EQ(c.type_vocab_size, 2);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-12);
  EXPECT_EQ(c.hidden_act, ModelConfig::Gelu::kErf);
  EXPECT_EQ(Parse(With(testing::BertSpec(), "pad_token_id", "")).pad_token_id, 0);
}

TEST(EncoderConfigTest, ReadsTheTanhApproximationsOfGelu) {
  for (const char* act : {"gelu_new", "gelu_fast", "gelu_pytorch_tanh"}) {
    EXPECT_EQ(
        Parse(With(testing::BertSpec(), "hidden_act", std::string("\"") + act + "\"")).hidden_act,
        ModelConfig::Gelu::kTanh)
        << act;
  }
  EXPECT_EQ(Parse(With(testing::BertSpec(), "hidden_act", "\"gelu_python\"")).hidden_act,
            ModelConfig::Gelu::kErf);
}

TEST(EncoderConfigTest, RefusesWhatTheEngineDoesNotImplement) {
  const testing::EncoderSpec bert = testing::BertSpec();
  const struct {
    std::string key;
    std::string value;
    std::string needle;
  } cases[] = {
      {"position_embedding_type", "\"relative_key\"", "position_embedding_type \"relative_key\""},
      {"position_embedding_type", "\"relative_key_query\"", "position_embedding_type"},
      {"is_decoder", "true", "is_decoder"},
      {"add_cross_attention", "true", "add_cross_attention"},
      {"hidden_act", "\"relu\"", "hidden_act \"relu\""},
      {"hidden_act", "\"quick_gelu\"", "hidden_act \"quick_gelu\""},
      {"embedding_size", "128", "embedding_size"},
      {"num_attention_heads", "5", "not a multiple of num_attention_heads"},
      {"pad_token_id", "256", "pad_token_id"},
      {"pad_token_id", "-1", "pad_token_id"},
      {"hidden_size", "", "missing \"hidden_size\""},
      {"intermediate_size", "\"big\"", "intermediate_size"},
      {"layer_norm_eps", "0", "layer_norm_eps"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.key + " = " + c.value);
    ExpectError([&] { Parse(With(bert, c.key, c.value)); }, ErrorCode::kModelLoadFailed,
                {"config.json", c.needle});
  }
  ExpectError([&] { Parse(With(testing::XlmRobertaSpec(), "max_position_embeddings", "2")); },
              ErrorCode::kModelLoadFailed, {"max_position_embeddings", "padding index"});
  // A matching embedding_size and false flags change nothing.
  EXPECT_EQ(Parse(With(bert, "embedding_size", "64")).hidden_size, 64);
  EXPECT_EQ(Parse(With(bert, "is_decoder", "false")).family, ModelFamily::kBert);
}

TEST(EncoderConfigTest, CountsBgeBaseParameters) {
  // bge-base-en-v1.5 / bert-base: 109,482,240 parameters with BertPooler (768 * 768 + 768), which
  // sentence-transformers does not use.
  testing::EncoderSpec spec;
  spec.hidden = 768;
  spec.layers = 12;
  spec.heads = 12;
  spec.intermediate = 3072;
  spec.vocab = 30522;
  spec.max_positions = 512;
  EXPECT_EQ(Parse(testing::EncoderConfigJson(spec)).ParameterCount(),
            109482240 - (768 * 768 + 768));
}

}  // namespace
}  // namespace qwen3
