// The kernels' ElementType for an ATen dtype, for the libtorch side of the kernel calls
// (model/fused_ops.cpp, the NCCL communicator). The .cu files do not include it: they build without
// libtorch.
#pragma once

#include <c10/core/ScalarType.h>

#include <string>

#include "common/error.h"
#include "kernels/fused_kernels.h"

namespace qwen3::kernels {

// Throws Error(kInternal) for a dtype no kernel takes.
inline ElementType ElementTypeOf(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return ElementType::kFloat32;
    case at::kHalf:
      return ElementType::kFloat16;
    case at::kBFloat16:
      return ElementType::kBFloat16;
    default:
      throw Error(ErrorCode::kInternal,
                  std::string("a CUDA kernel on an unsupported dtype ") + c10::toString(type));
  }
}

}  // namespace qwen3::kernels
