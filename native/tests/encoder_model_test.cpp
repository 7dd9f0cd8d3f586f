// The encoder families against the padded-batch reference of reference_model.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/embedding_model.h"
#include "model/encoder_model.h"
#include "model/packed_input.h"
#include "parallel/communicator.h"
#include "reference_model.h"
#include "runtime/engine.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::EncoderSpec;
using testing::TempDir;

PackedBatch Pack(const std::vector<std::vector<int32_t>>& sequences,
                 const std::vector<int32_t>& prompt_lengths = {}) {
  PackedBatch batch;
  batch.cu_seqlens.push_back(0);
  for (const auto& s : sequences) {
    batch.token_ids.insert(batch.token_ids.end(), s.begin(), s.end());
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.dimensions.push_back(64);
  }
  batch.prompt_lengths = prompt_lengths;
  return batch;
}

std::vector<int32_t> RandomIds(int64_t length, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor t = at::randint(vocab, {length}, gen, at::TensorOptions().dtype(at::kInt));
  return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + length);
}

const char* Name(Pooling p) {
  return p == Pooling::kCls ? "cls" : p == Pooling::kMean ? "mean" : "lasttoken";
}

struct Loaded {
  testing::WrittenCheckpoint written;
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
};

Loaded Write(const std::string& dir, const EncoderSpec& spec) {
  Loaded loaded;
  loaded.written = testing::WriteEncoderCheckpoint(dir, spec);
  loaded.config = ModelConfig::FromJson(ReadConfigJson(dir), "config.json");
  loaded.checkpoint = Checkpoint::Open(dir);
  ValidateCheckpoint(*loaded.checkpoint, loaded.config);
  return loaded;
}

std::unique_ptr<EmbeddingModel> Model(const Loaded& loaded, Pooling pooling, int rank = 0,
                                      int world = 1) {
  ModelOptions options;
  options.pooling = pooling;
  options.rank = rank;
  options.world = world;
  return CreateModel(*loaded.checkpoint, loaded.config, options);
}

// The model's pooled rows [n, hidden] (fp32, before normalisation) on one rank.
at::Tensor Pooled(const EmbeddingModel& model, const PackedBatch& batch) {
  auto group = MakeSoloGroup();
  return model.Forward(PackedInput::Make(batch, at::kCPU), group->rank(0));
}

void ExpectClose(const at::Tensor& actual, const at::Tensor& expected, double tolerance) {
  ASSERT_EQ(actual.sizes(), expected.sizes());
  for (int64_t i = 0; i < actual.size(0); ++i) {
    at::Tensor a = actual[i].to(at::kDouble);
    at::Tensor e = expected[i].to(at::kDouble);
    const double cosine =
        (a * e).sum().item<double>() / (a.norm().item<double>() * e.norm().item<double>());
    EXPECT_GE(cosine, 0.99999) << "row " << i;
    EXPECT_LT((a - e).abs().max().item<double>(), tolerance) << "row " << i;
  }
}

void ExpectMatchesReference(const Loaded& loaded, const EncoderSpec& spec, Pooling pooling,
                            const std::vector<std::vector<int32_t>>& sequences,
                            const std::vector<int32_t>& prompt_lengths = {},
                            double tolerance = 1e-4) {
  SCOPED_TRACE(spec.model_type + " " + Name(pooling));
  auto model = Model(loaded, pooling);
  const at::Tensor pooled = Pooled(*model, Pack(sequences, prompt_lengths));
  EXPECT_EQ(pooled.scalar_type(), at::kFloat);
  ExpectClose(pooled,
              testing::ReferenceEncoderPooled(loaded.written.weights, spec, sequences,
                                              Name(pooling), prompt_lengths),
              tolerance);
}

std::vector<std::vector<int32_t>> Sequences(const EncoderSpec& spec) {
  return {RandomIds(1, spec.vocab, 1), RandomIds(6, spec.vocab, 2), RandomIds(17, spec.vocab, 3),
          RandomIds(spec.max_sequence(), spec.vocab, 4)};
}

TEST(EncoderModelTest, BertMatchesThePaddedReferenceForEveryPooling) {
  TempDir tmp;
  const EncoderSpec spec = testing::BertSpec();
  const Loaded loaded = Write(tmp.path(), spec);
  const auto sequences = Sequences(spec);
  ExpectMatchesReference(loaded, spec, Pooling::kCls, sequences);
  ExpectMatchesReference(loaded, spec, Pooling::kMean, sequences);
  ExpectMatchesReference(loaded, spec, Pooling::kMean, sequences, {0, 2, 5, 1});
  ExpectMatchesReference(loaded, spec, Pooling::kLastToken, sequences);
}

