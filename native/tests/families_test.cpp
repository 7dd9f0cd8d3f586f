// The decoder families beside Qwen3 (Qwen2, Mistral, Llama), the pooling modes, Dense layers and
// normalize=false, through the engine against the plain reference of reference_model.h.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model/dense.h"
#include "model/layers.h"
#include "model/packed_input.h"
#include "model/pooler.h"
#include "reference_model.h"
#include "runtime/engine.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::ExpectError;
using testing::TempDir;
using testing::TinyConfig;

struct Family {
  std::string name;
  TinyConfig config;
};

void PrintTo(const Family& family, std::ostream* os) { *os << family.name; }

std::vector<Family> Families() {
  TinyConfig linear = testing::LlamaTiny();
  linear.rope_type = "linear";
  linear.rope_factor = 4.0;
  TinyConfig qwen3_bias;
  qwen3_bias.qkv_bias = qwen3_bias.o_bias = true;
  return {{"qwen3", TinyConfig{}},
          {"qwen3_attention_bias", qwen3_bias},
          {"qwen2", testing::Qwen2Tiny()},
          {"mistral", testing::MistralTiny()},
          {"llama3_rope", testing::LlamaTiny()},
          {"llama_linear_rope", linear}};
}

std::vector<int32_t> RandomIds(int64_t length, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor t = at::randint(vocab, {length}, gen, at::TensorOptions().dtype(at::kInt));
  return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + length);
}

PackedBatch Pack(const std::vector<std::vector<int32_t>>& sequences, int32_t dims,
                 std::vector<int32_t> prompt_lengths = {}) {
  PackedBatch batch;
  batch.cu_seqlens.push_back(0);
  for (const auto& ids : sequences) {
    batch.token_ids.insert(batch.token_ids.end(), ids.begin(), ids.end());
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.dimensions.push_back(dims);
  }
  batch.prompt_lengths = std::move(prompt_lengths);
  return batch;
}

std::vector<float> Normalized(const at::Tensor& row, int64_t dims) {
  at::Tensor head = row.to(at::kDouble).narrow(0, 0, dims);
  head = head / head.norm();
  head = head.to(at::kFloat).contiguous();
  return std::vector<float>(head.data_ptr<float>(), head.data_ptr<float>() + dims);
}

void ExpectRowsClose(const std::vector<float>& actual,
                     const std::vector<std::vector<float>>& rows) {
  size_t offset = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto d = static_cast<int64_t>(rows[i].size());
    ASSERT_LE(offset + rows[i].size(), actual.size());
    EXPECT_GE(testing::Cosine(actual.data() + offset, rows[i].data(), d), 0.99999) << "row " << i;
    for (int64_t j = 0; j < d; ++j) {
      EXPECT_NEAR(actual[offset + static_cast<size_t>(j)], rows[i][static_cast<size_t>(j)], 1e-3)
          << "row " << i << " column " << j;
    }
    offset += rows[i].size();
  }
  EXPECT_EQ(offset, actual.size());
}

class FamilyTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override {
    spec_.config = GetParam().config;
    spec_.seed = 7;
    written_ = testing::WriteCheckpoint(dir_.path(), spec_);
    sequences_ = {RandomIds(1, 256, 1), RandomIds(7, 256, 2), RandomIds(33, 256, 3),
                  RandomIds(96, 256, 4)};
  }

  std::unique_ptr<Engine> Load(const std::string& pooling, int tp = 1) const {
    EngineOptions options;
    options.model_path = dir_.path();
    options.tensor_parallel_size = tp;
    options.cpu_threads = 2;
    options.pooling = pooling;
    return Engine::Load(options);
  }

  at::Tensor Hidden(size_t i) const {
    return testing::ReferenceHidden(written_.weights, spec_.config, sequences_[i]);
  }

  TempDir dir_;
  CheckpointSpec spec_;
  testing::WrittenCheckpoint written_;
  std::vector<std::vector<int32_t>> sequences_;
};

TEST_P(FamilyTest, LastTokenPoolingMatchesThePlainReference) {
  auto engine = Load("lasttoken");
  EXPECT_EQ(engine->Info().model_type, spec_.config.model_type);
  std::vector<std::vector<float>> expected;
  for (const auto& ids : sequences_) {
    expected.push_back(testing::ReferenceEmbedding(written_.weights, spec_.config, ids, 64));
  }
  ExpectRowsClose(engine->Embed(Pack(sequences_, 64)), expected);
}

TEST_P(FamilyTest, FirstTokenAndMeanPoolingMatchTheirDirectComputation) {
  auto cls = Load("cls");
  std::vector<std::vector<float>> first_rows;
  for (size_t i = 0; i < sequences_.size(); ++i) first_rows.push_back(Normalized(Hidden(i)[0], 48));
  ExpectRowsClose(cls->Embed(Pack(sequences_, 48)), first_rows);

  // sentence-transformers with include_prompt = false: the mean over the tokens past the prompt.
  auto mean = Load("mean");
  const std::vector<int32_t> prompts = {0, 3, 10, 95};
  std::vector<std::vector<float>> mean_rows;
  for (size_t i = 0; i < sequences_.size(); ++i) {
    at::Tensor h = Hidden(i);
    const int64_t p = prompts[i];
    mean_rows.push_back(Normalized(h.narrow(0, p, h.size(0) - p).mean(0), 48));
  }
  ExpectRowsClose(mean->Embed(Pack(sequences_, 48, prompts)), mean_rows);
}

