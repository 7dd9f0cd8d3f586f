// Maps whatever a forward or a load threw (engine errors, libtorch's, CUDA's reported through
// libtorch, std::bad_alloc) to an engine Error whose code the caller can act on: kOutOfMemory keeps
// the replica in service, kDeviceFailed takes it out, kInternal is anything else.
#pragma once

#include <exception>

#include "common/error.h"

namespace qwen3 {

Error ClassifyError(const std::exception_ptr& error);

}  // namespace qwen3
