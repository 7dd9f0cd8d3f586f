// A packed forward batch as it crosses from JS: every sequence's token ids back to back, no
// padding.
#pragma once

#include <cstdint>
#include <vector>

namespace qwen3 {

struct PackedBatch {
  std::vector<int32_t> token_ids;   // [T]
  std::vector<int32_t> cu_seqlens;  // [n + 1]: 0, end of sequence 0, ..., T
  std::vector<int32_t> dimensions;  // [n]: Matryoshka size of each output row
  // [n] or empty (= zeros): tokens at the start of each sequence that mean pooling skips
  // (sentence-transformers' include_prompt = false); 0 <= p < the sequence's length.
  std::vector<int32_t> prompt_lengths = {};

  size_t num_sequences() const { return cu_seqlens.empty() ? 0 : cu_seqlens.size() - 1; }
  // Floats in the result: the sum of dimensions.
  size_t output_size() const;
};

struct BatchLimits {
  int64_t vocab_size = 0;               // token ids must be < vocab_size
  int64_t hidden_size = 0;              // dimensions must be <= hidden_size
  int64_t max_position_embeddings = 0;  // no sequence may be longer
  int64_t min_dimensions = 32;
};

// Throws qwen3::Error(kInvalidArgument) with a message naming the offending field and index.
void ValidateBatch(const PackedBatch& batch, const BatchLimits& limits);

}  // namespace qwen3
