#include "model/pooling.h"

#include <algorithm>
#include <cmath>

namespace qwen3 {

std::vector<float> TruncateAndNormalize(const float* rows, int64_t n, int64_t hidden,
                                        const std::vector<int32_t>& dims, bool normalize) {
  size_t total = 0;
  for (int64_t i = 0; i < n; ++i) total += static_cast<size_t>(dims[static_cast<size_t>(i)]);
  std::vector<float> out(total);
  float* dst = out.data();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t d = std::min<int64_t>(dims[static_cast<size_t>(i)], hidden);
    const float* row = rows + i * hidden;
    if (normalize) {
      double sum_sq = 0;
      for (int64_t j = 0; j < d; ++j) sum_sq += static_cast<double>(row[j]) * row[j];
      const float inv = static_cast<float>(1.0 / std::max(std::sqrt(sum_sq), 1e-12));
      for (int64_t j = 0; j < d; ++j) dst[j] = row[j] * inv;
    } else {
      std::copy(row, row + d, dst);
    }
    dst += dims[static_cast<size_t>(i)];
  }
  return out;
}

}  // namespace qwen3
