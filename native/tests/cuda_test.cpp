// Tests of the CUDA and NCCL paths. They skip in a CPU build and on machines without enough GPUs.
#include <gtest/gtest.h>

#ifdef QWEN3_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>

#include "model/attention.h"
#include "model/fused_ops.h"
#include "parallel/communicator.h"
#include "parallel/peer_all_reduce.h"
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
 public:
  static double MinCosine(const std::vector<float>& a, const std::vector<float>& b, int dims) {
    double worst = 1;
    for (size_t offset = 0; offset < a.size(); offset += static_cast<size_t>(dims)) {
      worst = std::min(worst, testing::Cosine(a.data() + offset, b.data() + offset, dims));
    }
    return worst;
  }

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

  // bf16 with CUDA graphs off: the reference the graph and TP tests compare with.
  static EngineOptions EagerOptions(std::vector<int> ids, int tp) {
    EngineOptions o = Options(DeviceKind::kCuda, DType::kBFloat16, std::move(ids), tp);
    o.cuda_graph_max_tokens = 0;
    return o;
  }

  // One text per length, token ids (t * stride + length) % 256, every row at 128 dimensions.
  static PackedBatch Texts(const std::vector<int>& lengths, int stride) {
    PackedBatch b;
    b.cu_seqlens = {0};
    for (int length : lengths) {
      for (int t = 0; t < length; ++t) b.token_ids.push_back((t * stride + length) % 256);
      b.cu_seqlens.push_back(static_cast<int32_t>(b.token_ids.size()));
      b.dimensions.push_back(128);
    }
    return b;
  }

  static PackedBatch Batch() { return Texts({1, 9, 200, 33}, 7); }

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

TEST_F(CudaTest, ShortAttentionMatchesTheMathPath) {
  REQUIRE_GPUS(1);
#ifdef QWEN3_WITH_CUDA
  const at::Device device(at::kCUDA, 0);
  at::manual_seed(11);
  // Every length up to the kernel's longest, one of them twice; 8 query heads over 2 KV heads.
  const PackedInput in = PackedInput::Make(Texts({1, 5, 16, 32, 7, 32, 2}, 3), device);
  ASSERT_EQ(in.max_seqlen, 32);
  const int64_t tokens = in.num_tokens();
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (int64_t head_dim : {64, 128, 256}) {
      SCOPED_TRACE(::testing::Message() << c10::toString(dtype) << " head_dim " << head_dim);
      auto opts = at::TensorOptions().device(device).dtype(dtype);
      at::Tensor q = at::randn({tokens, 8, head_dim}, opts);
      at::Tensor k = at::randn({tokens, 2, head_dim}, opts);
      at::Tensor v = at::randn({tokens, 2, head_dim}, opts);
      const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
      at::Tensor fast = ShortCausalAttention(q, k, v, in, scale);
      ASSERT_TRUE(fast.defined());
      at::Tensor math = CausalAttentionMath(q, k, v, in, scale);
      EXPECT_TRUE(at::equal(CausalAttention(q, k, v, in, scale, /*use_flash=*/true), fast));
      const double cosine = at::cosine_similarity(fast.to(at::kFloat).reshape({tokens, -1}),
                                                  math.to(at::kFloat).reshape({tokens, -1}), 1)
                                .min()
                                .item<double>();
      EXPECT_GE(cosine, 0.9999);
      EXPECT_LE((fast.to(at::kFloat) - math.to(at::kFloat)).abs().max().item<double>(), 2e-2);
    }
  }
  // Longer sequences, fp32 and odd head sizes stay with flash attention or the math path.
  auto bf16 = at::TensorOptions().device(device).dtype(at::kBFloat16);
  const PackedInput longer = PackedInput::Make(Texts({33}, 3), device);
  at::Tensor q = at::randn({33, 8, 128}, bf16);
  at::Tensor kv = at::randn({33, 2, 128}, bf16);
  EXPECT_FALSE(ShortCausalAttention(q, kv, kv, longer, 0.1).defined());
  const PackedInput short_in = PackedInput::Make(Texts({9}, 3), device);
  at::Tensor q32 = at::randn({9, 8, 128}, bf16.dtype(at::kFloat));
  at::Tensor kv32 = at::randn({9, 2, 128}, bf16.dtype(at::kFloat));
  EXPECT_FALSE(ShortCausalAttention(q32, kv32, kv32, short_in, 0.1).defined());
  at::Tensor q96 = at::randn({9, 8, 96}, bf16);
  at::Tensor kv96 = at::randn({9, 2, 96}, bf16);
  EXPECT_FALSE(ShortCausalAttention(q96, kv96, kv96, short_in, 0.1).defined());
  // Keys and values the kernel cannot load 16 bytes at a time.
  at::Tensor q9 = at::randn({9, 8, 128}, bf16);
  at::Tensor shifted =
      at::randn({9 * 2 * 128 + 1}, bf16).narrow(0, 1, 9 * 2 * 128).view({9, 2, 128});
  EXPECT_FALSE(ShortCausalAttention(q9, shifted, shifted, short_in, 0.1).defined());
#endif
}

#ifdef QWEN3_WITH_CUDA
// Largest |a - b| relative to the largest |b|.
double RelativeError(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor af = a.to(at::kFloat);
  at::Tensor bf = b.to(at::kFloat);
  return (af - bf).abs().max().item<double>() / std::max(bf.abs().max().item<double>(), 1e-30);
}
#endif

