#include "model/packed_input.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

namespace qwen3 {

int64_t WritePackedIndices(const PackedBatch& batch, int32_t* ids, int32_t* positions, int32_t* cu,
                           int32_t* last, int32_t* first, int32_t* prompt) {
  const size_t n = batch.num_sequences();
  std::memcpy(ids, batch.token_ids.data(), batch.token_ids.size() * sizeof(int32_t));
  std::memcpy(cu, batch.cu_seqlens.data(), (n + 1) * sizeof(int32_t));
  int64_t longest = 0;
  for (size_t s = 0; s < n; ++s) {
    const int32_t begin = cu[s];
    const int32_t end = cu[s + 1];
    for (int32_t t = begin; t < end; ++t) positions[t] = t - begin;
    last[s] = end - 1;
    first[s] = begin;
    prompt[s] = batch.prompt_lengths.empty() ? 0 : batch.prompt_lengths[s];
    longest = std::max<int64_t>(longest, end - begin);
  }
  return longest;
}

PackedInput PackedInput::Make(const PackedBatch& batch, at::Device device) {
  const auto tokens = static_cast<int64_t>(batch.token_ids.size());
  const auto n = static_cast<int64_t>(batch.num_sequences());
  const bool staged = !device.is_cpu();

  // ids [T] | positions [T] | cu_seqlens [n + 1] | last token [n] | first token [n] | prompt [n]
  at::Tensor host = at::empty({2 * tokens + 4 * n + 1},
                              at::TensorOptions().dtype(at::kInt).pinned_memory(staged));
  int32_t* ids = host.data_ptr<int32_t>();
  int32_t* positions = ids + tokens;
  int32_t* cu = positions + tokens;
  int32_t* last = cu + n + 1;
  int32_t* first = last + n;
  int32_t* prompt = first + n;
  PackedInput in;
  in.max_seqlen = WritePackedIndices(batch, ids, positions, cu, last, first, prompt);
  in.cu_seqlens_host.assign(cu, cu + n + 1);

  at::Tensor dev = staged ? host.to(device, at::kInt, /*non_blocking=*/true) : host;
  in.token_ids = dev.narrow(0, 0, tokens).to(at::kLong);
  in.positions = dev.narrow(0, tokens, tokens);
  in.cu_seqlens = dev.narrow(0, 2 * tokens, n + 1);
  in.last_token = dev.narrow(0, 2 * tokens + n + 1, n).to(at::kLong);
  in.first_token = dev.narrow(0, 2 * tokens + 2 * n + 1, n).to(at::kLong);
  in.prompt_lengths = dev.narrow(0, 2 * tokens + 3 * n + 1, n);
  return in;
}

}  // namespace qwen3