TEST(EncoderModelTest, XlmRobertaMatchesThePaddedReferenceForEveryPooling) {
  TempDir tmp;
  const EncoderSpec spec = testing::XlmRobertaSpec();
  const Loaded loaded = Write(tmp.path(), spec);
  auto sequences = Sequences(spec);
  // A padding id inside a text keeps position padding_idx and shifts the later positions, as
  // create_position_ids_from_input_ids numbers them.
  sequences[2][4] = static_cast<int32_t>(spec.pad_token_id);
  sequences[2][5] = static_cast<int32_t>(spec.pad_token_id);
  ExpectMatchesReference(loaded, spec, Pooling::kCls, sequences);
  ExpectMatchesReference(loaded, spec, Pooling::kMean, sequences);
  ExpectMatchesReference(loaded, spec, Pooling::kMean, sequences, {0, 3, 2, 7});
  ExpectMatchesReference(loaded, spec, Pooling::kLastToken, sequences);
}

TEST(EncoderModelTest, ReadsTheTanhGelu) {
  TempDir tmp;
  EncoderSpec spec = testing::BertSpec();
  spec.hidden_act = "gelu_new";
  const Loaded loaded = Write(tmp.path(), spec);
  ExpectMatchesReference(loaded, spec, Pooling::kMean, Sequences(spec));
  // The tanh form is not the erf form: the reference for "gelu" differs.
  EncoderSpec erf = spec;
  erf.hidden_act = "gelu";
  const at::Tensor tanh_ref =
      testing::ReferenceEncoderPooled(loaded.written.weights, spec, Sequences(spec), "mean");
  const at::Tensor erf_ref =
      testing::ReferenceEncoderPooled(loaded.written.weights, erf, Sequences(spec), "mean");
  EXPECT_GT((tanh_ref - erf_ref).abs().max().item<double>(), 1e-4);
}

TEST(EncoderModelTest, ASequenceEmbedsTheSameAloneOrPacked) {
  for (const EncoderSpec& spec : {testing::BertSpec(), testing::XlmRobertaSpec()}) {
    TempDir tmp;
    const Loaded loaded = Write(tmp.path(), spec);
    const auto sequences = Sequences(spec);
    for (Pooling pooling : {Pooling::kCls, Pooling::kMean}) {
      SCOPED_TRACE(spec.model_type + " " + Name(pooling));
      auto model = Model(loaded, pooling);
      const std::vector<int32_t> prompts = {0, 1, 3, 2};
      const at::Tensor packed = Pooled(*model, Pack(sequences, prompts));
      for (size_t i = 0; i < sequences.size(); ++i) {
        const at::Tensor alone = Pooled(*model, Pack({sequences[i]}, {prompts[i]}));
        EXPECT_TRUE(at::allclose(packed[static_cast<int64_t>(i)], alone[0], 1e-5, 1e-5)) << i;
      }
    }
  }
}

TEST(EncoderModelTest, TwoTensorParallelRanksEqualOne) {
  for (const EncoderSpec& spec : {testing::BertSpec(), testing::XlmRobertaSpec()}) {
    TempDir tmp;
    const Loaded loaded = Write(tmp.path(), spec);
    const PackedBatch batch = Pack(Sequences(spec), {0, 2, 1, 4});
    for (Pooling pooling : {Pooling::kCls, Pooling::kMean}) {
      SCOPED_TRACE(spec.model_type + " " + Name(pooling));
      const at::Tensor single = Pooled(*Model(loaded, pooling), batch);
      auto group = MakeInProcessGroup(2);
      std::vector<at::Tensor> out(2);
      std::vector<std::unique_ptr<EmbeddingModel>> ranks;
      for (int r = 0; r < 2; ++r) ranks.push_back(Model(loaded, pooling, r, 2));
      std::vector<std::thread> threads;
      for (int r = 0; r < 2; ++r) {
        threads.emplace_back([&, r] {
          out[r] = ranks[r]->Forward(PackedInput::Make(batch, at::kCPU), group->rank(r));
        });
      }
      for (auto& t : threads) t.join();
      // Each rank holds half the heads and half the intermediate features.
      EXPECT_LT(ranks[0]->weight_bytes(), Model(loaded, pooling)->weight_bytes());
      for (int r = 0; r < 2; ++r) {
        EXPECT_TRUE(at::allclose(out[r], single, 1e-5, 1e-5)) << "rank " << r;
      }
    }
  }
}

TEST(EncoderModelTest, LoadsTaskModelPrefixesLegacyNormNamesAndHalfPrecisionFiles) {
  const std::vector<EncoderSpec> specs = [] {
    EncoderSpec bert = testing::BertSpec();
    bert.prefix = "bert.";
    bert.legacy_norm_names = true;
    bert.dtype = "BF16";
    EncoderSpec roberta = testing::XlmRobertaSpec();
    roberta.prefix = "roberta.";
    roberta.dtype = "F16";
    return std::vector<EncoderSpec>{bert, roberta};
  }();
  for (const EncoderSpec& spec : specs) {
    SCOPED_TRACE(spec.prefix + spec.dtype);
    TempDir tmp;
    const Loaded loaded = Write(tmp.path(), spec);
    EXPECT_EQ(EncoderTensorNames(*loaded.checkpoint).prefix(), spec.prefix);
    // fp32 compute over the stored weights: the reference reads the same rounded values.
    ExpectMatchesReference(loaded, spec, Pooling::kCls, Sequences(spec));
  }
}

