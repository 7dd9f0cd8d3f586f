#include "runtime/error_classification.h"

#include <c10/util/Exception.h>

#include <new>
#include <string>

namespace qwen3 {

namespace {

bool Contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}

}  // namespace

Error ClassifyError(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    return e;
  } catch (const c10::OutOfMemoryError& e) {
    return Error(ErrorCode::kOutOfMemory,
                 std::string("out of memory: ") + e.what_without_backtrace());
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    if (Contains(message, "out of memory") || Contains(message, "CUBLAS_STATUS_ALLOC_FAILED") ||
        Contains(message, "not enough memory")) {
      return Error(ErrorCode::kOutOfMemory, "out of memory: " + message);
    }
    if (Contains(message, "CUDA error") || Contains(message, "CUDA driver error") ||
        Contains(message, "CUBLAS_STATUS") || Contains(message, "cuDNN error")) {
      return Error(ErrorCode::kDeviceFailed, message);
    }
    return Error(ErrorCode::kInternal, message);
  } catch (const std::bad_alloc&) {
    return Error(ErrorCode::kOutOfMemory, "out of host memory");
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInternal, e.what());
  } catch (...) {
    return Error(ErrorCode::kInternal, "unknown error");
  }
}

}  // namespace qwen3