TEST(FusedKernelTest, MatchTheCompositeOps) {
  REQUIRE_GPUS(1);
#ifdef QWEN3_WITH_CUDA
  const at::Device device(at::kCUDA, 0);
  ASSERT_TRUE(FusedKernelsAvailable(device));
  at::manual_seed(7);
  auto f32 = at::TensorOptions().device(device).dtype(at::kFloat);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    SCOPED_TRACE(c10::toString(dtype));
    // bf16 keeps 8 bits: one rounding apart is 2^-8 of the value.
    const double tolerance = dtype == at::kFloat ? 1e-5 : 1e-2;
    auto opts = f32.dtype(dtype);

    // Residual add + RMSNorm, with and without a delta, for an odd width.
    at::Tensor residual = at::randn({37, 333}, f32) * 3;
    at::Tensor delta = at::randn({37, 333}, opts);
    at::Tensor weight = at::rand({333}, f32) + 0.5;
    at::Tensor r_kernel = residual.clone();
    at::Tensor r_composite = residual.clone();
    at::Tensor out_kernel = AddRmsNorm(r_kernel, delta, weight, 1e-6, dtype);
    at::Tensor out_composite = composite::AddRmsNorm(r_composite, delta, weight, 1e-6, dtype);
    EXPECT_TRUE(at::equal(r_kernel, r_composite));
    EXPECT_LT(RelativeError(out_kernel, out_composite), tolerance);
    at::Tensor plain = AddRmsNorm(r_kernel, at::Tensor(), weight, 1e-6, at::kFloat);
    EXPECT_LT(RelativeError(plain, composite::AddRmsNorm(r_composite, at::Tensor(), weight, 1e-6,
                                                         at::kFloat)),
              1e-5);

    // q/k norm + rotary + the v copy, 4 query and 2 key/value heads of 64, positions up to 30k.
    const int64_t tokens = 21;
    at::Tensor qkv = at::randn({tokens, 8 * 64}, opts);
    at::Tensor q_norm = at::rand({64}, f32) + 0.5;
    at::Tensor k_norm = at::rand({64}, f32) + 0.5;
    RotaryInputs rotary;
    rotary.positions = at::randint(0, 30000, {tokens}, f32.dtype(at::kInt));
    rotary.inv_freq = at::pow(1e6, at::arange(0, 64, 2, f32) / 64.0).reciprocal();
    auto [q, k, v] = QkNormRope(qkv, 4, 2, 64, q_norm, k_norm, rotary, 1e-6);
    auto [q_ref, k_ref, v_ref] = composite::QkNormRope(qkv, 4, 2, 64, q_norm, k_norm, rotary, 1e-6);
    EXPECT_LT(RelativeError(q, q_ref), tolerance);
    EXPECT_LT(RelativeError(k, k_ref), tolerance);
    EXPECT_TRUE(at::equal(v, v_ref));
    EXPECT_TRUE(q.is_contiguous() && k.is_contiguous() && v.is_contiguous());
    // Without q/k norm (Qwen2, Mistral, Llama): rotary only.
    auto [q2, k2, v2] = QkNormRope(qkv, 4, 2, 64, at::Tensor(), at::Tensor(), rotary, 1e-6);
    auto [q2_ref, k2_ref, v2_ref] =
        composite::QkNormRope(qkv, 4, 2, 64, at::Tensor(), at::Tensor(), rotary, 1e-6);
    EXPECT_LT(RelativeError(q2, q2_ref), tolerance);
    EXPECT_LT(RelativeError(k2, k2_ref), tolerance);
    EXPECT_TRUE(at::equal(v2, v2_ref));

    at::Tensor gate_up = at::randn({13, 2 * 300}, opts) * 4;
    EXPECT_LT(RelativeError(SiluMul(gate_up), composite::SiluMul(gate_up)), tolerance);
  }
#endif
}

TEST_F(CudaTest, GraphReplayMatchesTheEagerPath) {
  REQUIRE_GPUS(1);
  auto eager = Engine::Load(EagerOptions({0}, 1));
  EXPECT_EQ(eager->Info().cuda_graph_max_tokens, 0);
  auto graphed = Engine::Load(Options(DeviceKind::kCuda, DType::kBFloat16, {0}, 1));
#ifdef QWEN3_WITH_CUDA
  EXPECT_EQ(graphed->Info().cuda_graph_max_tokens, 512);
#endif
  // Shapes: one short text, a bucket filled exactly, several texts, the largest bucket, more
  // texts than a graph takes, and more tokens than the largest bucket (the last two run eagerly).
  const std::vector<std::vector<int>> shapes = {
      {5}, {16}, {3, 9, 1, 30}, {500, 12}, std::vector<int>(65, 2), {700}};
  for (const auto& lengths : shapes) {
    const PackedBatch batch = Texts(lengths, 13);
    SCOPED_TRACE(::testing::Message()
                 << lengths.size() << " texts, " << batch.token_ids.size() << " tokens");
    const std::vector<float> expected = eager->Embed(batch);
    EXPECT_GE(MinCosine(graphed->Embed(batch), expected, 128), 0.999);
    // A replay leaves nothing behind that changes the next one.
    EXPECT_GE(MinCosine(graphed->Embed(batch), expected, 128), 0.999);
  }
}

