// Matryoshka output: each sequence's pooled hidden state truncated to its requested size, then
// L2-normalised (unless the checkpoint has no Normalize module). Truncation comes first, so a
// 256-dim row is a unit vector on its own.
#pragma once

#include <cstdint>
#include <vector>

namespace qwen3 {

// rows: [n, hidden] fp32, row-major. Returns the rows back to back, row i with dims[i] floats.
// A zero row stays zero (the norm is clamped at 1e-12, as torch.nn.functional.normalize does).
// normalize = false: truncation only.
std::vector<float> TruncateAndNormalize(const float* rows, int64_t n, int64_t hidden,
                                        const std::vector<int32_t>& dims, bool normalize = true);

}  // namespace qwen3
