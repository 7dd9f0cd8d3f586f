#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "loader/checkpoint.h"
#include "model/config.h"
#include "model/embedding_model.h"
#include "model/packed_input.h"
#include "model/pooling.h"
#include "parallel/communicator.h"
#include "reference_model.h"
#include "test_checkpoint.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::TempDir;

struct Sequence {
  std::vector<int32_t> ids;
  int32_t dims;
};

PackedBatch Pack(const std::vector<Sequence>& sequences) {
  PackedBatch batch;
  batch.cu_seqlens.push_back(0);
  for (const auto& s : sequences) {
    batch.token_ids.insert(batch.token_ids.end(), s.ids.begin(), s.ids.end());
    batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
    batch.dimensions.push_back(s.dims);
  }
  return batch;
}

std::vector<int32_t> RandomIds(int64_t length, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor t = at::randint(vocab, {length}, gen, at::TensorOptions().dtype(at::kInt));
  return std::vector<int32_t>(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + length);
}

class ModelTest : public ::testing::Test {
 protected:
  struct Loaded {
    testing::WrittenCheckpoint written;
    std::unique_ptr<EmbeddingModel> model;
  };

  static Loaded Load(const std::string& dir, const CheckpointSpec& spec) {
    Loaded loaded;
    loaded.written = testing::WriteCheckpoint(dir, spec);
    const ModelConfig config = ModelConfig::FromJson(ReadConfigJson(dir), "config.json");
    auto checkpoint = Checkpoint::Open(dir);
    ValidateCheckpoint(*checkpoint, config);
    loaded.model = CreateModel(*checkpoint, config, ModelOptions{});
    return loaded;
  }

  static std::vector<float> Embed(const EmbeddingModel& model, const PackedBatch& batch) {
    auto group = MakeSoloGroup();
    PackedInput in = PackedInput::Make(batch, at::kCPU);
    at::Tensor pooled = model.Forward(in, group->rank(0)).contiguous();
    return TruncateAndNormalize(pooled.data_ptr<float>(), pooled.size(0), pooled.size(1),
                                batch.dimensions);
  }

  static void ExpectMatchesReference(const Loaded& loaded, const CheckpointSpec& spec,
                                     const std::vector<Sequence>& sequences, double min_cosine) {
    const std::vector<float> out = Embed(*loaded.model, Pack(sequences));
    size_t offset = 0;
    for (size_t i = 0; i < sequences.size(); ++i) {
      const auto& s = sequences[i];
      std::vector<float> expected =
          testing::ReferenceEmbedding(loaded.written.weights, spec.config, s.ids, s.dims);
      const double cosine = testing::Cosine(out.data() + offset, expected.data(), s.dims);
      EXPECT_GE(cosine, min_cosine) << "sequence " << i;
      float max_diff = 0;
      for (int32_t j = 0; j < s.dims; ++j) {
        max_diff = std::max(max_diff, std::abs(out[offset + j] - expected[static_cast<size_t>(j)]));
      }
      EXPECT_LT(max_diff, 1e-3) << "sequence " << i;
      offset += static_cast<size_t>(s.dims);
    }
  }
};

TEST_F(ModelTest, PackedForwardMatchesThePlainReference) {
  TempDir tmp;
  CheckpointSpec spec;
  Loaded loaded = Load(tmp.path(), spec);
  const std::vector<Sequence> sequences = {
      {RandomIds(1, 256, 1), 64},
      {RandomIds(7, 256, 2), 48},
      {RandomIds(33, 256, 3), 32},
      {RandomIds(128, 256, 4), 64},  // max_position_embeddings
  };
  ExpectMatchesReference(loaded, spec, sequences, 0.99999);
}

TEST_F(ModelTest, ASequenceEmbedsTheSameAloneOrPacked) {
  TempDir tmp;
  Loaded loaded = Load(tmp.path(), CheckpointSpec{});
  const std::vector<Sequence> sequences = {
      {RandomIds(5, 256, 5), 64}, {RandomIds(17, 256, 6), 64}, {RandomIds(2, 256, 7), 64}};
  const std::vector<float> packed = Embed(*loaded.model, Pack(sequences));
  for (size_t i = 0; i < sequences.size(); ++i) {
    const std::vector<float> alone = Embed(*loaded.model, Pack({sequences[i]}));
    for (size_t j = 0; j < 64; ++j) EXPECT_NEAR(packed[i * 64 + j], alone[j], 1e-5) << i;
  }
}

TEST_F(ModelTest, MatryoshkaRowsAreUnitLengthPrefixesOfTheFullRow) {
  TempDir tmp;
  Loaded loaded = Load(tmp.path(), CheckpointSpec{});
  const std::vector<int32_t> ids = RandomIds(9, 256, 8);
  const std::vector<float> out = Embed(*loaded.model, Pack({{ids, 64}, {ids, 32}, {ids, 40}}));
  ASSERT_EQ(out.size(), 64u + 32 + 40);
  auto norm = [](const float* v, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
    return std::sqrt(s);
  };
  EXPECT_NEAR(norm(out.data(), 64), 1.0, 1e-5);
  EXPECT_NEAR(norm(out.data() + 64, 32), 1.0, 1e-5);
  EXPECT_NEAR(norm(out.data() + 96, 40), 1.0, 1e-5);
  const double head = norm(out.data(), 32);
  for (int j = 0; j < 32; ++j) EXPECT_NEAR(out[64 + j], out[j] / head, 1e-5);
}

TEST_F(ModelTest, LoadsEveryCheckpointLayoutAndDtype) {
  const std::vector<Sequence> sequences = {{RandomIds(12, 256, 9), 64},
                                           {RandomIds(3, 256, 10), 64}};
  for (const std::string dtype : {"BF16", "F16", "F32"}) {
    for (int shards : {1, 3}) {
      TempDir tmp;
      CheckpointSpec spec;
      spec.dtype = dtype;
      spec.shards = shards;
      spec.model_prefix = shards > 1;
      spec.seed = 42;
      Loaded loaded = Load(tmp.path(), spec);
      SCOPED_TRACE(dtype + " x" + std::to_string(shards));
      ExpectMatchesReference(loaded, spec, sequences, 0.99999);
    }
  }
}

}  // namespace
}  // namespace qwen3
