// A validated PackedBatch staged on a device: what the forward pass reads.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "model/packed_batch.h"

namespace qwen3 {

// Writes a validated batch's int32 indices: token ids [T], positions [T] (restarting at 0 for every
// sequence), cu_seqlens [n + 1], each sequence's last and first token [n] and its prompt length
// [n] (zeros when the batch has none). Returns the longest sequence.
int64_t WritePackedIndices(const PackedBatch& batch, int32_t* ids, int32_t* positions, int32_t* cu,
                           int32_t* last, int32_t* first, int32_t* prompt);

struct PackedInput {
  at::Tensor token_ids;       // int64 [T]
  at::Tensor positions;       // int32 [T]: restart at 0 for every sequence
  at::Tensor cu_seqlens;      // int32 [n + 1]
  at::Tensor last_token;      // int64 [n]: index of each sequence's last token
  at::Tensor first_token;     // int64 [n]: index of each sequence's first token
  at::Tensor prompt_lengths;  // int32 [n]: leading tokens mean pooling skips
  std::vector<int32_t> cu_seqlens_host;
  int64_t max_seqlen = 0;

  int64_t num_tokens() const { return token_ids.size(0); }
  int64_t num_sequences() const { return static_cast<int64_t>(cu_seqlens_host.size()) - 1; }

  // Builds every index on the host and copies them in one transfer (from pinned memory on CUDA,
  // asynchronously on the current stream). The batch must have been validated.
  static PackedInput Make(const PackedBatch& batch, at::Device device);
};

}  // namespace qwen3
