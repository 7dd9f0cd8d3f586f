#include "model/attention.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <tuple>

#ifdef QWEN3_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include "common/error.h"
#include "model/fused_ops.h"

namespace qwen3 {

namespace {

// Upper bound on the elements of one chunk of attention scores (64 MiB of fp32).
constexpr int64_t kMaxScoreElements = int64_t{1} << 24;
// Query rows per chunk of causal attention: smaller chunks skip more of the masked upper triangle.
constexpr int64_t kMaxChunkRows = 256;

}  // namespace

bool FlashAttentionSupported(at::Device device, at::ScalarType dtype, int64_t head_dim) {
#ifdef QWEN3_WITH_CUDA
  if (!device.is_cuda()) return false;
  if (dtype != at::kHalf && dtype != at::kBFloat16) return false;
  if (head_dim % 8 != 0 || head_dim > 256) return false;
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device.index());
  return prop != nullptr && prop->major >= 8;
#else
  (void)device;
  (void)dtype;
  (void)head_dim;
  return false;
#endif
}

at::Tensor PackedAttentionMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const PackedInput& in, double scale, bool causal) {
  const int64_t q_heads = q.size(1);
  const int64_t kv_heads = k.size(1);
  const int64_t head_dim = q.size(2);
  const int64_t group = q_heads / kv_heads;
  at::Tensor out = at::empty_like(q);
  const auto& cu = in.cu_seqlens_host;

  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    const int64_t begin = cu[s];
    const int64_t length = cu[s + 1] - cu[s];
    // Query head h = kv * group + g reads key/value head kv (transformers' repeat_kv order), so
    // [L, Hq, D] viewed as [L, Hkv, G, D] puts each KV head's queries together: [Hkv, G, L, D].
    at::Tensor qs = (q.narrow(0, begin, length).to(at::kFloat) * scale)
                        .view({length, kv_heads, group, head_dim})
                        .permute({1, 2, 0, 3});
    at::Tensor ks = k.narrow(0, begin, length).to(at::kFloat).permute({1, 0, 2});  // [Hkv, L, D]
    at::Tensor vs = v.narrow(0, begin, length).to(at::kFloat).permute({1, 0, 2});  // [Hkv, L, D]

    const int64_t chunk = std::clamp<int64_t>(kMaxScoreElements / (q_heads * length), 1,
                                              causal ? std::min(length, kMaxChunkRows) : length);
    for (int64_t q0 = 0; q0 < length; q0 += chunk) {
      const int64_t rows = std::min(chunk, length - q0);
      // Causal: later keys are never visible to these rows.
      const int64_t keys = causal ? q0 + rows : length;
      // One matrix product per KV head covers all of its query heads: [Hkv, G * rows, keys].
      at::Tensor qc = qs.narrow(2, q0, rows).reshape({kv_heads, group * rows, head_dim});
      at::Tensor scores = at::bmm(qc, ks.narrow(1, 0, keys).transpose(1, 2));
      if (causal) {
        at::Tensor key_pos = at::arange(keys, scores.options().dtype(at::kLong));
        at::Tensor query_pos = at::arange(q0, q0 + rows, scores.options().dtype(at::kLong));
        at::Tensor future = key_pos.unsqueeze(0) > query_pos.unsqueeze(1);  // [rows, keys]
        scores.view({kv_heads, group, rows, keys})
            .masked_fill_(future, -std::numeric_limits<float>::infinity());
      }
      at::Tensor probs = at::softmax(scores, -1);
      at::Tensor o = at::bmm(probs, vs.narrow(1, 0, keys));  // [Hkv, G * rows, D]
      out.narrow(0, begin + q0, rows)
          .copy_(o.view({kv_heads, group, rows, head_dim})
                     .permute({2, 0, 1, 3})
                     .reshape({rows, q_heads, head_dim}));
    }
  }
  return out;
}

at::Tensor PackedAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const PackedInput& in, double scale, bool use_flash, bool causal) {
  if (!use_flash) return PackedAttentionMath(q, k, v, in, scale, causal);
  // Short sequences (a query, a graph bucket of up to 32 tokens): flash attention's fixed cost per
  // launch is most of the work there. The kernel is causal only.
  if (causal) {
    if (at::Tensor out = ShortCausalAttention(q, k, v, in, scale); out.defined()) return out;
  }
#ifdef QWEN3_WITH_CUDA
  // Varlen flash attention: cu_seqlens (int32) delimit the sequences, no token attends across
  // them; GQA is handled by the kernel from the head counts. Returns (out, logsumexp, rng state,
  // ...).
  auto result = at::_flash_attention_forward(q, k, v.contiguous(), in.cu_seqlens, in.cu_seqlens,
                                             in.max_seqlen, in.max_seqlen, /*dropout_p=*/0.0,
                                             /*is_causal=*/causal, /*return_debug_mask=*/false,
                                             /*scale=*/scale);
  return std::get<0>(result);
#else
  throw Error(ErrorCode::kInternal, "flash attention requested in a build without CUDA");
#endif
}

}  // namespace qwen3
