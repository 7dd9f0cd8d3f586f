#include "common/json_floats.h"

#include <charconv>
#include <cmath>

namespace qwen3 {

void AppendJsonFloatArray(const float* values, size_t count, std::string* out) {
  // The shortest round-trip text of a float32 has at most 15 characters ("-1.17549435e-38").
  out->reserve(out->size() + 2 + count * 16);
  out->push_back('[');
  char buffer[32];
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) out->push_back(',');
    if (!std::isfinite(values[i])) {
      out->append("null");
      continue;
    }
    const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), values[i]);
    out->append(buffer, result.ptr);
  }
  out->push_back(']');
}

}  // namespace qwen3
