// Tests of the CUDA and NCCL paths. They skip in a CPU build and on machines without enough GPUs.
#include <gtest/gtest.h>

#ifdef QWEN3_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <atomic>
#include <cmath>

#include "model/attention.h"
#include "reference_model.h"
#include "runtime/engine.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::ExpectError;
using testing::TempDir;

int CudaDeviceCount() {
#ifdef QWEN3_WITH_CUDA
  return c10::cuda::device_count();
#else
  return 0;
#endif
}

#define REQUIRE_GPUS(n)                                                        \
  do {                                                                         \
    if (CudaDeviceCount() < (n)) GTEST_SKIP() << "needs " << (n) << " GPU(s)"; \
  } while (0)

class CudaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    spec_.config.head_dim = 64;  // a flash-attention head size
    spec_.config.hidden = 128;
    spec_.config.max_positions = 1024;
    testing::WriteCheckpoint(dir_->path(), spec_);
  }
  static void TearDownTestSuite() { delete dir_; }

  static EngineOptions Options(DeviceKind device, DType dtype, std::vector<int> ids, int tp) {
    EngineOptions o;
    o.model_path = dir_->path();
    o.device = device;
    o.dtype = dtype;
    o.device_ids = std::move(ids);
    o.tensor_parallel_size = tp;
    return o;
  }

  static PackedBatch Batch() {
    PackedBatch b;
    b.cu_seqlens = {0};
    for (int length : {1, 9, 200, 33}) {
      for (int t = 0; t < length; ++t) b.token_ids.push_back((t * 7 + length) % 256);
      b.cu_seqlens.push_back(static_cast<int32_t>(b.token_ids.size()));
      b.dimensions.push_back(128);
    }
    return b;
  }

  static double MinCosine(const std::vector<float>& a, const std::vector<float>& b, int dims) {
    double worst = 1;
    for (size_t offset = 0; offset < a.size(); offset += static_cast<size_t>(dims)) {
      worst = std::min(worst, testing::Cosine(a.data() + offset, b.data() + offset, dims));
    }
    return worst;
  }

  static inline CheckpointSpec spec_;
  static inline TempDir* dir_ = nullptr;
};

TEST_F(CudaTest, EveryDtypeMatchesTheCpu) {
  REQUIRE_GPUS(1);
  auto cpu = Engine::Load(Options(DeviceKind::kCpu, DType::kFloat32, {}, 1));
  const std::vector<float> expected = cpu->Embed(Batch());
  const std::pair<DType, double> cases[] = {
      {DType::kFloat32, 0.99999}, {DType::kBFloat16, 0.999}, {DType::kFloat16, 0.999}};
  for (const auto& [dtype, min_cosine] : cases) {
    SCOPED_TRACE(DTypeName(dtype));
    auto gpu = Engine::Load(Options(DeviceKind::kCuda, dtype, {0}, 1));
    EXPECT_GE(MinCosine(gpu->Embed(Batch()), expected, 128), min_cosine);
    EngineInfo info = gpu->Info();
    ASSERT_EQ(info.devices.size(), 1u);
    EXPECT_EQ(info.devices[0].index, 0);
    EXPECT_GT(info.devices[0].used_memory_bytes, 0);
  }
}

TEST_F(CudaTest, FlashAttentionMatchesTheMathPath) {
  REQUIRE_GPUS(1);
#ifdef QWEN3_WITH_CUDA
  const at::Device device(at::kCUDA, 0);
  ASSERT_TRUE(FlashAttentionSupported(device, at::kBFloat16, 64));
  PackedInput in = PackedInput::Make(Batch(), device);
  const int64_t tokens = in.num_tokens();
  auto opts = at::TensorOptions().device(device).dtype(at::kBFloat16);
  at::Tensor q = at::randn({tokens, 8, 64}, opts);
  at::Tensor k = at::randn({tokens, 2, 64}, opts);
  at::Tensor v = at::randn({tokens, 2, 64}, opts);
  at::Tensor flash = CausalAttention(q, k, v, in, 0.125, /*use_flash=*/true).to(at::kFloat);
  at::Tensor math = CausalAttentionMath(q, k, v, in, 0.125).to(at::kFloat);
  const double cosine =
      at::cosine_similarity(flash.reshape({tokens, -1}), math.reshape({tokens, -1}), 1)
          .min()
          .item<double>();
  EXPECT_GE(cosine, 0.999);
#endif
}

