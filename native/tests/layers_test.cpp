#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

#include "common/error.h"
#include "model/attention.h"
#include "model/cuda_graphs.h"
#include "model/fused_ops.h"
#include "model/layers.h"
#include "model/packed_batch.h"
#include "model/packed_input.h"
#include "model/pooling.h"
#include "parallel/communicator.h"
#include "reference_model.h"
#include "test_util.h"

namespace qwen3 {
namespace {

using testing::ExpectError;

TEST(RmsNormTest, MatchesTheFormula) {
  at::Tensor x = at::randn({5, 3, 16});
  at::Tensor w = at::randn({16});
  at::Tensor got = RmsNormTo(x, w, 1e-6, at::kFloat);
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(got.to(at::kDouble), testing::NaiveRmsNorm(x, w, 1e-6), 1e-5, 1e-6));
}

TEST(RmsNormTest, AppliesTheWeightInFp32AndRoundsOnceToTheOutputDtype) {
  // The fp32 residual stream in, bf16 weight, bf16 out for the next GEMM: one rounding at the end.
  at::Tensor x = at::randn({4, 32});
  at::Tensor w = at::randn({32}).to(at::kBFloat16);
  at::Tensor expected =
      (x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-6) * w.to(at::kFloat)).to(at::kBFloat16);
  at::Tensor got = RmsNormTo(x, w, 1e-6, at::kBFloat16);
  EXPECT_EQ(got.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(got, expected));
}

TEST(FusedOpsTest, AddRmsNormAddsInPlaceThenNormalises) {
  at::Tensor residual = at::randn({4, 32});
  at::Tensor delta = at::randn({4, 32});
  at::Tensor w = at::randn({32});
  at::Tensor expected_residual = residual + delta;
  at::Tensor expected = RmsNormTo(expected_residual, w, 1e-6, at::kFloat);
  at::Tensor handle = residual;
  at::Tensor got = AddRmsNorm(handle, delta, w, 1e-6, at::kFloat);
  EXPECT_TRUE(at::equal(residual, expected_residual));  // the caller's stream, updated in place
  EXPECT_TRUE(at::allclose(got, expected));
  // Without a delta it is the plain norm.
  EXPECT_TRUE(at::allclose(AddRmsNorm(handle, at::Tensor(), w, 1e-6, at::kFloat), expected));
}

TEST(FusedOpsTest, QkNormRopeNormalisesAndRotatesQAndKAndCopiesV) {
  const int64_t tokens = 7;
  const int64_t dim = 16;
  at::Tensor qkv = at::randn({tokens, (4 + 2 * 2) * dim});
  at::Tensor q_norm = at::randn({dim});
  at::Tensor k_norm = at::randn({dim});
  RotaryEmbedding rope(dim, 1e6, at::kCPU);
  RotaryInputs rotary;
  rotary.positions = at::arange(tokens, at::kInt);
  rotary.inv_freq = rope.inv_freq();
  auto [q, k, v] = QkNormRope(qkv, 4, 2, dim, q_norm, k_norm, rotary, 1e-6);
  auto [cos, sin] = rope.CosSin(rotary.positions);
  at::Tensor q_in = qkv.narrow(1, 0, 4 * dim).reshape({tokens, 4, dim});
  at::Tensor k_in = qkv.narrow(1, 4 * dim, 2 * dim).reshape({tokens, 2, dim});
  EXPECT_TRUE(at::allclose(q, ApplyRotary(RmsNormTo(q_in, q_norm, 1e-6, at::kFloat), cos, sin)));
  EXPECT_TRUE(at::allclose(k, ApplyRotary(RmsNormTo(k_in, k_norm, 1e-6, at::kFloat), cos, sin)));
  EXPECT_TRUE(at::equal(v, qkv.narrow(1, 6 * dim, 2 * dim).reshape({tokens, 2, dim})));
}

TEST(FusedOpsTest, SiluMulGatesTheUpHalf) {
  at::Tensor gate_up = at::randn({3, 10});
  at::Tensor gate = gate_up.narrow(1, 0, 5);
  at::Tensor up = gate_up.narrow(1, 5, 5);
  EXPECT_TRUE(at::allclose(SiluMul(gate_up), gate / (1 + at::exp(-gate)) * up, 1e-5, 1e-6));
}

