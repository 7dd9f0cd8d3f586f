// The rerankers' score heads (model/score_head.h) through the engine: a tiny Qwen3 reranker in
// CausalLM naming (tied and untied LM head) and in Qwen3ForSequenceClassification naming, against
// the embedding path's own pooled rows and the plain reference of reference_model.h, and every
// refusal at load and at submit.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>
#include <vector>

#include "loader/checkpoint.h"
#include "model/score_head.h"
#include "reference_model.h"
#include "runtime/engine.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::ExpectError;
using testing::TempDir;

constexpr int64_t kYes = 17;
constexpr int64_t kNo = 42;

// A reranker as transformers saves Qwen3ForCausalLM ("model." names, lm_head.weight at the top
// level when untied) or Qwen3ForSequenceClassification (score.weight [labels, hidden]).
CheckpointSpec RerankerSpec(const std::string& form, int64_t score_labels = 1) {
  CheckpointSpec spec;
  spec.model_prefix = true;
  spec.seed = 7;
  if (form == "tied") {
    spec.config.architecture = "Qwen3ForCausalLM";
  } else if (form == "untied") {
    spec.config.architecture = "Qwen3ForCausalLM";
    spec.config.tie_word_embeddings = false;
    spec.lm_head = true;
  } else if (form ==
             "tied-with-lm-head") {  // tie_word_embeddings true, lm_head.weight saved anyway
    spec.config.architecture = "Qwen3ForCausalLM";
    spec.lm_head = true;
  } else if (form == "untied-without-lm-head") {
    spec.config.architecture = "Qwen3ForCausalLM";
    spec.config.tie_word_embeddings = false;
  } else {
    spec.config.architecture = "Qwen3ForSequenceClassification";
    spec.config.tie_word_embeddings = false;
    spec.score_labels = score_labels;
  }
  return spec;
}

EngineOptions HeadOptions(const std::string& dir, const std::string& head, int tp = 1) {
  EngineOptions options;
  options.model_path = dir;
  options.head = head;
  options.normalize = false;
  options.yes_token_id = kYes;
  options.no_token_id = kNo;
  options.tensor_parallel_size = tp;
  options.cpu_threads = 2;
  return options;
}

std::vector<std::vector<int32_t>> Sequences() {
  std::vector<std::vector<int32_t>> sequences;
  at::Generator gen = at::detail::createCPUGenerator(3);
  for (int64_t length : {1, 9, 30, 4}) {
    at::Tensor t = at::randint(256, {length}, gen, at::TensorOptions().dtype(at::kInt));
    sequences.emplace_back(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + length);
  }
  return sequences;
}

PackedBatch Pack(const std::vector<std::vector<int32_t>>& sequences, int32_t dims) {
  PackedBatch batch;
  batch.cu_seqlens.push_back(0);
  for (const auto& ids : sequences) {
    batch.token_ids.insert(batch.token_ids.end(), ids.begin(), ids.end());
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.dimensions.push_back(dims);
  }
  return batch;
}

// The embedding path's pooled rows of the same checkpoint, untouched: [n, hidden] fp32.
at::Tensor PooledRows(const std::string& dir, const std::vector<std::vector<int32_t>>& sequences) {
  EngineOptions options;
  options.model_path = dir;
  options.normalize = false;
  options.cpu_threads = 2;
  auto engine = Engine::Load(options);
  const int64_t hidden = engine->Info().hidden_size;
  std::vector<float> rows = engine->Embed(Pack(sequences, static_cast<int32_t>(hidden)));
  return at::from_blob(rows.data(), {static_cast<int64_t>(sequences.size()), hidden}, at::kFloat)
      .clone();
}

// raw = pooled . w_yes - pooled . w_no, from `matrix` ([vocab, hidden]).
at::Tensor YesNoRaw(const at::Tensor& pooled, const at::Tensor& matrix) {
  const at::Tensor logits = at::matmul(pooled, matrix.index_select(0, at::tensor({kYes, kNo})).t());
  return logits.select(1, 0) - logits.select(1, 1);
}

void ExpectScores(const std::vector<float>& actual, const at::Tensor& expected, double tolerance) {
  ASSERT_EQ(actual.size(), static_cast<size_t>(expected.numel()));
  const at::Tensor e = expected.to(at::kDouble).contiguous();
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], e[static_cast<int64_t>(i)].item<double>(), tolerance)
        << "sequence " << i;
  }
}

double MaxDifference(const std::vector<float>& actual, const at::Tensor& other) {
  const at::Tensor a = at::tensor(actual, at::TensorOptions().dtype(at::kFloat)).to(at::kDouble);
  return (a - other.to(at::kDouble).reshape({-1})).abs().max().item<double>();
}