TEST_F(CudaTest, OutOfMemoryRejectsTheBatchAndKeepsServing) {
  REQUIRE_GPUS(1);
#ifdef QWEN3_WITH_CUDA
  auto engine = Engine::Load(Options(DeviceKind::kCuda, DType::kBFloat16, {0}, 1));
  const std::vector<float> expected = engine->Embed(Batch());
  // Take nearly all free memory, then ask for a batch whose activations cannot fit.
  std::vector<at::Tensor> hog;
  {
    c10::cuda::CUDACachingAllocator::emptyCache();
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
    const int64_t chunk = int64_t{1} << 30;
    auto opts = at::TensorOptions().device(at::kCUDA, 0).dtype(at::kByte);
    for (int64_t left = static_cast<int64_t>(free_bytes) - (int64_t{64} << 20); left > chunk;
         left -= chunk) {
      hog.push_back(at::empty({chunk}, opts));
    }
  }
  PackedBatch big;
  big.cu_seqlens = {0};
  for (int s = 0; s < 1024; ++s) {
    for (int t = 0; t < 1024; ++t) big.token_ids.push_back(t % 256);
    big.cu_seqlens.push_back(static_cast<int32_t>(big.token_ids.size()));
    big.dimensions.push_back(128);
  }
  ExpectError([&] { engine->Embed(big); }, ErrorCode::kOutOfMemory, {"memory"});
  hog.clear();
  c10::cuda::CUDACachingAllocator::emptyCache();
  EXPECT_GE(MinCosine(engine->Embed(Batch()), expected, 128), 0.9999);
  EXPECT_TRUE(engine->Health().ok);
#endif
}

TEST_F(CudaTest, TensorParallelOverNcclMatchesOneGpu) {
  REQUIRE_GPUS(2);
  auto one = Engine::Load(Options(DeviceKind::kCuda, DType::kBFloat16, {0}, 1));
  const std::vector<float> expected = one->Embed(Batch());
  one.reset();
  auto tp = Engine::Load(Options(DeviceKind::kCuda, DType::kBFloat16, {0, 1}, 2));
  EXPECT_GE(MinCosine(tp->Embed(Batch()), expected, 128), 0.999);

  // A rank failing mid-forward aborts the NCCL communicators; the group is rebuilt.
  std::atomic<bool> armed{true};
  tp->SetLayerTestHook([&](int, int rank, int layer) {
    if (rank == 1 && layer == 1 && armed.exchange(false)) throw std::runtime_error("injected");
  });
  ExpectError([&] { tp->Embed(Batch()); }, ErrorCode::kInternal, {"injected"});
  EXPECT_GE(MinCosine(tp->Embed(Batch()), expected, 128), 0.999);
  EXPECT_TRUE(tp->Health().ok);
}

TEST_F(CudaTest, TwoReplicasServeTogether) {
  REQUIRE_GPUS(2);
  auto engine = Engine::Load(Options(DeviceKind::kCuda, DType::kBFloat16, {0, 1}, 1));
  EXPECT_EQ(engine->Info().replicas, 2);
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    engine->Submit(Batch(), [&](std::vector<float> rows, const Error* error) {
      if (error == nullptr && !rows.empty()) ++ok;
    });
  }
  engine->Shutdown();
  EXPECT_EQ(ok.load(), 8);
}

TEST_F(CudaTest, AllReduceCheckSumsOverEveryGpu) {
  REQUIRE_GPUS(1);
  std::vector<int> ids;
  for (int i = 0; i < CudaDeviceCount(); ++i) ids.push_back(i);
  AllReduceCheckResult result = RunAllReduceCheck(ids);
  EXPECT_TRUE(result.ok);
  EXPECT_GT(result.bytes, 0);
}

TEST(BuildTest, ReportsWhatWasCompiledIn) {
  BuildInfo info = GetBuildInfo();
  EXPECT_FALSE(info.torch_version.empty());
#ifdef QWEN3_WITH_CUDA
  EXPECT_TRUE(info.cuda);
#else
  EXPECT_FALSE(info.cuda);
  EXPECT_TRUE(ListCudaDevices().empty());
  ExpectError([] { RunAllReduceCheck({0}); }, ErrorCode::kDeviceFailed, {"NCCL"});
#endif
}

}  // namespace
}  // namespace qwen3
