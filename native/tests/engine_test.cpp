#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>

#include "common/sync.h"
#include "reference_model.h"
#include "runtime/engine.h"
#include "test_checkpoint.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::CheckpointSpec;
using testing::ExpectError;
using testing::TempDir;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    written_ = new testing::WrittenCheckpoint(testing::WriteCheckpoint(dir_->path(), spec_));
  }
  static void TearDownTestSuite() {
    delete written_;
    delete dir_;
  }

  static EngineOptions Options(int tp = 1) {
    EngineOptions options;
    options.model_path = dir_->path();
    options.tensor_parallel_size = tp;
    options.cpu_threads = 2;
    return options;
  }

  static PackedBatch Batch() {
    return PackedBatch{{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {0, 4, 5, 11}, {64, 32, 48}};
  }

  static void ExpectSameRows(const std::vector<float>& a, const std::vector<float>& b,
                             const std::vector<int32_t>& dims) {
    ASSERT_EQ(a.size(), b.size());
    size_t offset = 0;
    for (int32_t d : dims) {
      EXPECT_GE(testing::Cosine(a.data() + offset, b.data() + offset, d), 0.99999);
      offset += static_cast<size_t>(d);
    }
  }

  static inline CheckpointSpec spec_;
  static inline TempDir* dir_ = nullptr;
  static inline testing::WrittenCheckpoint* written_ = nullptr;
};

TEST(RootCauseTest, PrefersTheFirstErrorThatIsNotAnotherRanksAbort) {
  const auto aborted = std::make_exception_ptr(CommAbortedError("aborted"));
  const auto failed = std::make_exception_ptr(Error(ErrorCode::kOutOfMemory, "oom"));
  EXPECT_EQ(RootCause({}), nullptr);
  EXPECT_EQ(RootCause({nullptr, nullptr}), nullptr);
  EXPECT_EQ(RootCause({aborted, nullptr, failed}), failed);
  EXPECT_EQ(RootCause({nullptr, aborted}), aborted);
  EXPECT_TRUE(IsCommAborted(aborted));
  EXPECT_FALSE(IsCommAborted(failed));
}

TEST(SpinForTest, ReturnsOnceReadyOrWhenTheBudgetIsSpent) {
  using std::chrono::microseconds;
  EXPECT_TRUE(SpinFor(microseconds(0), [] { return true; }));
  EXPECT_FALSE(SpinFor(microseconds(0), [] { return false; }));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(SpinFor(microseconds(2000), [] { return false; }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, microseconds(2000));
  std::atomic<bool> flag{false};
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    flag = true;
  });
  EXPECT_TRUE(SpinFor(std::chrono::seconds(10), [&] { return flag.load(); }));
  setter.join();
}