// Qwen2 (q/k/v biases) and Llama (every bias, llama3 rope) at a flash-attention head size: bf16
// on the GPU (graphed and eager, every pooling, prompt lengths through the graphs, two ranks where
// there are two GPUs) against the CPU in fp32.
TEST(CudaFamiliesTest, DecoderFamiliesMatchTheCpuForEveryPooling) {
  REQUIRE_GPUS(1);
  testing::TinyConfig qwen2 = testing::Qwen2Tiny();
  qwen2.hidden = 512;
  qwen2.head_dim = 64;  // Qwen2's config has no head_dim: the engine derives hidden / heads
  testing::TinyConfig llama = testing::LlamaTiny();
  llama.hidden = 128;
  llama.head_dim = 64;
  llama.heads = 4;
  llama.kv_heads = 2;
  for (const testing::TinyConfig& config : {qwen2, llama}) {
    SCOPED_TRACE(config.model_type);
    TempDir dir;
    CheckpointSpec spec;
    spec.config = config;
    spec.config.max_positions = 1024;
    testing::WriteCheckpoint(dir.path(), spec);
    PackedBatch batch;
    batch.cu_seqlens = {0};
    for (int length : {1, 9, 200, 33}) {
      for (int t = 0; t < length; ++t) batch.token_ids.push_back((t * 7 + length) % 256);
      batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
      batch.dimensions.push_back(64);
    }
    batch.prompt_lengths = {0, 4, 100, 0};
    PackedBatch small = batch;  // fits a graph bucket
    small.token_ids.resize(10);
    small.cu_seqlens = {0, 1, 10};
    small.dimensions = {64, 64};
    small.prompt_lengths = {0, 4};
    for (const std::string pooling : {"lasttoken", "cls", "mean"}) {
      SCOPED_TRACE(pooling);
      EngineOptions cpu_options;
      cpu_options.model_path = dir.path();
      cpu_options.pooling = pooling;
      auto cpu = Engine::Load(cpu_options);
      EngineOptions gpu_options = cpu_options;
      gpu_options.device = DeviceKind::kCuda;
      gpu_options.dtype = DType::kBFloat16;
      gpu_options.device_ids = {0};
      auto gpu = Engine::Load(gpu_options);
      EXPECT_GT(gpu->Info().cuda_graph_max_tokens, 0);
      EXPECT_GE(CudaTest::MinCosine(gpu->Embed(batch), cpu->Embed(batch), 64), 0.999);
      EXPECT_GE(CudaTest::MinCosine(gpu->Embed(small), cpu->Embed(small), 64), 0.999);
      if (CudaDeviceCount() >= 2) {
        gpu_options.device_ids = {0, 1};
        gpu_options.tensor_parallel_size = 2;
        auto tp = Engine::Load(gpu_options);
        EXPECT_GE(CudaTest::MinCosine(tp->Embed(batch), cpu->Embed(batch), 64), 0.999);
        EXPECT_GE(CudaTest::MinCosine(tp->Embed(small), cpu->Embed(small), 64), 0.999);
      }
    }
  }
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
  auto one = Engine::Load(EagerOptions({0}, 1));
  const std::vector<float> expected = one->Embed(Batch());
  one.reset();
  // NCCL alone (no peer kernel): every all-reduce through NCCL, and no graphs.
  EngineOptions nccl_options = Options(DeviceKind::kCuda, DType::kBFloat16, {0, 1}, 2);
  nccl_options.peer_all_reduce = false;
  auto nccl = Engine::Load(nccl_options);
  EXPECT_FALSE(nccl->Info().peer_all_reduce);
  EXPECT_EQ(nccl->Info().cuda_graph_max_tokens, 0);
  EXPECT_GE(MinCosine(nccl->Embed(Batch()), expected, 128), 0.999);
  nccl.reset();

  // The default: small all-reduces through the peer kernel, captured in the ranks' graphs.
  auto tp = Engine::Load(Options(DeviceKind::kCuda, DType::kBFloat16, {0, 1}, 2));
#ifdef QWEN3_WITH_CUDA
  EXPECT_TRUE(tp->Info().peer_all_reduce);
  EXPECT_EQ(tp->Info().cuda_graph_max_tokens, 512);
#endif
  EXPECT_GE(MinCosine(tp->Embed(Batch()), expected, 128), 0.999);
  // A short text (a graph replay) twice, then a batch past the largest bucket (eager, NCCL).
  const PackedBatch shortText = Texts({7}, 1);
  const PackedBatch longText = Texts({900}, 5);
  auto solo = Engine::Load(EagerOptions({0}, 1));
  for (const PackedBatch* batch : {&shortText, &shortText, &longText}) {
    EXPECT_GE(MinCosine(tp->Embed(*batch), solo->Embed(*batch), 128), 0.999);
  }
  solo.reset();

  // A rank failing mid-forward releases its peer (waiting in the peer kernel) and aborts the NCCL
  // communicators; the group is rebuilt, graphs included.
  std::atomic<bool> armed{true};
  tp->SetLayerTestHook([&](int, int rank, int layer) {
    if (rank == 1 && layer == 1 && armed.exchange(false)) throw std::runtime_error("injected");
  });
  ExpectError([&] { tp->Embed(Batch()); }, ErrorCode::kInternal, {"injected"});
  EXPECT_GE(MinCosine(tp->Embed(Batch()), expected, 128), 0.999);
  tp->SetLayerTestHook(nullptr);
  EXPECT_GE(MinCosine(tp->Embed(Batch()), expected, 128), 0.999);
  EXPECT_TRUE(tp->Health().ok);
}

TEST_F(CudaTest, ARankThatHangsFailsTheBatchAfterThePeerTimeoutAndTakesTheReplicaOut) {
  // Rank 1 stalls (does not fail) between two layers of a short text's eager forward: rank 0 waits
  // in the fused all-reduce's mailbox until the peer timeout (200 ms here), and every later launch
  // of the forward then gives up at once instead of waiting out a timeout of its own (72 x 30 s for
  // the 4B model). The batch fails with DEVICE_FAILED; the replica leaves service.
  REQUIRE_GPUS(2);
  EngineOptions options = Options(DeviceKind::kCuda, DType::kBFloat16, {0, 1}, 2);
  options.peer_timeout_ns = 200'000'000;
  auto tp = Engine::Load(options);
#ifdef QWEN3_WITH_CUDA
  ASSERT_TRUE(tp->Info().peer_all_reduce);
#endif
  const PackedBatch shortText = Texts({7}, 1);
  (void)tp->Embed(shortText);
  std::atomic<bool> armed{true};
  tp->SetLayerTestHook([&](int, int rank, int layer) {
    if (rank == 1 && layer == 1 && armed.exchange(false)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    }
  });
  const auto started = std::chrono::steady_clock::now();
  ExpectError([&] { tp->Embed(shortText); }, ErrorCode::kDeviceFailed,
              {"waited more than 200 ms for a peer GPU"});
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  const HealthStatus health = tp->Health();
  EXPECT_FALSE(health.ok);
  EXPECT_NE(health.reason.find("waited more than 200 ms"), std::string::npos) << health.reason;
  ExpectError([&] { tp->Embed(shortText); }, ErrorCode::kDeviceFailed, {"no healthy replica"});
}

#ifdef QWEN3_WITH_NCCL
// Runs fn(rank) on one thread per rank, each on its GPU and a stream of its own, and waits for the
// streams.
template <typename F>
void OnEveryRank(int world, F&& fn) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(r));
        c10::cuda::CUDAStreamGuard stream(
            c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(r)));
        fn(r);
        c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(r)).synchronize();
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

