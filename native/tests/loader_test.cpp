#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/embedding_model.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::ExpectError;
using testing::TempDir;
using testing::TinyConfig;

using TensorList = std::vector<std::pair<std::string, at::Tensor>>;

// A complete model's tensors (random), which a test may then alter before writing.
TensorList ModelTensors(const TinyConfig& config) {
  TensorList tensors;
  for (const auto& [name, shape] : testing::TensorShapes(config)) {
    tensors.push_back({name, at::randn(shape)});
  }
  return tensors;
}

void WriteModel(const std::string& dir, const TinyConfig& config, const TensorList& tensors,
                const std::string& dtype = "BF16") {
  testing::MakeDirs(dir);
  testing::WriteFile(dir + "/config.json", testing::ConfigJson(config));
  testing::WriteSafetensors(dir + "/model.safetensors", tensors, dtype);
}

void OpenAndValidate(const std::string& dir) {
  const ModelConfig config = ModelConfig::FromJson(ReadConfigJson(dir), dir + "/config.json");
  auto checkpoint = Checkpoint::Open(dir);
  ValidateCheckpoint(*checkpoint, config);
}

TEST(CheckpointTest, LoadsASingleFile) {
  TempDir tmp;
  auto written = testing::WriteCheckpoint(tmp.path(), CheckpointSpec{});
  auto checkpoint = Checkpoint::Open(tmp.path());
  EXPECT_EQ(checkpoint->num_files(), 1u);
  for (const auto& [name, weight] : written.weights) {
    at::Tensor loaded = checkpoint->Get(name);
    EXPECT_EQ(loaded.scalar_type(), at::kBFloat16) << name;
    EXPECT_TRUE(at::equal(loaded.to(at::kFloat), weight)) << name;
  }
  EXPECT_NO_THROW(OpenAndValidate(tmp.path()));
}

TEST(CheckpointTest, LoadsShardsThroughTheIndexAndReportsEach) {
  TempDir tmp;
  CheckpointSpec spec;
  spec.shards = 3;
  auto written = testing::WriteCheckpoint(tmp.path(), spec);
  std::vector<std::string> lines;
  auto checkpoint =
      Checkpoint::Open(tmp.path(), [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(checkpoint->num_files(), 3u);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("model-00001-of-00003.safetensors"), std::string::npos) << lines[0];
  for (const auto& [name, weight] : written.weights) {
    EXPECT_TRUE(at::equal(checkpoint->Get(name).to(at::kFloat), weight)) << name;
  }
  EXPECT_NO_THROW(OpenAndValidate(tmp.path()));
}

TEST(CheckpointTest, AcceptsModelPrefixedNames) {
  TempDir tmp;
  CheckpointSpec spec;
  spec.model_prefix = true;
  spec.shards = 2;
  auto written = testing::WriteCheckpoint(tmp.path(), spec);
  auto checkpoint = Checkpoint::Open(tmp.path());
  EXPECT_TRUE(checkpoint->Has("layers.0.self_attn.q_proj.weight"));
  EXPECT_TRUE(
      at::equal(checkpoint->Get("norm.weight").to(at::kFloat), written.weights.at("norm.weight")));
  EXPECT_NO_THROW(OpenAndValidate(tmp.path()));
}

TEST(CheckpointTest, LoadsHalfAndFloatCheckpoints) {
  for (const std::string dtype : {"F16", "F32"}) {
    TempDir tmp;
    CheckpointSpec spec;
    spec.dtype = dtype;
    auto written = testing::WriteCheckpoint(tmp.path(), spec);
    auto checkpoint = Checkpoint::Open(tmp.path());
    at::Tensor t = checkpoint->Get("layers.1.mlp.down_proj.weight");
    EXPECT_EQ(t.scalar_type(), dtype == "F16" ? at::kHalf : at::kFloat);
    EXPECT_TRUE(at::equal(t.to(at::kFloat), written.weights.at("layers.1.mlp.down_proj.weight")));
  }
}

TEST(CheckpointTest, ShardGetterCopiesExactlyTheRankSlice) {
  TempDir tmp;
  auto written = testing::WriteCheckpoint(tmp.path(), CheckpointSpec{});
  auto checkpoint = Checkpoint::Open(tmp.path());
  const at::Tensor q = written.weights.at("layers.0.self_attn.q_proj.weight");  // [128, 64]
  const at::Tensor o = written.weights.at("layers.0.self_attn.o_proj.weight");  // [64, 128]
  for (int world : {1, 2, 4}) {
    for (int rank = 0; rank < world; ++rank) {
      at::Tensor rows = checkpoint->GetShard("layers.0.self_attn.q_proj.weight", 0, rank, world);
      EXPECT_TRUE(at::equal(rows.to(at::kFloat), q.chunk(world, 0)[rank]));
      at::Tensor cols = checkpoint->GetShard("layers.0.self_attn.o_proj.weight", 1, rank, world);
      EXPECT_TRUE(at::equal(cols.to(at::kFloat), o.chunk(world, 1)[rank].contiguous()));
    }
  }
  ExpectError([&] { checkpoint->GetShard("layers.0.self_attn.q_proj.weight", 1, 0, 3); },
              ErrorCode::kModelLoadFailed, {"model.safetensors", "q_proj", "does not divide"});
}

TEST(CheckpointTest, NamesAMissingDirectoryOrConfig) {
  TempDir tmp;
  ExpectError([&] { ReadConfigJson(tmp.Join("absent")); }, ErrorCode::kModelLoadFailed,
              {"absent", "does not exist"});
  ExpectError([&] { ReadConfigJson(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"missing file", "config.json"});
  testing::WriteFile(tmp.Join("config.json"), "{\"hidden_size\": 64,");
  ExpectError([&] { ReadConfigJson(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"config.json", "invalid JSON"});
}

TEST(CheckpointTest, NamesMissingWeightFiles) {
  TempDir tmp;
  testing::WriteFile(tmp.Join("config.json"), testing::ConfigJson(TinyConfig{}));
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.safetensors"});

  TempDir sharded;
  CheckpointSpec spec;
  spec.shards = 3;
  testing::WriteCheckpoint(sharded.path(), spec);
  testing::RemoveFile(sharded.Join("model-00002-of-00003.safetensors"));
  ExpectError([&] { Checkpoint::Open(sharded.path()); }, ErrorCode::kModelLoadFailed,
              {"missing file", "model-00002-of-00003.safetensors"});
}

TEST(CheckpointTest, NamesTheFileAndTensorOfATruncatedFile) {
  TempDir tmp;
  testing::WriteCheckpoint(tmp.path(), CheckpointSpec{});
  const std::string path = tmp.Join("model.safetensors");
  testing::ResizeFile(path, testing::FileSize(path) - 10);
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.safetensors", "tensor 'norm.weight'", "truncated"});

  testing::ResizeFile(path, 4);
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.safetensors", "too small"});
}

TEST(CheckpointTest, RejectsCorruptHeaders) {
  TempDir tmp;
  const std::string path = tmp.Join("model.safetensors");
  testing::WriteFile(tmp.Join("config.json"), testing::ConfigJson(TinyConfig{}));
  auto expect_open_error = [&](std::initializer_list<std::string> needles) {
    ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed, needles);
  };

  std::string huge(8, '\xff');
  testing::WriteFile(path, huge + "{}");
  expect_open_error({"model.safetensors", "header length"});

  testing::WriteSafetensorsRaw(path, "{\"a\": {\"dtype\": \"F32\", ", "");
  expect_open_error({"model.safetensors", "bad JSON header"});

  testing::WriteSafetensorsRaw(path,
                               R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}})",
                               std::string(4, '\0'));
  expect_open_error({"tensor 'w'", "unknown dtype 'F7'"});

  testing::WriteSafetensorsRaw(path,
                               R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})",
                               std::string(4, '\0'));
  expect_open_error({"tensor 'w'", "hold 4 bytes but shape and dtype need 8"});

  testing::WriteSafetensorsRaw(path,
                               R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                               R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                               std::string(12, '\0'));
  expect_open_error({"tensor 'b'", "overlaps tensor 'a'"});

  testing::WriteSafetensorsRaw(path,
                               R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
                               std::string(4, '\0'));
  expect_open_error({"tensor 'w'", "non-negative"});
}