TEST_P(FamilyTest, TwoTensorParallelRanksMatchOne) {
  for (const std::string pooling : {"lasttoken", "mean"}) {
    const PackedBatch batch = Pack(sequences_, 64, {0, 1, 2, 3});
    const std::vector<float> one = Load(pooling, 1)->Embed(batch);
    const std::vector<float> two = Load(pooling, 2)->Embed(batch);
    ASSERT_EQ(one.size(), two.size());
    for (size_t j = 0; j < one.size(); ++j) EXPECT_NEAR(one[j], two[j], 1e-5) << pooling << j;
  }
}

INSTANTIATE_TEST_SUITE_P(Decoders, FamilyTest, ::testing::ValuesIn(Families()),
                         [](const ::testing::TestParamInfo<Family>& info) {
                           return info.param.name;
                         });

TEST(MistralTest, SequencesBeyondTheSlidingWindowAreRefused) {
  TempDir dir;
  CheckpointSpec spec;
  spec.config = testing::MistralTiny();
  testing::WriteCheckpoint(dir.path(), spec);
  EngineOptions options;
  options.model_path = dir.path();
  auto engine = Engine::Load(options);
  EXPECT_EQ(engine->Info().max_position_embeddings, spec.config.sliding_window);
  ExpectError([&] { engine->Embed(Pack({RandomIds(97, 256, 5)}, 64)); },
              ErrorCode::kInvalidArgument, {"97 tokens", "at most 96"});
}

TEST(RotaryScalingTest, InverseFrequenciesFollowTransformersFormulas) {
  for (const TinyConfig& c : {testing::LlamaTiny(), [] {
                                TinyConfig linear = testing::LlamaTiny();
                                linear.rope_type = "linear";
                                linear.rope_factor = 4.0;
                                return linear;
                              }()}) {
    RopeScaling scaling;
    scaling.type = c.rope_type == "linear" ? RopeType::kLinear : RopeType::kLlama3;
    scaling.factor = c.rope_factor;
    scaling.low_freq_factor = c.rope_low_freq_factor;
    scaling.high_freq_factor = c.rope_high_freq_factor;
    scaling.original_max_position_embeddings = c.rope_original_max_positions;
    const RotaryEmbedding rotary(c.head_dim, c.theta, at::kCPU, scaling);
    const std::vector<double> expected = testing::ReferenceInvFreq(c);
    const at::Tensor actual = rotary.inv_freq().to(at::kDouble).contiguous();
    ASSERT_EQ(actual.numel(), static_cast<int64_t>(expected.size()));
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_NEAR(actual.data_ptr<double>()[i] / expected[i], 1.0, 1e-6) << c.rope_type << i;
    }
  }
}

TEST(PoolHiddenTest, PoolsEachSequencesRowsAsTheModeSays) {
  const PackedBatch batch = Pack({{1, 2, 3}, {4}, {5, 6, 7, 8, 9}}, 32, {1, 0, 3});
  const PackedInput in = PackedInput::Make(batch, at::kCPU);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor hidden = at::randn({9, 6}, gen, at::TensorOptions().dtype(at::kFloat));
  const std::vector<std::pair<int64_t, int64_t>> spans = {{0, 3}, {3, 4}, {4, 9}};
  const at::Tensor last = PoolHidden(hidden, in, Pooling::kLastToken);
  const at::Tensor first = PoolHidden(hidden, in, Pooling::kCls);
  const at::Tensor mean = PoolHidden(hidden, in, Pooling::kMean);
  for (size_t s = 0; s < spans.size(); ++s) {
    const auto [begin, end] = spans[s];
    const int64_t from = begin + batch.prompt_lengths[s];
    EXPECT_TRUE(at::equal(last[static_cast<int64_t>(s)], hidden[end - 1])) << s;
    EXPECT_TRUE(at::equal(first[static_cast<int64_t>(s)], hidden[begin])) << s;
    EXPECT_TRUE(at::allclose(mean[static_cast<int64_t>(s)],
                             hidden.narrow(0, from, end - from).mean(0), 1e-6, 1e-6))
        << s;
  }
  // Rows already pooled (one per sequence) pass through for last/first.
  EXPECT_TRUE(at::equal(PoolHidden(last, in, Pooling::kLastToken), last));
}