TEST(BarrierTest, SpinningWaitersMeetAndAnAbortReleasesThem) {
  using std::chrono::microseconds;
  Barrier barrier(3);
  std::atomic<int> rounds{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        barrier.ArriveAndWait(microseconds(t == 0 ? 0 : 20'000));
        if (t == 0) ++rounds;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(rounds.load(), 50);

  // A waiter spinning with a long budget is released by Abort() at once, not when its spin ends.
  Barrier lone(2);
  const auto start = std::chrono::steady_clock::now();
  std::thread aborter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    lone.Abort();
  });
  EXPECT_THROW(lone.ArriveAndWait(std::chrono::seconds(30)), CommAbortedError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  aborter.join();
}

TEST_F(EngineTest, EmbedsLikeTheReference) {
  auto engine = Engine::Load(Options());
  PackedBatch batch = Batch();
  const std::vector<float> out = engine->Embed(batch);
  size_t offset = 0;
  for (size_t s = 0; s + 1 < batch.cu_seqlens.size(); ++s) {
    std::vector<int32_t> ids(batch.token_ids.begin() + batch.cu_seqlens[s],
                             batch.token_ids.begin() + batch.cu_seqlens[s + 1]);
    auto expected =
        testing::ReferenceEmbedding(written_->weights, spec_.config, ids, batch.dimensions[s]);
    EXPECT_GE(testing::Cosine(out.data() + offset, expected.data(), batch.dimensions[s]), 0.99999);
    offset += static_cast<size_t>(batch.dimensions[s]);
  }
  EXPECT_TRUE(engine->Health().ok);
}

TEST_F(EngineTest, TensorParallelRanksMatchASingleRank) {
  auto single = Engine::Load(Options(1));
  const std::vector<float> expected = single->Embed(Batch());
  for (int tp : {2, 4}) {
    SCOPED_TRACE("tp=" + std::to_string(tp));
    auto engine = Engine::Load(Options(tp));
    ExpectSameRows(engine->Embed(Batch()), expected, Batch().dimensions);
    EngineInfo info = engine->Info();
    EXPECT_EQ(info.tensor_parallel_size, tp);
    EXPECT_EQ(info.replicas, 1);
    ASSERT_EQ(info.devices.size(), static_cast<size_t>(tp));
    EXPECT_EQ(info.devices.back().rank, tp - 1);
  }
}

TEST_F(EngineTest, DescribesTheModel) {
  auto engine = Engine::Load(Options());
  EngineInfo info = engine->Info();
  EXPECT_EQ(info.model_path, dir_->path());
  EXPECT_EQ(info.model_type, "qwen3");
  EXPECT_EQ(info.hidden_size, 64);
  EXPECT_EQ(info.vocab_size, 256);
  EXPECT_EQ(info.max_position_embeddings, 128);
  EXPECT_EQ(info.device, DeviceKind::kCpu);
  EXPECT_EQ(info.dtype, DType::kFloat32);
  int64_t expected_parameters = 0;
  for (const auto& [name, w] : written_->weights) expected_parameters += w.numel();
  EXPECT_EQ(info.parameters, expected_parameters);
  ASSERT_EQ(info.devices.size(), 1u);
  EXPECT_EQ(info.devices[0].index, -1);
  EXPECT_GT(info.devices[0].used_memory_bytes, 0);
}

TEST_F(EngineTest, RejectsBadBatchesAndKeepsServing) {
  auto engine = Engine::Load(Options());
  const std::vector<PackedBatch> bad = {
      {{}, {0}, {}},
      {{1, 2}, {0, 2, 2}, {64, 64}},
      {{1, 256}, {0, 2}, {64}},
      {{1}, {0, 1}, {16}},
      {{1}, {0, 1}, {64, 64}},
      {std::vector<int32_t>(129, 1), {0, 129}, {64}},
  };
  for (const auto& batch : bad) {
    ExpectError([&] { engine->Submit(batch, [](std::vector<float>, const Error*) {}); },
                ErrorCode::kInvalidArgument, {});
    EXPECT_EQ(engine->Embed(Batch()).size(), 64u + 32 + 48);
  }
}

TEST_F(EngineTest, CompletesConcurrentSubmissions) {
  auto engine = Engine::Load(Options(2));
  const std::vector<float> expected = engine->Embed(Batch());
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int matching = 0;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 4; ++i) {
        engine->Submit(Batch(), [&](std::vector<float> rows, const Error* error) {
          std::lock_guard<std::mutex> lock(mu);
          if (error == nullptr && rows == expected) ++matching;
          ++done;
          cv.notify_all();
        });
      }
    });
  }
  for (auto& t : clients) t.join();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done == 16; });
  EXPECT_EQ(matching, 16);
}

