// Engine errors: a code the JS side maps to EngineErrorCode (libs/engine/src/engine.port.ts) plus a
// message meant for operators. Nothing in native/ throws a bare std::runtime_error on purpose:
// every failure a caller can see carries one of these codes.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace qwen3 {

enum class ErrorCode {
  kInvalidArgument,  // a bad value from the caller (RangeError in JS)
  kModelLoadFailed,  // the checkpoint directory is missing, malformed or unsupported
  kOutOfMemory,      // device or host memory ran out; the engine keeps serving
  kDeviceFailed,     // a device or communicator failed; the replica may be out of service
  kEngineDisposed,
  kEngineNotLoaded,
  kInternal,
};

// The name shared with TypeScript, e.g. "OUT_OF_MEMORY".
const char* ErrorCodeName(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Thrown by a collective whose group was aborted because another rank failed. It is never the root
// cause of a failed batch: the engine reports the failing rank's error instead.
class CommAbortedError : public Error {
 public:
  explicit CommAbortedError(const std::string& message)
      : Error(ErrorCode::kDeviceFailed, message) {}
};

// Whether `error` holds a CommAbortedError: a rank that stopped because another rank failed.
bool IsCommAborted(const std::exception_ptr& error);

// The root cause among the errors of one step's ranks: the first that is not a CommAbortedError,
// else the first; null when there is none.
std::exception_ptr RootCause(const std::vector<std::exception_ptr>& errors);

[[noreturn]] inline void ThrowInvalidArgument(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

[[noreturn]] inline void ThrowModelLoadFailed(const std::string& message) {
  throw Error(ErrorCode::kModelLoadFailed, message);
}

}  // namespace qwen3