TEST(PackedBatchTest, PromptLengthsAreCheckedAgainstEachSequence) {
  BatchLimits limits;
  limits.vocab_size = 256;
  limits.hidden_size = 64;
  limits.max_position_embeddings = 128;
  ValidateBatch(Pack({{1, 2, 3}, {4}}, 32, {2, 0}), limits);
  ExpectError(
      [&] {
        ValidateBatch(Pack({{1, 2, 3}, {4}}, 32, {2}), limits);
      },
      ErrorCode::kInvalidArgument, {"promptLengths has 1 entries for 2 sequences"});
  ExpectError(
      [&] {
        ValidateBatch(Pack({{1, 2, 3}, {4}}, 32, {0, 1}), limits);
      },
      ErrorCode::kInvalidArgument, {"promptLengths[1] = 1"});
  ExpectError(
      [&] {
        ValidateBatch(Pack({{1, 2, 3}, {4}}, 32, {-1, 0}), limits);
      },
      ErrorCode::kInvalidArgument, {"promptLengths[0] = -1"});
}

// A sentence-transformers Dense module directory: config.json and model.safetensors.
at::Tensor WriteDense(const std::string& dir, int64_t in, int64_t out, bool bias,
                      const std::string& activation, uint64_t seed, at::Tensor* bias_out) {
  testing::MakeDirs(dir);
  testing::WriteFile(dir + "/config.json",
                     "{\"in_features\": " + std::to_string(in) + ", \"out_features\": " +
                         std::to_string(out) + ", \"bias\": " + (bias ? "true" : "false") +
                         ", \"activation_function\": \"" + activation + "\"}");
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor weight = at::randn({out, in}, gen) / std::sqrt(static_cast<double>(in));
  std::vector<std::pair<std::string, at::Tensor>> tensors = {{"linear.weight", weight}};
  if (bias) {
    *bias_out = 0.1 * at::randn({out}, gen);
    tensors.push_back({"linear.bias", *bias_out});
  }
  testing::WriteSafetensors(dir + "/model.safetensors", tensors, "F32");
  return weight;
}

TEST(DenseTest, DenseLayersApplyAfterPoolingAndNormalizeFalseOnlyTruncates) {
  TempDir dir;
  CheckpointSpec spec;
  spec.config = testing::Qwen2Tiny();
  const auto written = testing::WriteCheckpoint(dir.Join("model"), spec);
  at::Tensor b1;
  at::Tensor unused;
  const at::Tensor w1 =
      WriteDense(dir.Join("2_Dense"), 64, 48, true, "torch.nn.modules.activation.Tanh", 1, &b1);
  const at::Tensor w2 = WriteDense(dir.Join("3_Dense"), 48, 40, false,
                                   "torch.nn.modules.linear.Identity", 2, &unused);

  EngineOptions options;
  options.model_path = dir.Join("model");
  options.dense_layers = {dir.Join("2_Dense"), dir.Join("3_Dense")};
  options.normalize = false;
  auto engine = Engine::Load(options);
  EXPECT_EQ(engine->Info().output_dimension, 40);
  EXPECT_EQ(engine->Info().hidden_size, 64);

  const std::vector<std::vector<int32_t>> sequences = {RandomIds(5, 256, 8), RandomIds(12, 256, 9)};
  PackedBatch batch = Pack(sequences, 40);
  batch.dimensions = {40, 32};
  const std::vector<float> out = engine->Embed(batch);
  ASSERT_EQ(out.size(), 72u);
  size_t offset = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const at::Tensor last = testing::ReferenceHidden(written.weights, spec.config, sequences[i])
                                .select(0, static_cast<int64_t>(sequences[i].size()) - 1);
    const at::Tensor dense1 = at::tanh(at::matmul(w1.to(at::kDouble), last) + b1.to(at::kDouble));
    const at::Tensor expected = at::matmul(w2.to(at::kDouble), dense1);
    const auto dims = batch.dimensions[i];
    for (int32_t j = 0; j < dims; ++j) {
      EXPECT_NEAR(out[offset + static_cast<size_t>(j)], expected[j].item<double>(), 1e-4)
          << "row " << i << " column " << j;
    }
    offset += static_cast<size_t>(dims);
  }
  // Matryoshka sizes are checked against the last Dense layer's out_features.
  batch.dimensions = {41, 32};
  ExpectError([&] { engine->Embed(batch); }, ErrorCode::kInvalidArgument, {"dimensions[0] = 41"});
}

TEST(DenseTest, RefusesWhatItCannotApply) {
  TempDir dir;
  at::Tensor bias;
  WriteDense(dir.Join("relu"), 64, 48, true, "torch.nn.modules.activation.ReLU", 1, &bias);
  WriteDense(dir.Join("narrow"), 32, 48, true, "torch.nn.modules.activation.Tanh", 1, &bias);
  ExpectError([&] { DenseLayers::Load({dir.Join("relu")}, 64); }, ErrorCode::kModelLoadFailed,
              {"relu/config.json", "activation_function", "ReLU"});
  ExpectError([&] { DenseLayers::Load({dir.Join("narrow")}, 64); }, ErrorCode::kModelLoadFailed,
              {"narrow/config.json", "in_features is 32"});
  ExpectError([&] { DenseLayers::Load({dir.Join("missing")}, 64); }, ErrorCode::kModelLoadFailed,
              {"missing"});
}

}  // namespace
}  // namespace qwen3
