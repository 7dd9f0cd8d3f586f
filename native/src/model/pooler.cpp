#include "model/pooler.h"

#include <ATen/ATen.h>

namespace qwen3 {

at::Tensor PoolHidden(const at::Tensor& hidden, const PackedInput& in, Pooling pooling) {
  const int64_t n = in.last_token.size(0);
  const int64_t tokens = in.positions.size(0);
  if (pooling != Pooling::kMean) {
    if (hidden.size(0) == n && n != tokens) return hidden.to(at::kFloat);
    return hidden.index_select(0, pooling == Pooling::kCls ? in.first_token : in.last_token)
        .to(at::kFloat);
  }
  // Each token's sequence: positions restart at 0 at every sequence's first token.
  const at::Tensor sequence = at::cumsum(in.positions.eq(0), 0, at::kLong) - 1;
  // 1 for the tokens past the prompt, else 0 (sentence-transformers zeroes the prompt's mask).
  const at::Tensor weight =
      in.positions.ge(in.prompt_lengths.index_select(0, sequence)).to(at::kFloat);
  const at::Tensor sums = at::zeros({n, hidden.size(1)}, hidden.options().dtype(at::kFloat))
                              .index_add_(0, sequence, hidden.to(at::kFloat) * weight.unsqueeze(1));
  const at::Tensor counts =
      at::zeros({n}, weight.options()).index_add_(0, sequence, weight).clamp_min(1e-9);
  return sums / counts.unsqueeze(1);
}

}  // namespace qwen3