// Rank threads that spin for the next batch (EngineOptions::idle_spin_us, the server's BUSY_POLL)
// serve the same rows, take batches that come while they spin or after they slept, and stop at
// shutdown without waiting out their spin.
TEST_F(EngineTest, SpinningRankThreadsServeAndShutDownPromptly) {
  auto reference = Engine::Load(Options(1));
  const std::vector<float> expected = reference->Embed(Batch());
  EngineOptions options = Options(2);
  options.idle_spin_us = 20'000;
  auto engine = Engine::Load(options);
  for (int i = 0; i < 5; ++i) ExpectSameRows(engine->Embed(Batch()), expected, Batch().dimensions);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // past the spin: asleep
  ExpectSameRows(engine->Embed(Batch()), expected, Batch().dimensions);
  options.idle_spin_us = 30'000'000;
  auto long_spin = Engine::Load(options);
  ExpectSameRows(long_spin->Embed(Batch()), expected, Batch().dimensions);
  const auto start = std::chrono::steady_clock::now();
  long_spin->Shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(EngineTest, ARankFailingMidForwardReleasesItsPeers) {
  for (int failing_rank : {0, 1}) {
    SCOPED_TRACE("failing rank " + std::to_string(failing_rank));
    auto engine = Engine::Load(Options(2));
    const std::vector<float> expected = engine->Embed(Batch());
    std::atomic<bool> armed{true};
    engine->SetLayerTestHook([&](int, int rank, int layer) {
      if (rank == failing_rank && layer == 1 && armed.exchange(false)) {
        throw std::runtime_error("injected failure");
      }
    });
    ExpectError([&] { engine->Embed(Batch()); }, ErrorCode::kInternal, {"injected failure"});
    // The group was aborted and rebuilt: the next batch runs on both ranks again.
    ExpectSameRows(engine->Embed(Batch()), expected, Batch().dimensions);
    EXPECT_TRUE(engine->Health().ok);
  }
}

TEST_F(EngineTest, OutOfMemoryRejectsTheBatchAndKeepsServing) {
  auto engine = Engine::Load(Options(2));
  std::atomic<bool> armed{true};
  engine->SetLayerTestHook([&](int, int rank, int layer) {
    if (rank == 1 && layer == 0 && armed.exchange(false)) throw std::bad_alloc();
  });
  ExpectError([&] { engine->Embed(Batch()); }, ErrorCode::kOutOfMemory, {"memory"});
  EXPECT_EQ(engine->Embed(Batch()).size(), 64u + 32 + 48);
  EXPECT_TRUE(engine->Health().ok);
}

TEST_F(EngineTest, ADeviceFailureTakesTheReplicaOutOfService) {
  auto engine = Engine::Load(Options(2));
  engine->SetLayerTestHook([&](int, int rank, int) {
    if (rank == 1) throw Error(ErrorCode::kDeviceFailed, "device lost");
  });
  ExpectError([&] { engine->Embed(Batch()); }, ErrorCode::kDeviceFailed, {"device lost"});
  HealthStatus health = engine->Health();
  EXPECT_FALSE(health.ok);
  EXPECT_NE(health.reason.find("device lost"), std::string::npos) << health.reason;
  ExpectError([&] { engine->Embed(Batch()); }, ErrorCode::kDeviceFailed, {"no healthy replica"});
}

TEST_F(EngineTest, ShutdownFinishesQueuedBatchesThenRefusesNewOnes) {
  auto engine = Engine::Load(Options());
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    engine->Submit(Batch(), [&](std::vector<float> rows, const Error* error) {
      if (error == nullptr && !rows.empty()) ++ok;
    });
  }
  engine->Shutdown();
  EXPECT_EQ(ok.load(), 6);
  ExpectError([&] { engine->Embed(Batch()); }, ErrorCode::kEngineDisposed, {});
  engine->Shutdown();  // idempotent
}

TEST_F(EngineTest, RejectsBadLoadOptions) {
  EngineOptions tp3 = Options(3);
  ExpectError([&] { Engine::Load(tp3); }, ErrorCode::kInvalidArgument,
              {"tensorParallelSize 3", "num_key_value_heads (4)"});
  EngineOptions bf16 = Options();
  bf16.dtype = DType::kBFloat16;
  ExpectError([&] { Engine::Load(bf16); }, ErrorCode::kInvalidArgument, {"float32"});
  EngineOptions spin = Options();
  spin.idle_spin_us = 60'000'001;
  ExpectError([&] { Engine::Load(spin); }, ErrorCode::kInvalidArgument,
              {"idleSpinUs must be at most 60 s"});
  spin = Options();
  spin.device_spin_us = 60'000'001;
  ExpectError([&] { Engine::Load(spin); }, ErrorCode::kInvalidArgument,
              {"deviceSpinUs must be at most 60 s"});
  EngineOptions missing = Options();
  missing.model_path = dir_->Join("absent");
  ExpectError([&] { Engine::Load(missing); }, ErrorCode::kModelLoadFailed, {"absent"});
  EngineOptions cuda = Options();
  cuda.device = DeviceKind::kCuda;
  cuda.device_ids = {};
  ExpectError([&] { Engine::Load(cuda); }, ErrorCode::kInvalidArgument, {"deviceIds"});
#ifndef QWEN3_WITH_CUDA
  cuda.device_ids = {0};
  ExpectError([&] { Engine::Load(cuda); }, ErrorCode::kDeviceFailed, {"no CUDA"});
#endif
}

TEST_F(EngineTest, LoadingCanBeCancelled) {
  std::atomic<bool> cancel{true};
  ExpectError([&] { Engine::Load(Options(2), nullptr, &cancel); }, ErrorCode::kModelLoadFailed,
              {"cancelled"});
}

}  // namespace
}  // namespace qwen3