// An NCCL group with the peer kernel over the first min(GPUs, 4) devices; *world: their count.
// A peer timeout of 10 s: a rank that fails an assertion and never launches holds the others that
// long, not the default 30 s per call.
std::unique_ptr<CommunicatorGroup> PeerGroupOverUpToFourGpus(int* world,
                                                             std::string* note = nullptr) {
  *world = std::min(CudaDeviceCount(), 4);
  std::vector<int> ids;
  for (int r = 0; r < *world; ++r) ids.push_back(r);
  return MakeNcclGroup(ids, true, note, uint64_t{10'000'000'000});
}

TEST(PeerAllReduceTest, SumsLikeTheCpuOnEveryRankAndFallsBackToNccl) {
  REQUIRE_GPUS(2);
  std::string note;
  int world = 0;
  auto group = PeerGroupOverUpToFourGpus(&world, &note);
  ASSERT_GT(group->rank(0).capturable_bytes(), 0) << note;
  const int64_t staging_elements = group->rank(0).capturable_bytes() / 2;
  // Counts: tiny, a short query's [16, 2560], a large graph bucket's, one past the staging buffer
  // (NCCL) and one that is not a whole number of 16-byte vectors (NCCL).
  const std::vector<int64_t> counts = {8, 16 * 2560, 512 * 2560, staging_elements + 8, 1001};
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (int64_t count : counts) {
      SCOPED_TRACE(::testing::Message() << c10::toString(dtype) << " x " << count);
      std::vector<at::Tensor> inputs;
      at::Tensor expected = at::zeros({count}, at::kFloat);
      for (int r = 0; r < world; ++r) {
        at::Tensor x = (at::randn({count}, at::kFloat) * 8).to(dtype);
        inputs.push_back(x);
        expected = expected + x.to(at::kFloat);
      }
      std::vector<at::Tensor> sums(static_cast<size_t>(world));
      OnEveryRank(world, [&](int r) {
        const at::Tensor input = inputs[static_cast<size_t>(r)].to(at::Device(at::kCUDA, r));
        sums[static_cast<size_t>(r)] = group->rank(r).AllReduceSumAsFloat(input);
      });
      for (int r = 0; r < world; ++r) {
        at::Tensor sum = sums[static_cast<size_t>(r)].cpu();
        ASSERT_EQ(sum.scalar_type(), at::kFloat);
        // fp32 sums in rank order: the CPU's bits (NCCL's order may differ past two ranks).
        EXPECT_LE((sum - expected).abs().max().item<double>(),
                  world == 2 ? 0.0 : 1e-5 * expected.abs().max().item<double>());
        EXPECT_TRUE(at::equal(sum, sums[0].cpu()));
      }
    }
  }
}

// residual + the fp32 sum of the partials in rank order: the residual the fused kernel must write.
at::Tensor FusedResidual(const at::Tensor& residual, const std::vector<at::Tensor>& partials) {
  at::Tensor sum = at::zeros(residual.sizes(), at::kFloat);
  for (const at::Tensor& p : partials) sum = sum + p.to(at::kFloat);
  return residual + sum;
}

// `cpu` on rank r's GPU: a fresh tensor on even ranks, a view starting 8 bytes into a buffer (not
// 16-byte aligned) on odd ones.
at::Tensor AlignedOnEvenRanksOnly(const at::Tensor& cpu, int r) {
  const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(r));
  if (r % 2 == 0) return cpu.to(device);
  const int64_t shift = 8 / cpu.element_size();
  at::Tensor buffer = at::empty({cpu.numel() + shift}, cpu.options().device(device));
  at::Tensor view = buffer.narrow(0, shift, cpu.numel()).view(cpu.sizes());
  view.copy_(cpu);
  return view;
}

// Whether a tensor is aligned may differ between ranks; the ranks must still take the same path
// (the peer kernel or NCCL), or each would wait for the others in a different collective.
TEST(PeerAllReduceTest, TensorsAlignedOnSomeRanksOnlyStillMeetTheirPeers) {
  REQUIRE_GPUS(2);
  int world = 0;
  auto group = PeerGroupOverUpToFourGpus(&world);
  ASSERT_GT(group->rank(0).capturable_bytes(), 0);
  const int64_t rows = 16;
  const int64_t width = 2560;
  const at::Tensor residual = at::randn({rows, width}, at::kFloat) * 4;
  const at::Tensor weight = at::rand({width}, at::kFloat) + 0.5;
  std::vector<at::Tensor> partials;
  std::vector<at::Tensor> floats;
  for (int r = 0; r < world; ++r) {
    partials.push_back((at::randn({rows, width}, at::kFloat) * 2).to(at::kBFloat16));
    floats.push_back(at::randn({rows, width}, at::kFloat));
  }
  const auto n = static_cast<size_t>(world);
  std::vector<at::Tensor> sums(n), in_place(n), outs(n), residuals(n);
  OnEveryRank(world, [&](int r) {
    const auto i = static_cast<size_t>(r);
    Communicator& comm = group->rank(r);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(AlignedOnEvenRanksOnly(partials[i], r).data_ptr()) % 16,
              r % 2 == 0 ? 0u : 8u);
    sums[i] = comm.AllReduceSumAsFloat(AlignedOnEvenRanksOnly(partials[i], r));
    in_place[i] = AlignedOnEvenRanksOnly(floats[i], r);
    comm.AllReduceSum(in_place[i]);
    residuals[i] = AlignedOnEvenRanksOnly(residual, r);
    outs[i] = comm.AllReduceAddRmsNorm(AlignedOnEvenRanksOnly(partials[i], r), residuals[i],
                                       AlignedOnEvenRanksOnly(weight, r), 1e-6, at::kBFloat16);
  });
  // Every rank through the peer kernels: fp32 sums in rank order, the CPU's bits.
  const at::Tensor zero = at::zeros({rows, width}, at::kFloat);
  const at::Tensor expected_residual = FusedResidual(residual, partials);
  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE(::testing::Message() << "rank " << i);
    EXPECT_TRUE(at::equal(sums[i].cpu(), FusedResidual(zero, partials)));
    EXPECT_TRUE(at::equal(in_place[i].cpu(), FusedResidual(zero, floats)));
    ASSERT_TRUE(outs[i].defined());
    EXPECT_TRUE(at::equal(residuals[i].cpu(), expected_residual));
    EXPECT_TRUE(at::equal(outs[i].cpu(), outs[0].cpu()));
  }
}

