// The encoder families on CUDA: bidirectional flash attention, every dtype, CUDA graphs and tensor
// parallelism against the CPU / eager paths. They skip in a CPU build and without enough GPUs.
#include <gtest/gtest.h>

#ifdef QWEN3_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "model/attention.h"
#include "model/packed_input.h"
#include "reference_model.h"
#include "runtime/engine.h"
#include "test_checkpoint.h"

namespace qwen3 {
namespace {

using testing::EncoderSpec;
using testing::TempDir;

int GpuCount() {
#ifdef QWEN3_WITH_CUDA
  return c10::cuda::device_count();
#else
  return 0;
#endif
}

#define REQUIRE_GPUS(n)                                                 \
  do {                                                                  \
    if (GpuCount() < (n)) GTEST_SKIP() << "needs " << (n) << " GPU(s)"; \
  } while (0)

// One text per length, token ids (t * stride + length) % 256, every row at 128 dimensions.
PackedBatch Texts(const std::vector<int>& lengths, int stride) {
  PackedBatch b;
  b.cu_seqlens = {0};
  for (int length : lengths) {
    for (int t = 0; t < length; ++t) b.token_ids.push_back((t * stride + length) % 256);
    b.cu_seqlens.push_back(static_cast<int32_t>(b.token_ids.size()));
    b.dimensions.push_back(128);
    b.prompt_lengths.push_back(std::min(length - 1, 2));
  }
  return b;
}

double MinCosine(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 1;
  for (size_t offset = 0; offset + 128 <= std::min(a.size(), b.size()); offset += 128) {
    worst = std::min(worst, testing::Cosine(a.data() + offset, b.data() + offset, 128));
  }
  return worst;
}

class EncoderCudaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    for (EncoderSpec spec : {testing::BertSpec(), testing::XlmRobertaSpec()}) {
      spec.hidden = 128;
      spec.heads = 2;  // head_dim 64: a flash-attention head size
      spec.intermediate = 256;
      spec.max_positions = spec.model_type == "bert" ? 512 : 514;
      auto* dir = new TempDir();
      testing::WriteEncoderCheckpoint(dir->path(), spec);
      dirs_.push_back({spec.model_type, dir});
    }
  }
  static void TearDownTestSuite() {
    for (auto& [name, dir] : dirs_) delete dir;
    dirs_.clear();
  }

  // Each family with the pooling its sentence-transformers models mostly use, and the other.
  static std::vector<std::pair<std::string, std::string>> Cases() {
    return {{"bert", "cls"}, {"bert", "mean"}, {"xlm-roberta", "mean"}, {"xlm-roberta", "cls"}};
  }

  static EngineOptions Options(const std::string& family, const std::string& pooling,
                               DeviceKind device, DType dtype, std::vector<int> ids, int tp) {
    EngineOptions o;
    for (const auto& [name, dir] : dirs_) {
      if (name == family) o.model_path = dir->path();
    }
    o.pooling = pooling;
    o.device = device;
    o.dtype = dtype;
    o.device_ids = std::move(ids);
    o.tensor_parallel_size = tp;
    return o;
  }

  static EngineOptions Eager(const std::string& family, const std::string& pooling,
                             std::vector<int> ids, int tp) {
    EngineOptions o =
        Options(family, pooling, DeviceKind::kCuda, DType::kBFloat16, std::move(ids), tp);
    o.cuda_graph_max_tokens = 0;
    return o;
  }

  static PackedBatch Batch() { return Texts({1, 9, 200, 33, 512}, 7); }

  static inline std::vector<std::pair<std::string, TempDir*>> dirs_;
};