TEST(CudaGraphTest, BucketsGrowByHalvesOfPowersOfTwoUpToTheLimit) {
  EXPECT_EQ(GraphBuckets(512), (std::vector<int64_t>{16, 32, 48, 64, 96, 128, 192, 256, 384, 512}));
  EXPECT_EQ(GraphBuckets(100), (std::vector<int64_t>{16, 32, 48, 64, 96, 100}));
  EXPECT_EQ(GraphBuckets(8), (std::vector<int64_t>{8}));
  EXPECT_TRUE(GraphBuckets(0).empty());
}

TEST(RotaryTest, MatchesRotateHalfByTheFormula) {
  const int64_t length = 40;
  const int64_t dim = 16;
  at::Tensor x = at::randn({length, 3, dim});
  RotaryEmbedding rope(dim, 1e6, at::kCPU);
  auto [cos, sin] = rope.CosSin(at::arange(length, at::kInt));
  at::Tensor got = ApplyRotary(x, cos, sin);
  EXPECT_TRUE(at::allclose(got.to(at::kDouble), testing::NaiveRotary(x, 1e6), 1e-4, 1e-5));
}

TEST(RotaryTest, PositionZeroIsIdentityAndNormIsKept) {
  at::Tensor x = at::randn({6, 2, 8});
  RotaryEmbedding rope(8, 10000.0, at::kCPU);
  auto [cos, sin] = rope.CosSin(at::tensor({0, 1, 2, 3, 100, 5000}, at::kInt));
  at::Tensor got = ApplyRotary(x, cos, sin);
  EXPECT_TRUE(at::allclose(got[0], x[0]));
  EXPECT_TRUE(at::allclose(got.norm(2, -1), x.norm(2, -1), 1e-5, 1e-5));
}

PackedInput CpuInput(const std::vector<int32_t>& lengths) {
  PackedBatch batch;
  batch.cu_seqlens.push_back(0);
  for (int32_t l : lengths) {
    for (int32_t t = 0; t < l; ++t) batch.token_ids.push_back(t);
    batch.cu_seqlens.push_back(batch.cu_seqlens.back() + l);
    batch.dimensions.push_back(32);
  }
  return PackedInput::Make(batch, at::kCPU);
}

TEST(PackedInputTest, RestartsPositionsAndFindsLastTokens) {
  PackedInput in = CpuInput({3, 1, 4});
  EXPECT_TRUE(at::equal(in.positions, at::tensor({0, 1, 2, 0, 0, 1, 2, 3}, at::kInt)));
  EXPECT_TRUE(at::equal(in.last_token, at::tensor({2, 3, 7}, at::kLong)));
  EXPECT_TRUE(at::equal(in.first_token, at::tensor({0, 3, 4}, at::kLong)));
  EXPECT_TRUE(at::equal(in.prompt_lengths, at::tensor({0, 0, 0}, at::kInt)));  // none given
  EXPECT_EQ(in.max_seqlen, 4);
  EXPECT_EQ(in.num_sequences(), 3);
}

TEST(AttentionTest, CausalGqaMatchesPerHeadReference) {
  const int64_t heads = 6;
  const int64_t kv_heads = 2;
  const int64_t dim = 8;
  PackedInput in = CpuInput({5, 1, 300});  // 300 rows exercise the chunked path
  const int64_t tokens = in.num_tokens();
  at::Tensor q = at::randn({tokens, heads, dim});
  at::Tensor k = at::randn({tokens, kv_heads, dim});
  at::Tensor v = at::randn({tokens, kv_heads, dim});
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  at::Tensor got = CausalAttention(q, k, v, in, scale, /*use_flash=*/false);

  for (size_t s = 0; s + 1 < in.cu_seqlens_host.size(); ++s) {
    const int64_t begin = in.cu_seqlens_host[s];
    const int64_t length = in.cu_seqlens_host[s + 1] - begin;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv = h / (heads / kv_heads);
      at::Tensor qh = q.narrow(0, begin, length).select(1, h).to(at::kDouble);
      at::Tensor kh = k.narrow(0, begin, length).select(1, kv).to(at::kDouble);
      at::Tensor vh = v.narrow(0, begin, length).select(1, kv).to(at::kDouble);
      at::Tensor scores = at::matmul(qh, kh.t()) * scale;
      scores.masked_fill_(at::ones({length, length}, at::kBool).triu(1),
                          -std::numeric_limits<double>::infinity());
      at::Tensor expected = at::matmul(at::softmax(scores, -1), vh);
      EXPECT_TRUE(at::allclose(got.narrow(0, begin, length).select(1, h).to(at::kDouble), expected,
                               1e-4, 1e-5))
          << "sequence " << s << " head " << h;
    }
  }
}