TEST(PeerAllReduceTest, FusedAddRmsNormMatchesTheStepsOnEveryRank) {
  REQUIRE_GPUS(2);
  int world = 0;
  auto group = PeerGroupOverUpToFourGpus(&world);
  ASSERT_GT(group->rank(0).capturable_bytes(), 0);
  const double eps = 1e-6;
  // Rows: one, a short query, two rows for some blocks (24 blocks), the most the kernel takes.
  for (int64_t rows : {int64_t{1}, int64_t{16}, int64_t{37}, kernels::kPeerFusedMaxRows}) {
    for (at::ScalarType out_dtype : {at::kBFloat16, at::kFloat}) {
      const int64_t width = 2560;
      SCOPED_TRACE(::testing::Message() << rows << " rows -> " << c10::toString(out_dtype));
      const at::Tensor residual = at::randn({rows, width}, at::kFloat) * 4;
      const at::Tensor weight = at::rand({width}, at::kFloat) + 0.5;
      std::vector<at::Tensor> partials;
      for (int r = 0; r < world; ++r) {
        partials.push_back((at::randn({rows, width}, at::kFloat) * 2).to(at::kBFloat16));
      }
      const at::Tensor expected_residual = FusedResidual(residual, partials);
      const at::Tensor expected =
          (expected_residual * at::rsqrt(expected_residual.pow(2).mean(-1, true) + eps) * weight)
              .to(out_dtype)
              .to(at::kFloat);
      std::vector<at::Tensor> outs(static_cast<size_t>(world));
      std::vector<at::Tensor> residuals(static_cast<size_t>(world));
      OnEveryRank(world, [&](int r) {
        const at::Device device(at::kCUDA, r);
        at::Tensor res = residual.to(device);
        // A plain all-reduce before it: the two kernels share the blocks' epochs.
        (void)group->rank(r).AllReduceSumAsFloat(partials[static_cast<size_t>(r)].to(device));
        outs[static_cast<size_t>(r)] = group->rank(r).AllReduceAddRmsNorm(
            partials[static_cast<size_t>(r)].to(device), res, weight.to(device), eps, out_dtype);
        residuals[static_cast<size_t>(r)] = res;
      });
      for (int r = 0; r < world; ++r) {
        ASSERT_TRUE(outs[static_cast<size_t>(r)].defined());
        const at::Tensor out = outs[static_cast<size_t>(r)].cpu();
        ASSERT_EQ(out.scalar_type(), out_dtype);
        // The residual is the CPU's fp32 sum in rank order, bit for bit; the norm differs from
        // the CPU's only in the order of its sum of squares.
        EXPECT_TRUE(at::equal(residuals[static_cast<size_t>(r)].cpu(), expected_residual));
        const double tolerance = out_dtype == at::kFloat ? 1e-5 : 1e-2;
        EXPECT_LE((out.to(at::kFloat) - expected).abs().max().item<double>(),
                  tolerance * expected.abs().max().item<double>());
        EXPECT_TRUE(at::equal(out, outs[0].cpu()));
      }
    }
  }
  // What the kernel does not take comes back undefined, with the residual untouched: more rows
  // than it takes, and a row that is not a whole number of 16-byte vectors.
  for (auto [rows, width] :
       {std::pair<int64_t, int64_t>{kernels::kPeerFusedMaxRows + 1, 2560}, {4, 12}}) {
    const at::TensorOptions on0 = at::TensorOptions().device(at::kCUDA, 0);
    at::Tensor res = at::ones({rows, width}, on0.dtype(at::kFloat));
    c10::cuda::CUDAGuard guard(0);
    EXPECT_FALSE(group->rank(0)
                     .AllReduceAddRmsNorm(at::ones({rows, width}, on0.dtype(at::kBFloat16)), res,
                                          at::ones({width}, on0.dtype(at::kFloat)), eps,
                                          at::kBFloat16)
                     .defined());
    EXPECT_TRUE(at::equal(res.cpu(), at::ones({rows, width})));
  }
}

TEST(PeerAllReduceTest, FusedCallsInARowReadOnlyTheirOwnMail) {
  // The fused kernel's mailboxes have no flags: a reader takes a word as soon as it is not empty.
  // Each call here has new partials, and one rank comes late to each (in turn), so the others wait
  // on mailboxes used three calls before: a mailbox not emptied after its read would hand them that
  // call's message, and the residual would be wrong.
  REQUIRE_GPUS(2);
  int world = 0;
  auto group = PeerGroupOverUpToFourGpus(&world);
  ASSERT_GT(group->rank(0).capturable_bytes(), 0);
  const int64_t rows = 16;
  const int64_t width = 2560;
  const at::Tensor weight = at::ones({width}, at::kFloat);
  for (int call = 0; call < 3 * kernels::kPeerMailboxes + 1; ++call) {
    SCOPED_TRACE(::testing::Message() << "call " << call);
    const at::Tensor residual = at::randn({rows, width}, at::kFloat);
    std::vector<at::Tensor> partials;
    for (int r = 0; r < world; ++r) {
      partials.push_back(at::randn({rows, width}, at::kFloat).to(at::kBFloat16));
    }
    std::vector<at::Tensor> residuals(static_cast<size_t>(world));
    OnEveryRank(world, [&](int r) {
      const at::Device device(at::kCUDA, r);
      at::Tensor res = residual.to(device);
      const at::Tensor partial = partials[static_cast<size_t>(r)].to(device);
      const at::Tensor w = weight.to(device);
      c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(r)).synchronize();
      if (r == call % world) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ASSERT_TRUE(
          group->rank(r).AllReduceAddRmsNorm(partial, res, w, 1e-6, at::kBFloat16).defined());
      residuals[static_cast<size_t>(r)] = res;
    });
    const at::Tensor expected = FusedResidual(residual, partials);
    for (int r = 0; r < world; ++r) {
      EXPECT_TRUE(at::equal(residuals[static_cast<size_t>(r)].cpu(), expected)) << "rank " << r;
    }
  }
}

