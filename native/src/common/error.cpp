#include "common/error.h"

namespace qwen3 {

const char* ErrorCodeName(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case ErrorCode::kModelLoadFailed:
      return "MODEL_LOAD_FAILED";
    case ErrorCode::kOutOfMemory:
      return "OUT_OF_MEMORY";
    case ErrorCode::kDeviceFailed:
      return "DEVICE_FAILED";
    case ErrorCode::kEngineDisposed:
      return "ENGINE_DISPOSED";
    case ErrorCode::kEngineNotLoaded:
      return "ENGINE_NOT_LOADED";
    case ErrorCode::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
}

bool IsCommAborted(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const CommAbortedError&) {
    return true;
  } catch (...) {
    return false;
  }
}

std::exception_ptr RootCause(const std::vector<std::exception_ptr>& errors) {
  for (const auto& error : errors) {
    if (error && !IsCommAborted(error)) return error;
  }
  for (const auto& error : errors) {
    if (error) return error;
  }
  return nullptr;
}

}  // namespace qwen3
