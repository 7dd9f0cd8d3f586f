#pragma once

#include <functional>
#include <string>

namespace qwen3 {

// Receives human-readable progress lines while a model loads. May be called from several engine
// threads at once: implementations must be thread-safe and must not block for long.
using ProgressCallback = std::function<void(const std::string&)>;

}  // namespace qwen3