// GPUs 0 and 1's peer all-reduce, whose launches give up after 200 ms (null, and why, without peer
// access).
std::unique_ptr<PeerAllReduce> PeerPairTimingOutIn200Ms(std::string* why) {
  return PeerAllReduce::Create({0, 1}, int64_t{1} << 20, why, /*timeout_ns=*/200'000'000);
}

// Rank 0's side of a plain all-reduce of 4096 bf16 ones (rank 1 never joins, in these tests).
struct LonePlainLaunch {
  at::Tensor x = at::ones({4096}, at::TensorOptions().device(at::kCUDA, 0).dtype(at::kBFloat16));
  at::Tensor out = at::empty({4096}, x.options().dtype(at::kFloat));

  cudaError_t Run(const PeerAllReduce& peer, cudaStream_t stream) {
    return kernels::PeerAllReduceToFloat(peer.group(0), x.data_ptr(),
                                         kernels::ElementType::kBFloat16, out.data_ptr<float>(),
                                         x.numel(), stream);
  }
};

// Rank 0's side of a fused all-reduce + norm of `rows` x 256 bf16 ones into a zero residual.
struct LoneFusedLaunch {
  explicit LoneFusedLaunch(int64_t n) : rows(n) {}
  int64_t rows;
  at::TensorOptions on0 = at::TensorOptions().device(at::kCUDA, 0);
  at::Tensor partial = at::ones({rows, 256}, on0.dtype(at::kBFloat16));
  at::Tensor residual = at::zeros({rows, 256}, on0.dtype(at::kFloat));
  at::Tensor weight = at::ones({256}, on0.dtype(at::kFloat));
  at::Tensor out = at::empty({rows, 256}, on0.dtype(at::kBFloat16));

  cudaError_t Run(const kernels::PeerGroup& group, cudaStream_t stream) {
    return kernels::PeerAllReduceAddRmsNorm(
        group, partial.data_ptr(), kernels::ElementType::kBFloat16, residual.data_ptr<float>(),
        weight.data_ptr<float>(), 1e-6f, out.data_ptr(), kernels::ElementType::kBFloat16, rows, 256,
        stream);
  }
};

// After a lone launch with a 200 ms timeout: it waited that out (and not much longer) and set the
// timed-out word, which the reset clears.
void ExpectTimedOutThenReset(PeerAllReduce& peer, std::chrono::steady_clock::time_point started) {
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::seconds(5));
  EXPECT_TRUE(peer.timed_out());
  peer.Reset();
  EXPECT_FALSE(peer.timed_out());
}

TEST(PeerAllReduceTest, AFusedCallWhosePeerNeverComesTimesOutAndTheMailboxesAreEmptied) {
  REQUIRE_GPUS(2);
  std::string why;
  auto peer = PeerPairTimingOutIn200Ms(&why);
  ASSERT_NE(peer, nullptr) << why;
  const int64_t rows = 4;
  const int64_t width = 256;
  // Runs the fused kernel for `ranks` on their current streams: residual (zeros) += the sum of
  // the ranks' partials (rank + 1 + offset everywhere); returns each rank's residual.
  const auto fused = [&](const std::vector<int>& ranks, float offset) {
    std::vector<at::Tensor> residuals(2);
    std::vector<std::thread> threads;
    for (int r : ranks) {
      threads.emplace_back([&, r] {
        c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(r));
        const at::TensorOptions on = at::TensorOptions().device(at::kCUDA, r);
        at::Tensor partial = at::full({rows, width}, r + 1 + offset, on.dtype(at::kBFloat16));
        at::Tensor residual = at::zeros({rows, width}, on.dtype(at::kFloat));
        at::Tensor weight = at::ones({width}, on.dtype(at::kFloat));
        at::Tensor out = at::empty({rows, width}, on.dtype(at::kBFloat16));
        const cudaStream_t stream =
            c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(r)).stream();
        EXPECT_EQ(kernels::PeerAllReduceAddRmsNorm(
                      peer->group(r), partial.data_ptr(), kernels::ElementType::kBFloat16,
                      residual.data_ptr<float>(), weight.data_ptr<float>(), 1e-6f, out.data_ptr(),
                      kernels::ElementType::kBFloat16, rows, width, stream),
                  cudaSuccess);
        EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        residuals[static_cast<size_t>(r)] = residual.cpu();
      });
    }
    for (auto& t : threads) t.join();
    return residuals;
  };
  // Rank 0 alone: it posts into rank 1's mailbox and waits for mail that never comes. The reset
  // restarts the epochs, so the next call uses the same mailbox as the lone one, where rank 0's
  // stale message (1.0) still lies unless the reset emptied it: rank 1 would sum 1 + 12.
  const auto started = std::chrono::steady_clock::now();
  (void)fused({0}, 0.0f);
  ExpectTimedOutThenReset(*peer, started);
  const std::vector<at::Tensor> residuals = fused({0, 1}, 10.0f);
  EXPECT_FALSE(peer->timed_out());
  EXPECT_TRUE(at::equal(residuals[0], at::full({rows, width}, 23.0f)));
  EXPECT_TRUE(at::equal(residuals[1], at::full({rows, width}, 23.0f)));
}

// Runs `launch` (a collective that rank 1 never joins) on rank 0, on a stream of its own; checks
// that rank 0 is still waiting 50 ms later, and that the group's abort then releases it at once (a
// release, not a timeout).
void ExpectAnAbortReleasesRankZero(CommunicatorGroup& group, const std::function<void()>& launch) {
  c10::cuda::CUDAGuard guard(0);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  c10::cuda::CUDAStreamGuard stream_guard(stream);
  launch();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(cudaStreamQuery(stream.stream()), cudaErrorNotReady);
  const auto started = std::chrono::steady_clock::now();
  group.Abort();
  stream.synchronize();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  group.rank(0).ThrowIfCollectivesFailed();
}