TEST(ScoreHeadTest, YesNoIsTheLastHiddenStateTimesTheTwoRowsOfTheTiedOrUntiedHead) {
  TempDir dir;
  const auto tied = testing::WriteCheckpoint(dir.Join("tied"), RerankerSpec("tied"));
  const auto untied = testing::WriteCheckpoint(dir.Join("untied"), RerankerSpec("untied"));
  // The same seed writes the same decoder: only the head's matrix tells the two apart.
  ASSERT_TRUE(
      at::equal(tied.weights.at("embed_tokens.weight"), untied.weights.at("embed_tokens.weight")));
  ASSERT_EQ(tied.weights.count("lm_head.weight"), 0u);
  const auto sequences = Sequences();
  const at::Tensor pooled = PooledRows(dir.Join("tied"), sequences);
  const at::Tensor embed = tied.weights.at("embed_tokens.weight");
  const at::Tensor lm_head = untied.weights.at("lm_head.weight");

  auto tied_engine = Engine::Load(HeadOptions(dir.Join("tied"), "yes-no"));
  const std::vector<float> tied_raw = tied_engine->Embed(Pack(sequences, 1));
  ExpectScores(tied_raw, YesNoRaw(pooled, embed), 1e-5);
  EXPECT_GT(MaxDifference(tied_raw, YesNoRaw(pooled, lm_head)), 1e-2);

  // transformers ties lm_head to the table when the config says so, whatever the file holds.
  testing::WriteCheckpoint(dir.Join("tied-with-lm-head"), RerankerSpec("tied-with-lm-head"));
  auto tied_saved = Engine::Load(HeadOptions(dir.Join("tied-with-lm-head"), "yes-no"));
  ExpectScores(tied_saved->Embed(Pack(sequences, 1)), YesNoRaw(pooled, embed), 1e-5);

  auto untied_engine = Engine::Load(HeadOptions(dir.Join("untied"), "yes-no"));
  const std::vector<float> untied_raw = untied_engine->Embed(Pack(sequences, 1));
  ExpectScores(untied_raw, YesNoRaw(pooled, lm_head), 1e-5);
  EXPECT_GT(MaxDifference(untied_raw, YesNoRaw(pooled, embed)), 1e-2);

  // And against the plain float64 reference of the decoder.
  for (size_t i = 0; i < sequences.size(); ++i) {
    const at::Tensor hidden =
        testing::ReferenceHidden(untied.weights, RerankerSpec("untied").config, sequences[i]);
    const at::Tensor last = hidden.select(0, hidden.size(0) - 1).unsqueeze(0);
    const double expected = YesNoRaw(last, lm_head.to(at::kDouble))[0].item<double>();
    EXPECT_NEAR(untied_raw[i], expected, 1e-4) << "sequence " << i;
  }

  const EngineInfo info = untied_engine->Info();
  EXPECT_EQ(info.head, "yes-no");
  EXPECT_EQ(info.output_dimension, 1);
  EXPECT_EQ(info.hidden_size, 64);
}

TEST(ScoreHeadTest, ClassifierIsTheScoreRowTimesTheLastHiddenState) {
  TempDir dir;
  const auto written = testing::WriteCheckpoint(dir.path(), RerankerSpec("classifier"));
  const auto sequences = Sequences();
  const at::Tensor pooled = PooledRows(dir.path(), sequences);
  auto engine = Engine::Load(HeadOptions(dir.path(), "classifier"));
  const std::vector<float> raw = engine->Embed(Pack(sequences, 1));
  ExpectScores(raw, at::matmul(pooled, written.weights.at("score.weight").t()), 1e-5);
  EXPECT_EQ(engine->Info().head, "classifier");
  EXPECT_EQ(engine->Info().output_dimension, 1);
}

TEST(ScoreHeadTest, APackedSequenceScoresAsItDoesAloneAndTensorParallelRanksAgree) {
  TempDir dir;
  testing::WriteCheckpoint(dir.path(), RerankerSpec("untied"));
  const auto sequences = Sequences();
  auto engine = Engine::Load(HeadOptions(dir.path(), "yes-no"));
  const std::vector<float> packed = engine->Embed(Pack(sequences, 1));
  ASSERT_EQ(packed.size(), sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    const std::vector<float> alone = engine->Embed(Pack({sequences[i]}, 1));
    ASSERT_EQ(alone.size(), 1u);
    EXPECT_NEAR(packed[i], alone[0], 1e-5) << "sequence " << i;
  }
  auto tp = Engine::Load(HeadOptions(dir.path(), "yes-no", 2));
  const std::vector<float> split = tp->Embed(Pack(sequences, 1));
  ASSERT_EQ(split.size(), packed.size());
  for (size_t i = 0; i < packed.size(); ++i) EXPECT_NEAR(split[i], packed[i], 1e-5);
}

