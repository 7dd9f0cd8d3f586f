#include "model/packed_batch.h"

#include <limits>
#include <string>

#include "common/error.h"

namespace qwen3 {

size_t PackedBatch::output_size() const {
  size_t total = 0;
  for (int32_t d : dimensions) total += static_cast<size_t>(d);
  return total;
}

void ValidateBatch(const PackedBatch& batch, const BatchLimits& limits) {
  const auto& cu = batch.cu_seqlens;
  const size_t tokens = batch.token_ids.size();
  if (tokens == 0) ThrowInvalidArgument("tokenIds is empty: a batch needs at least one token");
  if (tokens > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    ThrowInvalidArgument("tokenIds has more than 2^31-1 tokens");
  }
  if (cu.size() < 2) {
    ThrowInvalidArgument("cuSeqlens must have n+1 >= 2 entries, got " + std::to_string(cu.size()));
  }
  if (cu.front() != 0) {
    ThrowInvalidArgument("cuSeqlens must start at 0, got " + std::to_string(cu.front()));
  }
  for (size_t i = 1; i < cu.size(); ++i) {
    if (cu[i] <= cu[i - 1]) {
      ThrowInvalidArgument("cuSeqlens must be strictly increasing: sequence " +
                           std::to_string(i - 1) + " is empty or negative (cuSeqlens[" +
                           std::to_string(i - 1) + "] = " + std::to_string(cu[i - 1]) +
                           ", cuSeqlens[" + std::to_string(i) + "] = " + std::to_string(cu[i]) +
                           ")");
    }
    const int64_t length = static_cast<int64_t>(cu[i]) - cu[i - 1];
    if (length > limits.max_position_embeddings) {
      ThrowInvalidArgument("sequence " + std::to_string(i - 1) + " has " + std::to_string(length) +
                           " tokens; the model takes at most " +
                           std::to_string(limits.max_position_embeddings) +
                           " (max_position_embeddings)");
    }
  }
  if (static_cast<size_t>(cu.back()) != tokens) {
    ThrowInvalidArgument("cuSeqlens must end at tokenIds.length (" + std::to_string(tokens) +
                         "), got " + std::to_string(cu.back()));
  }
  const size_t n = cu.size() - 1;
  if (batch.dimensions.size() != n) {
    ThrowInvalidArgument("dimensions has " + std::to_string(batch.dimensions.size()) +
                         " entries for " + std::to_string(n) + " sequences");
  }
  for (size_t i = 0; i < n; ++i) {
    const int32_t d = batch.dimensions[i];
    if (d < limits.min_dimensions || d > limits.hidden_size) {
      ThrowInvalidArgument("dimensions[" + std::to_string(i) + "] = " + std::to_string(d) +
                           " is outside " + std::to_string(limits.min_dimensions) + ".." +
                           std::to_string(limits.hidden_size));
    }
  }
  if (!batch.prompt_lengths.empty()) {
    if (batch.prompt_lengths.size() != n) {
      ThrowInvalidArgument("promptLengths has " + std::to_string(batch.prompt_lengths.size()) +
                           " entries for " + std::to_string(n) + " sequences");
    }
    for (size_t i = 0; i < n; ++i) {
      const int32_t p = batch.prompt_lengths[i];
      const int32_t length = cu[i + 1] - cu[i];
      if (p < 0 || p >= length) {
        ThrowInvalidArgument("promptLengths[" + std::to_string(i) + "] = " + std::to_string(p) +
                             " is outside 0.." + std::to_string(length - 1) + " (sequence " +
                             std::to_string(i) + " has " + std::to_string(length) + " tokens)");
      }
    }
  }
  for (size_t i = 0; i < tokens; ++i) {
    const int32_t id = batch.token_ids[i];
    if (id < 0 || id >= limits.vocab_size) {
      ThrowInvalidArgument("tokenIds[" + std::to_string(i) + "] = " + std::to_string(id) +
                           " is outside 0.." + std::to_string(limits.vocab_size - 1) +
                           " (the embedding table has " + std::to_string(limits.vocab_size) +
                           " rows)");
    }
  }
}

}  // namespace qwen3
