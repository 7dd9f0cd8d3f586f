#include "model/packed_input.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>

namespace qwen3 {

PackedInput PackedInput::Make(const PackedBatch& batch, at::Device device) {
  const auto tokens = static_cast<int64_t>(batch.token_ids.size());
  const auto n = static_cast<int64_t>(batch.num_sequences());
  const bool staged = !device.is_cpu();

  // ids [T] | positions [T] | cu_seqlens [n + 1] | last token [n]
  at::Tensor host = at::empty({2 * tokens + 2 * n + 1},
                              at::TensorOptions().dtype(at::kInt).pinned_memory(staged));
  int32_t* ids = host.data_ptr<int32_t>();
  int32_t* positions = ids + tokens;
  int32_t* cu = positions + tokens;
  int32_t* last = cu + n + 1;
  std::memcpy(ids, batch.token_ids.data(), static_cast<size_t>(tokens) * sizeof(int32_t));
  std::memcpy(cu, batch.cu_seqlens.data(), static_cast<size_t>(n + 1) * sizeof(int32_t));

  PackedInput in;
  for (int64_t s = 0; s < n; ++s) {
    const int32_t begin = cu[s];
    const int32_t end = cu[s + 1];
    for (int32_t t = begin; t < end; ++t) positions[t] = t - begin;
    last[s] = end - 1;
    in.max_seqlen = std::max<int64_t>(in.max_seqlen, end - begin);
  }
  in.cu_seqlens_host.assign(cu, cu + n + 1);

  at::Tensor dev = staged ? host.to(device, at::kInt, /*non_blocking=*/true) : host;
  in.token_ids = dev.narrow(0, 0, tokens).to(at::kLong);
  in.positions = dev.narrow(0, tokens, tokens);
  in.cu_seqlens = dev.narrow(0, 2 * tokens, n + 1);
  in.last_token = dev.narrow(0, 2 * tokens + n + 1, n).to(at::kLong);
  return in;
}

}  // namespace qwen3