TEST(ScoreHeadTest, ChecksBatchDimensionsAreOne) {
  TempDir dir;
  testing::WriteCheckpoint(dir.path(), RerankerSpec("tied"));
  auto engine = Engine::Load(HeadOptions(dir.path(), "yes-no"));
  PackedBatch batch = Pack(Sequences(), 1);
  batch.dimensions[1] = 32;
  ExpectError([&] { engine->Embed(batch); }, ErrorCode::kInvalidArgument,
              {"dimensions[1] = 32", "score head 'yes-no'", "dimensions 1"});
  batch.dimensions[1] = 1;
  EXPECT_EQ(engine->Embed(batch).size(), batch.num_sequences());
}

TEST(ScoreHeadTest, RefusesCheckpointsWithoutTheHeadsTensors) {
  TempDir dir;
  testing::WriteCheckpoint(dir.Join("no-lm-head"), RerankerSpec("untied-without-lm-head"));
  testing::WriteCheckpoint(dir.Join("two-labels"), RerankerSpec("classifier", 2));
  testing::WriteCheckpoint(dir.Join("causal"), RerankerSpec("tied"));
  ExpectError([&] { Engine::Load(HeadOptions(dir.Join("no-lm-head"), "yes-no")); },
              ErrorCode::kModelLoadFailed,
              {"no-lm-head/config.json", "tie_word_embeddings is false", "lm_head.weight"});
  ExpectError([&] { Engine::Load(HeadOptions(dir.Join("two-labels"), "classifier")); },
              ErrorCode::kModelLoadFailed, {"score.weight", "[2, 64]", "num_labels must be 1"});
  ExpectError([&] { Engine::Load(HeadOptions(dir.Join("causal"), "classifier")); },
              ErrorCode::kModelLoadFailed, {"score.weight", "missing"});
  // A sequence classifier's checkpoint has no LM head either.
  ExpectError([&] { Engine::Load(HeadOptions(dir.Join("two-labels"), "yes-no")); },
              ErrorCode::kModelLoadFailed, {"lm_head.weight"});
}

TEST(ScoreHeadTest, RefusesOptionsAScoreHeadCannotServe) {
  TempDir dir;
  testing::WriteCheckpoint(dir.Join("model"), RerankerSpec("tied"));
  const std::string model = dir.Join("model");
  const auto refuses = [&](EngineOptions options, std::initializer_list<std::string> needles) {
    ExpectError([&] { Engine::Load(options); }, ErrorCode::kInvalidArgument, needles);
  };
  EngineOptions o = HeadOptions(model, "yes-no");
  o.yes_token_id = 256;  // the tiny vocabulary has 256 rows
  refuses(o, {"yesNoTokenIds [256, 42]", "token id 256", "out of range", "256 rows"});
  o = HeadOptions(model, "yes-no");
  o.no_token_id = -1;
  refuses(o, {"head 'yes-no' needs yesNoTokenIds"});
  o = HeadOptions(model, "yes-no");
  o.no_token_id = kYes;
  refuses(o, {"yesNoTokenIds [17, 17]", "must differ"});
  for (const std::string pooling : {"mean", "cls"}) {
    o = HeadOptions(model, "yes-no");
    o.pooling = pooling;
    refuses(o, {"head 'yes-no' needs pooling 'lasttoken'", pooling});
  }
  o = HeadOptions(model, "classifier");
  o.normalize = true;
  refuses(o, {"head 'classifier' needs normalize false"});
  o = HeadOptions(model, "yes-no");
  o.dense_layers = {dir.Join("2_Dense")};
  refuses(o, {"head 'yes-no' cannot follow Dense layers"});
  o = HeadOptions(model, "softmax");
  refuses(o, {"head \"softmax\" is not supported"});

  const auto bert = testing::WriteEncoderCheckpoint(dir.Join("bert"), testing::BertSpec());
  o = HeadOptions(bert.dir, "classifier");
  refuses(o, {"head 'classifier'", "bert", "not supported"});
}

TEST(CheckpointRowsTest, ReadsOnlyTheNamedRowsOfAMatrix) {
  TempDir dir;
  const auto written = testing::WriteCheckpoint(dir.path(), RerankerSpec("untied"));
  const auto checkpoint = Checkpoint::Open(dir.path());
  const at::Tensor rows = checkpoint->GetRows("lm_head.weight", {5, 0, 255});
  EXPECT_EQ(rows.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(
      at::equal(rows.to(at::kFloat),
                written.weights.at("lm_head.weight").index_select(0, at::tensor({5, 0, 255}))));
  ExpectError([&] { checkpoint->GetRows("lm_head.weight", {256}); }, ErrorCode::kInvalidArgument,
              {"lm_head.weight", "row 256"});
  ExpectError([&] { checkpoint->GetRows("norm.weight", {0}); }, ErrorCode::kModelLoadFailed,
              {"norm.weight", "not a matrix"});
}

}  // namespace
}  // namespace qwen3