TEST(PoolingTest, TruncatesThenNormalises) {
  const std::vector<float> hidden = {3, 4, 12, 0,  //
                                     0, 0, 0,  0};
  std::vector<float> out = TruncateAndNormalize(hidden.data(), 2, 4, {2, 4});
  ASSERT_EQ(out.size(), 6u);
  EXPECT_FLOAT_EQ(out[0], 0.6f);
  EXPECT_FLOAT_EQ(out[1], 0.8f);
  for (size_t i = 2; i < 6; ++i) EXPECT_EQ(out[i], 0.0f);  // a zero row stays zero, no NaN
}

TEST(BatchValidationTest, AcceptsAValidBatch) {
  BatchLimits limits{100, 64, 8, 32};
  PackedBatch batch{{1, 2, 3, 99}, {0, 3, 4}, {32, 64}};
  EXPECT_NO_THROW(ValidateBatch(batch, limits));
  EXPECT_EQ(batch.output_size(), 96u);
}

TEST(BatchValidationTest, RejectsEachKindOfBadBatch) {
  const BatchLimits limits{100, 64, 8, 32};
  const std::pair<PackedBatch, std::string> cases[] = {
      {{{}, {0}, {}}, "tokenIds is empty"},
      {{{1}, {0}, {}}, "cuSeqlens must have n+1 >= 2 entries"},
      {{{1, 2}, {1, 2}, {32}}, "must start at 0"},
      {{{1, 2}, {0, 2, 2}, {32, 32}}, "sequence 1 is empty"},
      {{{1, 2}, {0, 2, 1}, {32, 32}}, "strictly increasing"},
      {{{1, 2}, {0, 1}, {32}}, "must end at tokenIds.length (2)"},
      {{{1, 2}, {0, 1, 2}, {32}}, "dimensions has 1 entries for 2 sequences"},
      {{{1}, {0, 1}, {31}}, "dimensions[0] = 31 is outside 32..64"},
      {{{1}, {0, 1}, {65}}, "dimensions[0] = 65"},
      {{{1, 100}, {0, 2}, {32}}, "tokenIds[1] = 100 is outside 0..99"},
      {{{-5}, {0, 1}, {32}}, "tokenIds[0] = -5"},
      {{std::vector<int32_t>(9, 1), {0, 9}, {32}}, "sequence 0 has 9 tokens"},
  };
  for (const auto& [batch, needle] : cases) {
    ExpectError([&] { ValidateBatch(batch, limits); }, ErrorCode::kInvalidArgument, {needle});
  }
}

TEST(InProcessCommunicatorTest, AllReduceSumsInRankOrderOnEveryRank) {
  const int world = 4;
  auto group = MakeInProcessGroup(world);
  std::vector<at::Tensor> results(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      for (int round = 0; round < 3; ++round) {
        at::Tensor t = at::full({7, 3}, static_cast<float>(r + 1 + round));
        group->rank(r).AllReduceSum(t);
        results[r] = t;
      }
      group->rank(r).Barrier();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    EXPECT_TRUE(at::equal(results[r], at::full({7, 3}, 1.f + 2 + 3 + 4 + 4 * 2))) << r;
  }
}

TEST(InProcessCommunicatorTest, AbortReleasesWaitersAndRebuildRestoresTheGroup) {
  auto group = MakeInProcessGroup(2);
  std::atomic<bool> aborted_seen{false};
  std::thread waiter([&] {
    at::Tensor t = at::ones({4});
    try {
      group->rank(1).AllReduceSum(t);  // rank 0 never arrives
    } catch (const CommAbortedError&) {
      aborted_seen = true;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  group->Abort();
  waiter.join();
  EXPECT_TRUE(aborted_seen);
  EXPECT_TRUE(group->aborted());
  at::Tensor late = at::ones({4});
  EXPECT_THROW(group->rank(0).AllReduceSum(late), CommAbortedError);

  group->Rebuild();
  EXPECT_FALSE(group->aborted());
  std::vector<at::Tensor> out(2);
  std::thread a([&] {
    out[0] = at::ones({4});
    group->rank(0).AllReduceSum(out[0]);
  });
  std::thread b([&] {
    out[1] = at::ones({4});
    group->rank(1).AllReduceSum(out[1]);
  });
  a.join();
  b.join();
  EXPECT_TRUE(at::equal(out[0], at::full({4}, 2.f)));
  EXPECT_TRUE(at::equal(out[1], at::full({4}, 2.f)));
}

}  // namespace
}  // namespace qwen3