TEST(EncoderModelTest, ValidationNamesTheMissingOrMisshapenTensor) {
  TempDir tmp;
  const EncoderSpec spec = testing::BertSpec();
  testing::WrittenCheckpoint written = testing::WriteEncoderCheckpoint(tmp.path(), spec);
  const ModelConfig config = ModelConfig::FromJson(ReadConfigJson(tmp.path()), "config.json");

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, tensor] : written.weights) {
    if (name == "encoder.layer.1.intermediate.dense.bias") continue;
    tensors.push_back({name, tensor});
  }
  testing::WriteSafetensors(tmp.Join("model.safetensors"), tensors, "F32");
  testing::ExpectError([&] { ValidateCheckpoint(*Checkpoint::Open(tmp.path()), config); },
                       ErrorCode::kModelLoadFailed, {"encoder.layer.1.intermediate.dense.bias"});

  tensors.clear();
  for (const auto& [name, tensor] : written.weights) {
    tensors.push_back(
        {name, name == "embeddings.position_embeddings.weight" ? tensor.narrow(0, 0, 20) : tensor});
  }
  testing::WriteSafetensors(tmp.Join("model.safetensors"), tensors, "F32");
  testing::ExpectError([&] { ValidateCheckpoint(*Checkpoint::Open(tmp.path()), config); },
                       ErrorCode::kModelLoadFailed, {"embeddings.position_embeddings.weight"});

  testing::WriteSafetensors(tmp.Join("model.safetensors"),
                            {{"encoder.layer.0.output.dense.bias", at::zeros({64})}}, "F32");
  testing::ExpectError([&] { ValidateCheckpoint(*Checkpoint::Open(tmp.path()), config); },
                       ErrorCode::kModelLoadFailed,
                       {"embeddings.word_embeddings.weight", "bert.", "roberta."});
}

TEST(EncoderModelTest, RefusesATensorParallelSplitThatCutsAHead) {
  TempDir tmp;
  const Loaded loaded = Write(tmp.path(), testing::BertSpec());
  testing::ExpectError(
      [&] { Model(loaded, Pooling::kCls, 0, 3); }, ErrorCode::kInvalidArgument,
      {"tensor parallel size 3", "num_attention_heads (4)", "intermediate_size (128)"});
}

TEST(EncoderModelTest, StopsLoadingWhenCancelled) {
  TempDir tmp;
  const Loaded loaded = Write(tmp.path(), testing::BertSpec());
  std::atomic<bool> cancel{true};
  testing::ExpectError(
      [&] { CreateModel(*loaded.checkpoint, loaded.config, ModelOptions{}, nullptr, &cancel); },
      ErrorCode::kModelLoadFailed, {"cancelled"});
}

// Through the engine: config, validation, pooling option, batch limits and the TP split at boot.
TEST(EncoderEngineTest, ServesEachFamilyWithItsPoolingAndSequenceLimit) {
  for (const EncoderSpec& spec : {testing::BertSpec(), testing::XlmRobertaSpec()}) {
    SCOPED_TRACE(spec.model_type);
    TempDir tmp;
    const testing::WrittenCheckpoint written = testing::WriteEncoderCheckpoint(tmp.path(), spec);
    const auto sequences = Sequences(spec);
    for (const std::string pooling : {"cls", "mean"}) {
      EngineOptions options;
      options.model_path = tmp.path();
      options.pooling = pooling;
      options.tensor_parallel_size = 2;
      auto engine = Engine::Load(options);
      const EngineInfo info = engine->Info();
      EXPECT_EQ(info.model_type, spec.model_type);
      EXPECT_EQ(info.max_position_embeddings, spec.max_sequence());
      EXPECT_EQ(info.output_dimension, 64);

      const std::vector<float> rows = engine->Embed(Pack(sequences));
      const at::Tensor expected =
          testing::ReferenceEncoderPooled(written.weights, spec, sequences, pooling);
      for (size_t i = 0; i < sequences.size(); ++i) {
        at::Tensor e = expected[static_cast<int64_t>(i)].to(at::kFloat).contiguous();
        EXPECT_GE(testing::Cosine(rows.data() + 64 * i, e.data_ptr<float>(), 64), 0.99999) << i;
      }
      // The longest text the position table serves, and one token more.
      PackedBatch too_long = Pack({RandomIds(spec.max_sequence() + 1, spec.vocab, 9)});
      testing::ExpectError([&] { engine->Embed(too_long); }, ErrorCode::kInvalidArgument,
                           {"max_position_embeddings"});
    }
    EngineOptions split;
    split.model_path = tmp.path();
    split.pooling = "cls";
    split.tensor_parallel_size = 3;
    testing::ExpectError([&] { Engine::Load(split); }, ErrorCode::kInvalidArgument,
                         {"tensorParallelSize 3", "num_attention_heads (4)"});
  }
}

}  // namespace
}  // namespace qwen3
