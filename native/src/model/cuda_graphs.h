// CUDA graphs of the whole forward pass for small batches. A short query through the eager path
// is ~500 kernel launches whose CPU-side dispatch takes longer than the GPU work; a graph replays
// them in one launch. Batches are padded up to a token-count bucket (one graph per bucket) and to
// the bucket's sequence slots; the padding is one extra sequence, so every row the graph computes
// is well defined and none reaches a real sequence (attention is within sequences, everything
// else is per token).
//
// Tensor-parallel ranks are captured only when their communicator can put every all-reduce of the
// largest bucket into the graph (Communicator::capturable_bytes: the peer kernel of
// parallel/peer_all_reduce.h), never NCCL: ncclCommAbort blocks until every graph that captured
// the communicator is destroyed, which deadlocks the engine's failure protocol (a failing rank
// aborts the group to release its peers while they still hold their graphs). Every rank of a
// group captures the same buckets and replays the same one for a batch. CUDA builds only.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model/embedding_model.h"
#include "model/packed_batch.h"
#include "parallel/communicator.h"

namespace qwen3 {

struct GraphOptions {
  int64_t max_tokens = 512;    // the largest bucket; 0 turns graphs off
  int64_t max_sequences = 64;  // real sequences a graph takes
};

// The token-count buckets up to max_tokens: 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, ...
// (two per power of two past 32), ending at max_tokens itself. Empty when max_tokens < 1.
std::vector<int64_t> GraphBuckets(int64_t max_tokens);

class ForwardGraphs {
 public:
  // True when this build and model can use graphs: CUDA, flash attention (the math path reads the
  // sequence layout on the host, which a graph would freeze), and a communicator that can capture
  // the all-reduces of a batch (the buckets then stop at TokenLimit).
  static bool Supported(const EmbeddingModel& model, const Communicator& comm);
  // The most tokens a captured batch may have for `comm` to capture its all-reduces.
  static int64_t TokenLimit(const EmbeddingModel& model, const Communicator& comm);

  ForwardGraphs(const EmbeddingModel& model, GraphOptions options);
  ~ForwardGraphs();
  ForwardGraphs(const ForwardGraphs&) = delete;
  ForwardGraphs& operator=(const ForwardGraphs&) = delete;

  // Runs and captures every bucket, largest first (the smaller ones reuse its memory), on the
  // calling thread's current stream. Throws on failure; the object then holds no graph.
  void Capture(Communicator& comm);

  bool captured() const noexcept { return captured_; }
  int64_t max_tokens() const noexcept;
  size_t buckets() const noexcept { return buckets_.size(); }

  // Whether a captured graph takes this batch.
  bool Fits(const PackedBatch& batch) const noexcept;

  // Stages the batch (asynchronously, on the current stream) into the smallest bucket that fits
  // and replays its graph. Returns [n, hidden] fp32 on the device, valid until the next Run.
  at::Tensor Run(const PackedBatch& batch);

 private:
  struct Bucket;
  Bucket* Find(int64_t tokens, int64_t sequences) const noexcept;
  void Stage(Bucket& bucket, const PackedBatch& batch);

  const EmbeddingModel& model_;
  GraphOptions options_;
  std::vector<std::unique_ptr<Bucket>> buckets_;  // ascending token counts
  bool captured_ = false;
};

}  // namespace qwen3
