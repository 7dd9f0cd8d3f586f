#include "model/cuda_graphs.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#ifdef QWEN3_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "common/error.h"

namespace qwen3 {

std::vector<int64_t> GraphBuckets(int64_t max_tokens) {
  std::vector<int64_t> buckets;
  if (max_tokens < 1) return buckets;
  for (int64_t size : {int64_t{16}, int64_t{32}}) {
    if (size <= max_tokens) buckets.push_back(size);
  }
  for (int64_t power = 32; power < max_tokens; power *= 2) {
    for (int64_t size : {power + power / 2, power * 2}) {
      if (size <= max_tokens) buckets.push_back(size);
    }
  }
  if (buckets.empty() || buckets.back() != max_tokens) buckets.push_back(max_tokens);
  return buckets;
}

struct ForwardGraphs::Bucket {
  int64_t tokens = 0;
  int64_t sequences = 0;  // slots, the padding sequence included
  // int32: token ids [tokens] | positions [tokens] | cu_seqlens [sequences + 1] | last, first and
  // prompt length [sequences] each
  at::Tensor host;    // pinned
  at::Tensor device;  // what the graph reads
  PackedInput input;  // views of `device`
  at::Tensor output;  // [sequences, hidden] fp32, written by the graph
#ifdef QWEN3_WITH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
};

int64_t ForwardGraphs::TokenLimit(const EmbeddingModel& model, const Communicator& comm) {
  if (comm.world_size() == 1) return std::numeric_limits<int64_t>::max();
  // Each all-reduce carries [tokens, hidden] partial sums in the model's dtype.
  const int64_t row_bytes =
      model.config().hidden_size * static_cast<int64_t>(c10::elementSize(model.options().dtype));
  return row_bytes > 0 ? comm.capturable_bytes() / row_bytes : 0;
}

bool ForwardGraphs::Supported(const EmbeddingModel& model, const Communicator& comm) {
#ifdef QWEN3_WITH_CUDA
  return model.options().device.is_cuda() && model.uses_flash_attention() &&
         TokenLimit(model, comm) > 0;
#else
  (void)model;
  (void)comm;
  return false;
#endif
}

ForwardGraphs::ForwardGraphs(const EmbeddingModel& model, GraphOptions options)
    : model_(model), options_(options) {
  const at::Device device = model.options().device;
  for (int64_t tokens : GraphBuckets(options.max_tokens)) {
    auto bucket = std::make_unique<Bucket>();
    bucket->tokens = tokens;
    bucket->sequences = std::min(tokens, std::max<int64_t>(options.max_sequences, 1)) + 1;
    const int64_t slots = bucket->sequences;
    const int64_t size = 2 * tokens + 4 * slots + 1;
    bucket->host = at::zeros({size}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
    bucket->device = at::zeros({size}, at::TensorOptions().dtype(at::kInt).device(device));
    PackedInput& in = bucket->input;
    in.token_ids = bucket->device.narrow(0, 0, tokens);
    in.positions = bucket->device.narrow(0, tokens, tokens);
    in.cu_seqlens = bucket->device.narrow(0, 2 * tokens, bucket->sequences + 1);
    in.last_token = bucket->device.narrow(0, 2 * tokens + slots + 1, slots);
    in.first_token = bucket->device.narrow(0, 2 * tokens + 2 * slots + 1, slots);
    in.prompt_lengths = bucket->device.narrow(0, 2 * tokens + 3 * slots + 1, slots);
    in.max_seqlen = tokens;
    buckets_.push_back(std::move(bucket));
  }
}

ForwardGraphs::~ForwardGraphs() = default;

int64_t ForwardGraphs::max_tokens() const noexcept {
  return buckets_.empty() ? 0 : buckets_.back()->tokens;
}

ForwardGraphs::Bucket* ForwardGraphs::Find(int64_t tokens, int64_t sequences) const noexcept {
  for (const auto& bucket : buckets_) {
    const int64_t slots = sequences + (tokens < bucket->tokens ? 1 : 0);
    if (tokens <= bucket->tokens && slots <= bucket->sequences) return bucket.get();
  }
  return nullptr;
}

bool ForwardGraphs::Fits(const PackedBatch& batch) const noexcept {
  const auto tokens = static_cast<int64_t>(batch.token_ids.size());
  const auto sequences = static_cast<int64_t>(batch.num_sequences());
  return tokens > 0 && sequences > 0 && Find(tokens, sequences) != nullptr;
}

void ForwardGraphs::Stage(Bucket& b, const PackedBatch& batch) {
  const int64_t total = b.tokens;
  const int64_t slots = b.sequences;
  const auto tokens = static_cast<int64_t>(batch.token_ids.size());
  const auto n = static_cast<int64_t>(batch.num_sequences());
  int32_t* ids = b.host.data_ptr<int32_t>();
  int32_t* positions = ids + total;
  int32_t* cu = positions + total;
  int32_t* last = cu + slots + 1;
  int32_t* first = last + slots;
  int32_t* prompt = first + slots;

  WritePackedIndices(batch, ids, positions, cu, last, first, prompt);  // cu[n] == tokens
  std::fill(ids + tokens, ids + total, 0);
  int64_t used = n;
  if (tokens < total) {
    // The padding tokens form one more sequence, attended like any other and never pooled.
    for (int64_t t = tokens; t < total; ++t) positions[t] = static_cast<int32_t>(t - tokens);
    last[used] = static_cast<int32_t>(total - 1);
    first[used] = static_cast<int32_t>(tokens);
    prompt[used] = 0;
    ++used;
    cu[used] = static_cast<int32_t>(total);
  }
  // Unused slots are empty sequences at the end; their pooled rows are never read (mean pooling
  // gives them no token).
  for (int64_t s = used + 1; s <= slots; ++s) cu[s] = static_cast<int32_t>(total);
  for (int64_t s = used; s < slots; ++s) last[s] = first[s] = prompt[s] = 0;
  b.device.copy_(b.host, /*non_blocking=*/true);
}

void ForwardGraphs::Capture(Communicator& comm) {
#ifdef QWEN3_WITH_CUDA
  captured_ = false;
  const auto device = model_.options().device;
  const int64_t vocab = model_.config().vocab_size;
  auto stream = c10::cuda::getCurrentCUDAStream(device.index());
  using MempoolId = decltype(std::declval<at::cuda::CUDAGraph&>().pool());
  MempoolId pool{0, 0};  // the first capture makes a private pool; the others share it
  try {
    for (auto it = buckets_.rbegin(); it != buckets_.rend(); ++it) {
      Bucket& b = **it;
      PackedBatch batch;
      for (int64_t t = 0; t < b.tokens; ++t) {
        batch.token_ids.push_back(static_cast<int32_t>((t * 7 + 1) % vocab));
      }
      batch.cu_seqlens = {0, static_cast<int32_t>(b.tokens)};
      batch.dimensions = {static_cast<int32_t>(model_.config().hidden_size)};
      Stage(b, batch);
      // One eager run first, so lazy initialisation (cuBLAS handles and workspaces) happens
      // outside the capture.
      (void)model_.Forward(b.input, comm);
      stream.synchronize();
      b.graph = std::make_unique<at::cuda::CUDAGraph>();
      // Thread-local capture: other engine threads (replicas) may capture at the same time.
      b.graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
      try {
        b.output = model_.Forward(b.input, comm);
      } catch (...) {
        try {
          b.graph->capture_end();
        } catch (...) {
        }
        throw;
      }
      b.graph->capture_end();
      pool = b.graph->pool();
    }
    stream.synchronize();
  } catch (...) {
    for (auto& bucket : buckets_) {
      bucket->output = at::Tensor();
      bucket->graph.reset();
    }
    throw;
  }
  captured_ = true;
#else
  (void)comm;
  throw Error(ErrorCode::kInternal, "CUDA graphs requested in a build without CUDA");
#endif
}

at::Tensor ForwardGraphs::Run(const PackedBatch& batch) {
  const auto tokens = static_cast<int64_t>(batch.token_ids.size());
  const auto n = static_cast<int64_t>(batch.num_sequences());
  Bucket* bucket = captured_ ? Find(tokens, n) : nullptr;
#ifdef QWEN3_WITH_CUDA
  if (bucket != nullptr && bucket->graph) {
    Stage(*bucket, batch);
    bucket->graph->replay();
    return bucket->output.narrow(0, 0, n);
  }
#endif
  (void)bucket;
  throw Error(ErrorCode::kInternal, "no captured CUDA graph takes a batch of " +
                                        std::to_string(tokens) + " tokens in " + std::to_string(n) +
                                        " sequences");
}

}  // namespace qwen3