TEST(PeerAllReduceTest, AnAbortReleasesARankWaitingForItsPeers) {
  REQUIRE_GPUS(2);
  auto group = MakeNcclGroup({0, 1}, true, nullptr);
  ASSERT_GT(group->rank(0).capturable_bytes(), 0);
  const at::TensorOptions on0 = at::TensorOptions().device(at::kCUDA, 0).dtype(at::kBFloat16);
  ExpectAnAbortReleasesRankZero(
      *group, [&] { (void)group->rank(0).AllReduceSumAsFloat(at::ones({4096}, on0)); });
  EXPECT_THROW((void)group->rank(0).AllReduceSumAsFloat(at::ones({4096}, on0)), CommAbortedError);
  // Rebuilt, both ranks sum again.
  group->Rebuild();
  std::vector<at::Tensor> sums(2);
  OnEveryRank(2, [&](int r) {
    at::Tensor input =
        at::full({4096}, r + 1.0, at::TensorOptions().device(at::kCUDA, r).dtype(at::kBFloat16));
    sums[static_cast<size_t>(r)] = group->rank(r).AllReduceSumAsFloat(input);
  });
  EXPECT_TRUE(at::equal(sums[0].cpu(), at::full({4096}, 3.0f)));
  EXPECT_TRUE(at::equal(sums[1].cpu(), at::full({4096}, 3.0f)));
}

TEST(PeerAllReduceTest, AnAbortReleasesARankWaitingForMail) {
  // The fused kernel's wait: rank 0 posts and waits for rank 1's rows, which never come.
  REQUIRE_GPUS(2);
  auto group = MakeNcclGroup({0, 1}, true, nullptr);
  ASSERT_GT(group->rank(0).capturable_bytes(), 0);
  const auto fused = [&](int r, float value) {
    const at::TensorOptions on = at::TensorOptions().device(at::kCUDA, r);
    at::Tensor residual = at::zeros({16, 2560}, on.dtype(at::kFloat));
    EXPECT_TRUE(group->rank(r)
                    .AllReduceAddRmsNorm(at::full({16, 2560}, value, on.dtype(at::kBFloat16)),
                                         residual, at::ones({2560}, on.dtype(at::kFloat)), 1e-6,
                                         at::kBFloat16)
                    .defined());
    return residual;
  };
  ExpectAnAbortReleasesRankZero(*group, [&] { (void)fused(0, 1.0f); });
  // Rebuilt (mailboxes emptied), both ranks sum again: 2 + 3, not rank 0's stale 1 + 3.
  group->Rebuild();
  std::vector<at::Tensor> residuals(2);
  OnEveryRank(2, [&](int r) { residuals[static_cast<size_t>(r)] = fused(r, r + 2.0f); });
  EXPECT_TRUE(at::equal(residuals[0].cpu(), at::full({16, 2560}, 5.0f)));
  EXPECT_TRUE(at::equal(residuals[1].cpu(), at::full({16, 2560}, 5.0f)));
}

TEST(PeerAllReduceTest, AnAbortReleasesARankWhosePeerPostedPartOfARow) {
  // As if rank 1 had faulted after posting the first vector of its row: that vector, written here
  // into rank 0's mailbox, lets rank 0's watcher thread through, and the block's other threads wait
  // for the rest of the row. The abort must release them too (before, they watched only the clock,
  // so only the timeout did: 20 s here).
  REQUIRE_GPUS(2);
  std::string why;
  auto peer = PeerAllReduce::Create({0, 1}, int64_t{1} << 20, &why, /*timeout_ns=*/20'000'000'000);
  ASSERT_NE(peer, nullptr) << why;
  const kernels::PeerGroup& group = peer->group(0);
  const int64_t slot_vectors = group.mailbox_slot_bytes / 16;
  // The first launch's epoch is 1: mailbox 1, rank 1's slot, row 0, vector 0; eight bf16 ones.
  uint4* first = static_cast<uint4*>(group.mailbox[0]) +
                 (1 % kernels::kPeerMailboxes) * group.world * slot_vectors + slot_vectors;
  const uint4 ones = make_uint4(0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u);
  ASSERT_EQ(cudaMemcpy(first, &ones, sizeof(ones), cudaMemcpyHostToDevice), cudaSuccess);

  c10::cuda::CUDAGuard guard(0);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  LoneFusedLaunch fused(1);
  c10::cuda::getCurrentCUDAStream(0).synchronize();
  ASSERT_EQ(fused.Run(group, stream.stream()), cudaSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(cudaStreamQuery(stream.stream()), cudaErrorNotReady);
  const auto started = std::chrono::steady_clock::now();
  peer->Abort();
  stream.synchronize();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_FALSE(peer->timed_out());
  peer->Reset();
}

TEST(PeerAllReduceTest, ATimeoutReleasesEveryLaunchAfterIt) {
  // Rank 0 alone enqueues a forward's worth of all-reduces (fused and plain) that rank 1 never
  // joins: the first waits out the 200 ms timeout, and the timed-out word releases the rest at once
  // (before 2d5a061 each waited 200 ms of its own: 2 s here).
  REQUIRE_GPUS(2);
  std::string why;
  auto peer = PeerPairTimingOutIn200Ms(&why);
  ASSERT_NE(peer, nullptr) << why;
  c10::cuda::CUDAGuard guard(0);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  LoneFusedLaunch fused(16);
  LonePlainLaunch lone;
  c10::cuda::getCurrentCUDAStream(0).synchronize();
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    const cudaError_t result =
        i % 2 == 0 ? fused.Run(peer->group(0), stream.stream()) : lone.Run(*peer, stream.stream());
    ASSERT_EQ(result, cudaSuccess);
  }
  stream.synchronize();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(1000));
  ExpectTimedOutThenReset(*peer, started);
}

TEST(PeerAllReduceTest, AFlagFarBehindTheEpochStillMeansWait) {
  // Fused launches advance the epochs but store no flags, so after a long run of them a plain
  // launch meets flags far behind its epoch. With 32-bit epochs a flag 2^31 behind compared as
  // ahead and the launch summed its peers' stale staging without waiting; epochs are 64-bit now.
  REQUIRE_GPUS(2);
  std::string why;
  auto peer = PeerPairTimingOutIn200Ms(&why);
  ASSERT_NE(peer, nullptr) << why;
  c10::cuda::CUDAGuard guard(0);
  const std::vector<uint64_t> epochs(kernels::kPeerBlocks, (uint64_t{1} << 31) + 5);
  ASSERT_EQ(cudaMemcpy(reinterpret_cast<char*>(peer->group(0).signals[0]) +
                           offsetof(kernels::PeerSignals, epochs),
                       epochs.data(), epochs.size() * sizeof(uint64_t), cudaMemcpyHostToDevice),
            cudaSuccess);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  LonePlainLaunch lone;
  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(lone.Run(*peer, stream.stream()), cudaSuccess);
  stream.synchronize();
  ExpectTimedOutThenReset(*peer, started);  // it waited for rank 1, which never came
}