TEST_F(EncoderCudaTest, BidirectionalFlashAttentionMatchesTheMathPath) {
  REQUIRE_GPUS(1);
#ifdef QWEN3_WITH_CUDA
  const at::Device device(at::kCUDA, 0);
  ASSERT_TRUE(FlashAttentionSupported(device, at::kBFloat16, 64));
  at::manual_seed(5);
  // Short ones too: the short-sequence kernel is causal only and must not be taken.
  const PackedInput in = PackedInput::Make(Texts({1, 5, 32, 200, 33}, 3), device);
  const int64_t tokens = in.num_tokens();
  auto opts = at::TensorOptions().device(device).dtype(at::kBFloat16);
  at::Tensor q = at::randn({tokens, 12, 64}, opts);
  at::Tensor k = at::randn({tokens, 12, 64}, opts);
  at::Tensor v = at::randn({tokens, 12, 64}, opts);
  at::Tensor flash =
      PackedAttention(q, k, v, in, 0.125, /*use_flash=*/true, /*causal=*/false).to(at::kFloat);
  at::Tensor math = PackedAttentionMath(q, k, v, in, 0.125, /*causal=*/false).to(at::kFloat);
  at::Tensor causal = PackedAttentionMath(q, k, v, in, 0.125, /*causal=*/true).to(at::kFloat);
  auto min_cosine = [&](const at::Tensor& a, const at::Tensor& b) {
    return at::cosine_similarity(a.reshape({tokens, -1}), b.reshape({tokens, -1}), 1)
        .min()
        .item<double>();
  };
  EXPECT_GE(min_cosine(flash, math), 0.999);
  EXPECT_LT(min_cosine(flash, causal), 0.99);  // it is not the causal answer
#endif
}

TEST_F(EncoderCudaTest, EveryDtypeMatchesTheCpu) {
  REQUIRE_GPUS(1);
  for (const auto& [family, pooling] : Cases()) {
    SCOPED_TRACE(family + " " + pooling);
    auto cpu = Engine::Load(Options(family, pooling, DeviceKind::kCpu, DType::kFloat32, {}, 1));
    const std::vector<float> expected = cpu->Embed(Batch());
    const std::pair<DType, double> cases[] = {
        {DType::kFloat32, 0.99999}, {DType::kBFloat16, 0.999}, {DType::kFloat16, 0.999}};
    for (const auto& [dtype, min_cosine] : cases) {
      SCOPED_TRACE(DTypeName(dtype));
      auto gpu = Engine::Load(Options(family, pooling, DeviceKind::kCuda, dtype, {0}, 1));
      EXPECT_GE(MinCosine(gpu->Embed(Batch()), expected), min_cosine);
    }
  }
}

TEST_F(EncoderCudaTest, GraphReplayMatchesTheEagerPath) {
  REQUIRE_GPUS(1);
  for (const auto& [family, pooling] : Cases()) {
    SCOPED_TRACE(family + " " + pooling);
    auto eager = Engine::Load(Eager(family, pooling, {0}, 1));
    // Buckets past the 512 positions: the capture of the largest runs one 1024-token sequence,
    // whose positions the model clamps to the table.
    EngineOptions options = Options(family, pooling, DeviceKind::kCuda, DType::kBFloat16, {0}, 1);
    options.cuda_graph_max_tokens = 1024;
    auto graphed = Engine::Load(options);
#ifdef QWEN3_WITH_CUDA
    EXPECT_EQ(graphed->Info().cuda_graph_max_tokens, 1024);
#endif
    // One short text, a bucket filled exactly, several texts, more texts than a graph takes, the
    // longest text, and two long ones with a padding sequence in the 768 bucket.
    const std::vector<std::vector<int>> shapes = {
        {5}, {16}, {3, 9, 1, 30}, {20, 12}, std::vector<int>(65, 2), {512}, {500, 30}};
    for (const auto& lengths : shapes) {
      const PackedBatch batch = Texts(lengths, 13);
      SCOPED_TRACE(::testing::Message()
                   << lengths.size() << " texts, " << batch.token_ids.size() << " tokens");
      const std::vector<float> expected = eager->Embed(batch);
      EXPECT_GE(MinCosine(graphed->Embed(batch), expected), 0.999);
      // A replay leaves nothing behind that changes the next one.
      EXPECT_GE(MinCosine(graphed->Embed(batch), expected), 0.999);
    }
  }
}

TEST_F(EncoderCudaTest, TensorParallelMatchesOneGpu) {
  REQUIRE_GPUS(2);
  for (const auto& [family, pooling] : Cases()) {
    SCOPED_TRACE(family + " " + pooling);
    const std::vector<float> expected =
        Engine::Load(Eager(family, pooling, {0}, 1))->Embed(Batch());
    auto tp =
        Engine::Load(Options(family, pooling, DeviceKind::kCuda, DType::kBFloat16, {0, 1}, 2));
    EXPECT_GE(MinCosine(tp->Embed(Batch()), expected), 0.999);
    EXPECT_GE(MinCosine(tp->Embed(Texts({5, 3}, 3)),
                        Engine::Load(Eager(family, pooling, {0}, 1))->Embed(Texts({5, 3}, 3))),
              0.999);
  }
}

}  // namespace
}  // namespace qwen3
