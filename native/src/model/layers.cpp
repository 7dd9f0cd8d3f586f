#include "model/layers.h"

#include <ATen/ATen.h>

#include <cmath>

#include "model/fused_ops.h"

namespace qwen3 {

at::Tensor RmsNormTo(const at::Tensor& x, const at::Tensor& weight, double eps,
                     at::ScalarType out) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return (xf * at::rsqrt(variance + eps) * weight.to(at::kFloat)).to(out);
}

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta, at::Device device,
                                 const RopeScaling& scaling) {
  // transformers: 1 / (theta ** (arange(0, dim, 2).float() / dim)), all in fp32.
  at::Tensor exponent =
      at::arange(0, head_dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) /
      static_cast<double>(head_dim);
  at::Tensor inv_freq = at::pow(theta, exponent).reciprocal();
  // The scaled variants, op for op as transformers' rope init functions compute them in fp32
  // (Python's `scalar / tensor` is tensor.reciprocal() * scalar).
  if (scaling.type == RopeType::kLinear) {
    inv_freq = inv_freq / scaling.factor;
  } else if (scaling.type == RopeType::kLlama3) {
    const auto old_context = static_cast<double>(scaling.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / scaling.low_freq_factor;
    const double high_freq_wavelen = old_context / scaling.high_freq_factor;
    at::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
    at::Tensor llama = at::where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq);
    at::Tensor smooth = (wavelen.reciprocal() * old_context - scaling.low_freq_factor) /
                        (scaling.high_freq_factor - scaling.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * llama / scaling.factor + smooth * llama;
    at::Tensor medium =
        (wavelen < high_freq_wavelen).logical_not() * (wavelen > low_freq_wavelen).logical_not();
    inv_freq = at::where(medium, smoothed, llama);
  }
  inv_freq_ = inv_freq.to(device);
}

std::pair<at::Tensor, at::Tensor> RotaryCosSin(const at::Tensor& positions,
                                               const at::Tensor& inv_freq) {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);  // [T, D/2]
  freqs = freqs.unsqueeze(1);                                                        // [T, 1, D/2]
  return {freqs.cos(), freqs.sin()};
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::CosSin(const at::Tensor& positions) const {
  return RotaryCosSin(positions, inv_freq_);
}

at::Tensor ApplyRotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor x1 = xf.narrow(-1, 0, half);
  at::Tensor x2 = xf.narrow(-1, half, half);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1).to(x.scalar_type());
}

at::Tensor ColumnParallelLinear::Forward(const at::Tensor& x) const {
  return bias_.defined() ? at::linear(x, weight_, bias_) : at::linear(x, weight_);
}

at::Tensor RowParallelLinear::Forward(const at::Tensor& x) const { return at::linear(x, weight_); }

at::Tensor ReduceAddRmsNorm(Communicator& comm, at::Tensor& residual, const at::Tensor& partial,
                            const at::Tensor& weight, double eps, at::ScalarType out) {
  if (!partial.defined() || comm.world_size() == 1) {
    return AddRmsNorm(residual, partial, weight, eps, out);
  }
  const at::Tensor p = partial.is_contiguous() ? partial : partial.contiguous();
  at::Tensor fused = comm.AllReduceAddRmsNorm(p, residual, weight, eps, out);
  if (fused.defined()) return fused;
  // Each rank holds a partial sum. Summing the partials in fp32 rounds once less than a bf16
  // all-reduce, and the sum is added to the fp32 residual stream anyway.
  return AddRmsNorm(residual, comm.AllReduceSumAsFloat(p), weight, eps, out);
}

}  // namespace qwen3