TEST(PeerAllReduceTest, ARankWhosePeerNeverComesTimesOutAndTheGroupRecovers) {
  REQUIRE_GPUS(2);
  std::string why;
  auto peer = PeerPairTimingOutIn200Ms(&why);
  ASSERT_NE(peer, nullptr) << why;
  c10::cuda::CUDAGuard guard(0);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  LonePlainLaunch lone;
  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(lone.Run(*peer, stream.stream()), cudaSuccess);
  stream.synchronize();
  ExpectTimedOutThenReset(*peer, started);
  // Both ranks come: the sum is right again.
  std::vector<at::Tensor> sums(2);
  OnEveryRank(2, [&](int r) {
    at::Tensor input = at::full({4096}, r + 1.0, lone.x.options().device(at::Device(at::kCUDA, r)));
    at::Tensor sum = at::empty({4096}, input.options().dtype(at::kFloat));
    const cudaError_t result = kernels::PeerAllReduceToFloat(
        peer->group(r), input.data_ptr(), kernels::ElementType::kBFloat16, sum.data_ptr<float>(),
        input.numel(), c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(r)).stream());
    if (result != cudaSuccess) throw std::runtime_error(cudaGetErrorString(result));
    sums[static_cast<size_t>(r)] = sum;
  });
  EXPECT_FALSE(peer->timed_out());
  EXPECT_TRUE(at::equal(sums[0].cpu(), at::full({4096}, 3.0f)));
  EXPECT_TRUE(at::equal(sums[1].cpu(), at::full({4096}, 3.0f)));
}
#endif  // QWEN3_WITH_NCCL

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
  // The short query's message: the peer kernel where the GPUs reach each other's memory.
  EXPECT_EQ(result.small_bytes, 16 * 2560 * 2);
  EXPECT_GT(result.small_us, 0);
  EXPECT_TRUE(result.small_path == "peer" || result.small_path == "nccl") << result.small_path;
  AllReduceCheckResult nccl = RunAllReduceCheck(ids, /*peer_all_reduce=*/false);
  EXPECT_TRUE(nccl.ok);
  EXPECT_EQ(nccl.small_path, "nccl");
}

// A reranker's score head on the GPU (bf16, the pooled rows of a graph replay and of an eager
// forward, one GPU and two) against the CPU in fp32: one raw score per sequence, close in absolute
// terms to the scale of the scores (bf16 moves the hidden state by about 1e-2 of its norm).
TEST(CudaScoreHeadTest, EveryHeadMatchesTheCpu) {
  REQUIRE_GPUS(1);
  struct Form {
    std::string name;
    std::string head;
  };
  for (const Form& form :
       {Form{"tied", "yes-no"}, Form{"untied", "yes-no"}, Form{"classifier", "classifier"}}) {
    SCOPED_TRACE(form.name);
    TempDir dir;
    CheckpointSpec spec;
    spec.config.head_dim = 64;  // a flash-attention head size
    spec.config.hidden = 128;
    spec.config.max_positions = 1024;
    spec.model_prefix = true;
    spec.config.architecture = "Qwen3ForCausalLM";
    if (form.name == "untied") {
      spec.config.tie_word_embeddings = false;
      spec.lm_head = true;
    } else if (form.name == "classifier") {
      spec.config.architecture = "Qwen3ForSequenceClassification";
      spec.config.tie_word_embeddings = false;
      spec.score_labels = 1;
    }
    testing::WriteCheckpoint(dir.path(), spec);
    PackedBatch batch;
    batch.cu_seqlens = {0};
    for (int length : {1, 9, 200, 33, 5}) {
      for (int t = 0; t < length; ++t) batch.token_ids.push_back((t * 7 + length) % 256);
      batch.cu_seqlens.push_back(static_cast<int32_t>(batch.token_ids.size()));
      batch.dimensions.push_back(1);
    }
    PackedBatch small = batch;  // fits a graph bucket
    small.token_ids.resize(10);
    small.cu_seqlens = {0, 1, 10};
    small.dimensions = {1, 1};

    EngineOptions cpu_options;
    cpu_options.model_path = dir.path();
    cpu_options.head = form.head;
    cpu_options.normalize = false;
    cpu_options.yes_token_id = 17;
    cpu_options.no_token_id = 42;
    auto cpu = Engine::Load(cpu_options);
    const std::vector<float> expected = cpu->Embed(batch);
    const std::vector<float> expected_small = cpu->Embed(small);
    double scale = 1;
    for (float v : expected) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    const auto expect_close = [&](const std::vector<float>& actual,
                                  const std::vector<float>& reference) {
      ASSERT_EQ(actual.size(), reference.size());
      for (size_t i = 0; i < actual.size(); ++i) {
        EXPECT_NEAR(actual[i], reference[i], 0.05 * scale) << "sequence " << i;
      }
    };

    EngineOptions gpu_options = cpu_options;
    gpu_options.device = DeviceKind::kCuda;
    gpu_options.dtype = DType::kBFloat16;
    gpu_options.device_ids = {0};
    auto gpu = Engine::Load(gpu_options);
    EXPECT_EQ(gpu->Info().head, form.head);
    EXPECT_EQ(gpu->Info().output_dimension, 1);
    EXPECT_GT(gpu->Info().cuda_graph_max_tokens, 0);
    expect_close(gpu->Embed(batch), expected);
    expect_close(gpu->Embed(small), expected_small);
    gpu.reset();
    if (CudaDeviceCount() >= 2) {
      gpu_options.device_ids = {0, 1};
      gpu_options.tensor_parallel_size = 2;
      auto tp = Engine::Load(gpu_options);
      expect_close(tp->Embed(batch), expected);
      expect_close(tp->Embed(small), expected_small);
    }
  }
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
