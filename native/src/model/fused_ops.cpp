#include "model/fused_ops.h"

#include <ATen/ATen.h>

#include <string>

#ifdef QWEN3_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "kernels/aten_types.h"
#endif

#include "common/error.h"
#include "model/layers.h"

namespace qwen3 {

namespace {

// The tables the caller built once per forward, else built here.
std::pair<at::Tensor, at::Tensor> CosSin(const RotaryInputs& rotary) {
  if (rotary.cos.defined() && rotary.sin.defined()) return {rotary.cos, rotary.sin};
  return RotaryCosSin(rotary.positions, rotary.inv_freq);
}

#ifdef QWEN3_WITH_CUDA
bool Supported(at::ScalarType type) {
  return type == at::kFloat || type == at::kHalf || type == at::kBFloat16;
}

void Check(cudaError_t result, const char* what) {
  if (result != cudaSuccess) {
    throw Error(ErrorCode::kDeviceFailed,
                std::string("CUDA error in ") + what + ": " + cudaGetErrorString(result));
  }
}

cudaStream_t StreamOf(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
#endif

}  // namespace

bool FusedKernelsAvailable(const at::Device& device) {
#ifdef QWEN3_WITH_CUDA
  return device.is_cuda();
#else
  (void)device;
  return false;
#endif
}

at::Tensor AddRmsNorm(at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                      double eps, at::ScalarType out) {
#ifdef QWEN3_WITH_CUDA
  if (residual.is_cuda() && residual.scalar_type() == at::kFloat && residual.dim() == 2 &&
      residual.is_contiguous() && Supported(out) && weight.scalar_type() == at::kFloat &&
      weight.is_contiguous() && weight.numel() == residual.size(1) &&
      (!delta.defined() || (delta.sizes() == residual.sizes() && delta.is_contiguous() &&
                            Supported(delta.scalar_type())))) {
    at::Tensor result = at::empty(residual.sizes(), residual.options().dtype(out));
    Check(kernels::AddRmsNorm(
              residual.data_ptr<float>(), delta.defined() ? delta.data_ptr() : nullptr,
              kernels::ElementTypeOf(delta.defined() ? delta.scalar_type() : at::kFloat),
              weight.data_ptr<float>(), static_cast<float>(eps), result.data_ptr(),
              kernels::ElementTypeOf(out), residual.size(0), residual.size(1), StreamOf(residual)),
          "AddRmsNorm");
    return result;
  }
#endif
  return composite::AddRmsNorm(residual, delta, weight, eps, out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> QkNormRope(const at::Tensor& qkv, int64_t q_heads,
                                                          int64_t kv_heads, int64_t head_dim,
                                                          const at::Tensor& q_norm,
                                                          const at::Tensor& k_norm,
                                                          const RotaryInputs& rotary, double eps) {
#ifdef QWEN3_WITH_CUDA
  if (qkv.is_cuda() && qkv.dim() == 2 && qkv.is_contiguous() && Supported(qkv.scalar_type()) &&
      qkv.size(1) == (q_heads + 2 * kv_heads) * head_dim && head_dim % 2 == 0 && head_dim <= 1024 &&
      q_norm.defined() == k_norm.defined() &&
      (!q_norm.defined() ||
       (q_norm.scalar_type() == at::kFloat && k_norm.scalar_type() == at::kFloat)) &&
      rotary.positions.scalar_type() == at::kInt && rotary.positions.is_contiguous() &&
      rotary.inv_freq.scalar_type() == at::kFloat) {
    const int64_t tokens = qkv.size(0);
    at::Tensor q = at::empty({tokens, q_heads, head_dim}, qkv.options());
    at::Tensor k = at::empty({tokens, kv_heads, head_dim}, qkv.options());
    at::Tensor v = at::empty({tokens, kv_heads, head_dim}, qkv.options());
    Check(
        kernels::QkNormRope(qkv.data_ptr(), kernels::ElementTypeOf(qkv.scalar_type()),
                            q_norm.defined() ? q_norm.data_ptr<float>() : nullptr,
                            k_norm.defined() ? k_norm.data_ptr<float>() : nullptr,
                            rotary.positions.data_ptr<int32_t>(), rotary.inv_freq.data_ptr<float>(),
                            static_cast<float>(eps), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                            tokens, static_cast<int>(q_heads), static_cast<int>(kv_heads),
                            static_cast<int>(head_dim), StreamOf(qkv)),
        "QkNormRope");
    return {q, k, v};
  }
#endif
  return composite::QkNormRope(qkv, q_heads, kv_heads, head_dim, q_norm, k_norm, rotary, eps);
}

at::Tensor SiluMul(const at::Tensor& gate_up) {
#ifdef QWEN3_WITH_CUDA
  if (gate_up.is_cuda() && gate_up.dim() == 2 && gate_up.is_contiguous() &&
      Supported(gate_up.scalar_type()) && gate_up.size(1) % 2 == 0) {
    const int64_t width = gate_up.size(1) / 2;
    at::Tensor out = at::empty({gate_up.size(0), width}, gate_up.options());
    Check(kernels::SiluMul(gate_up.data_ptr(), kernels::ElementTypeOf(gate_up.scalar_type()),
                           out.data_ptr(), gate_up.size(0), width, StreamOf(gate_up)),
          "SiluMul");
    return out;
  }
#endif
  return composite::SiluMul(gate_up);
}

at::Tensor ShortCausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const PackedInput& in, double scale) {
#ifdef QWEN3_WITH_CUDA
  const int64_t head_dim = q.dim() == 3 ? q.size(2) : 0;
  if (q.is_cuda() && (q.scalar_type() == at::kHalf || q.scalar_type() == at::kBFloat16) &&
      in.max_seqlen <= kernels::kShortAttentionMaxLen &&
      (head_dim == 64 || head_dim == 128 || head_dim == 256) && k.dim() == 3 && v.dim() == 3 &&
      k.sizes() == v.sizes() && k.size(2) == head_dim && k.size(0) == q.size(0) &&
      k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type() &&
      q.size(1) % k.size(1) == 0 && q.is_contiguous() && k.is_contiguous() && v.is_contiguous() &&
      reinterpret_cast<uintptr_t>(k.data_ptr()) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(v.data_ptr()) % 16 == 0 &&
      in.cu_seqlens.scalar_type() == at::kInt && in.cu_seqlens.device() == q.device()) {
    at::Tensor out = at::empty_like(q);
    Check(kernels::ShortCausalAttention(
              q.data_ptr(), k.data_ptr(), v.data_ptr(), kernels::ElementTypeOf(q.scalar_type()),
              in.cu_seqlens.data_ptr<int32_t>(), in.cu_seqlens.size(0) - 1,
              static_cast<int>(q.size(1)), static_cast<int>(k.size(1)), static_cast<int>(head_dim),
              static_cast<float>(scale), out.data_ptr(), StreamOf(q)),
          "ShortCausalAttention");
    return out;
  }
#else
  (void)q;
  (void)k;
  (void)v;
  (void)in;
  (void)scale;
#endif
  return {};
}

namespace composite {

at::Tensor AddRmsNorm(at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                      double eps, at::ScalarType out) {
  if (delta.defined()) residual.add_(delta);
  return RmsNormTo(residual, weight, eps, out);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> QkNormRope(const at::Tensor& qkv, int64_t q_heads,
                                                          int64_t kv_heads, int64_t head_dim,
                                                          const at::Tensor& q_norm,
                                                          const at::Tensor& k_norm,
                                                          const RotaryInputs& rotary, double eps) {
  const int64_t tokens = qkv.size(0);
  const int64_t q_width = q_heads * head_dim;
  const int64_t kv_width = kv_heads * head_dim;
  at::Tensor q = qkv.narrow(1, 0, q_width).view({tokens, q_heads, head_dim});
  at::Tensor k = qkv.narrow(1, q_width, kv_width).view({tokens, kv_heads, head_dim});
  at::Tensor v = qkv.narrow(1, q_width + kv_width, kv_width).view({tokens, kv_heads, head_dim});
  auto [cos, sin] = CosSin(rotary);
  // Qwen3 normalises each head of q and k before the rotation; both in fp32, rounded once.
  if (q_norm.defined()) {
    q = ApplyRotary(RmsNormTo(q, q_norm, eps, at::kFloat), cos, sin).to(qkv.scalar_type());
    k = ApplyRotary(RmsNormTo(k, k_norm, eps, at::kFloat), cos, sin).to(qkv.scalar_type());
  } else {
    q = ApplyRotary(q.to(at::kFloat), cos, sin).to(qkv.scalar_type());
    k = ApplyRotary(k.to(at::kFloat), cos, sin).to(qkv.scalar_type());
  }
  return {q.contiguous(), k.contiguous(), v.contiguous()};
}

at::Tensor SiluMul(const at::Tensor& gate_up) {
  const int64_t width = gate_up.size(1) / 2;
  at::Tensor gate = gate_up.narrow(1, 0, width).to(at::kFloat);
  at::Tensor up = gate_up.narrow(1, width, width).to(at::kFloat);
  return (at::silu(gate) * up).to(gate_up.scalar_type());
}

}  // namespace composite

}  // namespace qwen3