TEST(CheckpointTest, NamesFileAndTensorOfAWrongShape) {
  TempDir tmp;
  TinyConfig config;
  TensorList tensors = ModelTensors(config);
  for (auto& [name, t] : tensors) {
    if (name == "layers.1.self_attn.k_proj.weight") t = at::randn({config.head_dim, config.hidden});
  }
  WriteModel(tmp.path(), config, tensors);
  ExpectError(
      [&] { OpenAndValidate(tmp.path()); }, ErrorCode::kModelLoadFailed,
      {"model.safetensors", "layers.1.self_attn.k_proj.weight", "shape [16, 64]", "[64, 64]"});
}

TEST(CheckpointTest, NamesFileAndTensorOfAWrongDtype) {
  TempDir tmp;
  TinyConfig config;
  WriteModel(tmp.path(), config, ModelTensors(config), "I32");
  ExpectError([&] { OpenAndValidate(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.safetensors", "embed_tokens.weight", "dtype I32"});
}

TEST(CheckpointTest, NamesAMissingTensor) {
  TempDir tmp;
  TinyConfig config;
  TensorList tensors = ModelTensors(config);
  tensors.erase(
      std::remove_if(tensors.begin(), tensors.end(),
                     [](const auto& t) { return t.first == "layers.1.mlp.up_proj.weight"; }),
      tensors.end());
  WriteModel(tmp.path(), config, tensors);
  ExpectError([&] { OpenAndValidate(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"layers.1.mlp.up_proj.weight", "missing", "model.safetensors"});
}

TEST(CheckpointTest, RejectsDuplicateTensorsAcrossPrefixes) {
  TempDir tmp;
  TinyConfig config;
  TensorList tensors = ModelTensors(config);
  tensors.push_back({"model.norm.weight", at::randn({config.hidden})});
  WriteModel(tmp.path(), config, tensors);
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.norm.weight", "norm.weight"});
}

TEST(CheckpointTest, ChecksTheIndexAgainstTheShards) {
  TempDir tmp;
  CheckpointSpec spec;
  spec.shards = 2;
  testing::WriteCheckpoint(tmp.path(), spec);
  const std::string index = tmp.Join("model.safetensors.index.json");
  // norm.weight is in the second shard, embed_tokens.weight in the first.
  testing::WriteFile(index, R"({"weight_map": {"norm.weight": "model-00001-of-00002.safetensors",
                                               "embed_tokens.weight": "model-00001-of-00002.safetensors"}})");
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.safetensors.index.json", "norm.weight", "does not contain it"});

  testing::WriteFile(index, R"({"weight_map": {"norm.weight": "../elsewhere.safetensors"}})");
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed,
              {"model.safetensors.index.json", "invalid file name"});

  testing::WriteFile(index, R"({"metadata": {}})");
  ExpectError([&] { Checkpoint::Open(tmp.path()); }, ErrorCode::kModelLoadFailed, {"weight_map"});
}

}  // namespace
}  // namespace qwen3
