#include "parallel/communicator.h"

#include <ATen/ATen.h>

namespace qwen3 {

at::Tensor Communicator::AllReduceSumAsFloat(const at::Tensor& partial) {
  at::Tensor sum = partial.to(at::kFloat);  // the same tensor when it is fp32 already
  if (!sum.is_contiguous()) sum = sum.contiguous();
  AllReduceSum(sum);
  return sum;
}

at::Tensor Communicator::AllReduceAddRmsNorm(const at::Tensor& /*partial*/,
                                             at::Tensor& /*residual*/, const at::Tensor& /*weight*/,
                                             double /*eps*/, at::ScalarType /*out*/) {
  return {};
}

}  // namespace qwen3
