#include "model/decoder_model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <tuple>

#include "common/error.h"
#include "model/attention.h"
#include "model/pooler.h"

namespace qwen3 {

namespace {

std::string LayerName(int index, const char* suffix) {
  return "layers." + std::to_string(index) + "." + suffix;
}

// A checkpoint tensor converted to the compute dtype on the target device. The copy to the device
// happens before the dtype conversion so a GPU converts it.
at::Tensor ToDevice(at::Tensor t, const ModelOptions& o) {
  return t.to(o.device).to(o.dtype).contiguous();
}

// Norm weights are tiny and applied in fp32 (RmsNormTo), so they are kept in fp32 whatever the
// compute dtype.
at::Tensor LoadNorm(const Checkpoint& c, const std::string& name, const ModelOptions& o) {
  return c.Get(name).to(o.device).to(at::kFloat).contiguous();
}

at::Tensor LoadFusedRows(const Checkpoint& c, const std::vector<std::string>& names,
                         const ModelOptions& o) {
  std::vector<at::Tensor> parts;
  parts.reserve(names.size());
  for (const auto& name : names) parts.push_back(c.GetShard(name, 0, o.rank, o.world));
  return ToDevice(at::cat(parts, 0), o);
}

int64_t Bytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

}  // namespace

void ValidateDecoderCheckpoint(const Checkpoint& c, const ModelConfig& m) {
  const int64_t h = m.hidden_size;
  c.CheckWeight("embed_tokens.weight", {m.vocab_size, h});
  c.CheckWeight("norm.weight", {h});
  for (int i = 0; i < m.num_hidden_layers; ++i) {
    c.CheckWeight(LayerName(i, "input_layernorm.weight"), {h});
    c.CheckWeight(LayerName(i, "post_attention_layernorm.weight"), {h});
    c.CheckWeight(LayerName(i, "self_attn.q_proj.weight"), {m.q_size(), h});
    c.CheckWeight(LayerName(i, "self_attn.k_proj.weight"), {m.kv_size(), h});
    c.CheckWeight(LayerName(i, "self_attn.v_proj.weight"), {m.kv_size(), h});
    c.CheckWeight(LayerName(i, "self_attn.o_proj.weight"), {h, m.q_size()});
    if (m.qk_norm) {
      c.CheckWeight(LayerName(i, "self_attn.q_norm.weight"), {m.head_dim});
      c.CheckWeight(LayerName(i, "self_attn.k_norm.weight"), {m.head_dim});
    }
    if (m.qkv_bias) {
      c.CheckWeight(LayerName(i, "self_attn.q_proj.bias"), {m.q_size()});
      c.CheckWeight(LayerName(i, "self_attn.k_proj.bias"), {m.kv_size()});
      c.CheckWeight(LayerName(i, "self_attn.v_proj.bias"), {m.kv_size()});
    }
    if (m.o_bias) c.CheckWeight(LayerName(i, "self_attn.o_proj.bias"), {h});
    c.CheckWeight(LayerName(i, "mlp.gate_proj.weight"), {m.intermediate_size, h});
    c.CheckWeight(LayerName(i, "mlp.up_proj.weight"), {m.intermediate_size, h});
    c.CheckWeight(LayerName(i, "mlp.down_proj.weight"), {h, m.intermediate_size});
    if (m.mlp_bias) {
      c.CheckWeight(LayerName(i, "mlp.gate_proj.bias"), {m.intermediate_size});
      c.CheckWeight(LayerName(i, "mlp.up_proj.bias"), {m.intermediate_size});
      c.CheckWeight(LayerName(i, "mlp.down_proj.bias"), {h});
    }
  }
}

DecoderLayer::DecoderLayer(const Checkpoint& c, const ModelConfig& m, const ModelOptions& o,
                           int index)
    : eps_(m.rms_norm_eps),
      q_heads_(m.num_attention_heads / o.world),
      kv_heads_(m.num_key_value_heads / o.world),
      head_dim_(m.head_dim),
      intermediate_(m.intermediate_size / o.world),
      dtype_(o.dtype),
      use_flash_(FlashAttentionSupported(o.device, o.dtype, m.head_dim)) {
  auto name = [index](const char* suffix) { return LayerName(index, suffix); };
  input_norm_ = LoadNorm(c, name("input_layernorm.weight"), o);
  post_attention_norm_ = LoadNorm(c, name("post_attention_layernorm.weight"), o);
  if (m.qk_norm) {
    q_norm_ = LoadNorm(c, name("self_attn.q_norm.weight"), o);
    k_norm_ = LoadNorm(c, name("self_attn.k_norm.weight"), o);
  }
  // Heads are contiguous row blocks of q/k/v, so an equal row split gives each rank whole heads,
  // and its query heads are exactly those that read its key/value heads. Biases split alike.
  qkv_proj_ = ColumnParallelLinear(
      LoadFusedRows(c,
                    {name("self_attn.q_proj.weight"), name("self_attn.k_proj.weight"),
                     name("self_attn.v_proj.weight")},
                    o),
      m.qkv_bias ? LoadFusedRows(c,
                                 {name("self_attn.q_proj.bias"), name("self_attn.k_proj.bias"),
                                  name("self_attn.v_proj.bias")},
                                 o)
                 : at::Tensor());
  o_proj_ = RowParallelLinear(
      ToDevice(c.GetShard(name("self_attn.o_proj.weight"), 1, o.rank, o.world), o));
  gate_up_proj_ = ColumnParallelLinear(
      LoadFusedRows(c, {name("mlp.gate_proj.weight"), name("mlp.up_proj.weight")}, o),
      m.mlp_bias ? LoadFusedRows(c, {name("mlp.gate_proj.bias"), name("mlp.up_proj.bias")}, o)
                 : at::Tensor());
  down_proj_ =
      RowParallelLinear(ToDevice(c.GetShard(name("mlp.down_proj.weight"), 1, o.rank, o.world), o));
  if (m.o_bias) o_bias_ = LoadNorm(c, name("self_attn.o_proj.bias"), o);
  if (m.mlp_bias) down_bias_ = LoadNorm(c, name("mlp.down_proj.bias"), o);
}

at::Tensor DecoderLayer::Forward(at::Tensor& x, const at::Tensor& delta, const PackedInput& in,
                                 const RotaryInputs& rotary, Communicator& comm,
                                 const at::Tensor& keep_rows) const {
  const int64_t tokens = x.size(0);
  const int64_t q_width = q_heads_ * head_dim_;

  // x is the residual stream, kept in fp32 across all layers: summing 2 x layers sublayer
  // outputs in bf16 would round the stream at every step (8 mantissa bits), which is what drifts
  // a bf16 4B forward away from the fp32 reference. Matmuls and attention run in dtype_. Each
  // residual add is fused into the norm that reads its result.
  at::Tensor h = ReduceAddRmsNorm(comm, x, delta, input_norm_, eps_, dtype_);
  auto [q, k, v] = QkNormRope(qkv_proj_.Forward(h), q_heads_, kv_heads_, head_dim_, q_norm_,
                              k_norm_, rotary, eps_);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  at::Tensor attn = CausalAttention(q, k, v, in, scale, use_flash_).reshape({tokens, q_width});

  if (keep_rows.defined()) {
    // Only one token of each sequence is pooled; the rest need no o_proj or MLP here.
    attn = attn.index_select(0, keep_rows);
    x = x.index_select(0, keep_rows);
  }
  // A row-parallel bias joins the fp32 residual stream once, beside the all-reduced partial sums.
  if (o_bias_.defined()) x.add_(o_bias_);
  h = ReduceAddRmsNorm(comm, x, o_proj_.Forward(attn), post_attention_norm_, eps_, dtype_);
  if (down_bias_.defined()) x.add_(down_bias_);
  // This rank's partial sum of the MLP output: the next norm all-reduces it.
  return down_proj_.Forward(SiluMul(gate_up_proj_.Forward(h)));
}

int64_t DecoderLayer::weight_bytes() const {
  return Bytes(input_norm_) + Bytes(post_attention_norm_) + Bytes(q_norm_) + Bytes(k_norm_) +
         Bytes(qkv_proj_.weight()) + Bytes(qkv_proj_.bias()) + Bytes(o_proj_.weight()) +
         Bytes(o_bias_) + Bytes(gate_up_proj_.weight()) + Bytes(gate_up_proj_.bias()) +
         Bytes(down_proj_.weight()) + Bytes(down_bias_);
}

DecoderModel::DecoderModel(const Checkpoint& c, const ModelConfig& m, const ModelOptions& o,
                           const ProgressCallback& progress, const std::atomic<bool>* cancel)
    : config_(m), options_(o) {
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world || m.num_key_value_heads % o.world != 0 ||
      m.intermediate_size % o.world != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "tensor parallel size " + std::to_string(o.world) +
                    " must divide num_key_value_heads (" + std::to_string(m.num_key_value_heads) +
                    ") and intermediate_size (" + std::to_string(m.intermediate_size) + ")");
  }
  // On the CPU the table stays in its checkpoint dtype and only gathered rows are converted: a
  // bf16 table is half the size of an fp32 one. On a GPU it is converted once.
  at::Tensor table = c.Get("embed_tokens.weight");
  embed_tokens_ = o.device.is_cpu() ? table : ToDevice(table, o);
  table.reset();
  norm_ = LoadNorm(c, "norm.weight", o);
  rotary_ = RotaryEmbedding(m.head_dim, m.rope_theta, o.device, m.rope_scaling);

  const std::string who = o.world > 1 ? "rank " + std::to_string(o.rank) + ": " : "";
  layers_.reserve(static_cast<size_t>(m.num_hidden_layers));
  for (int i = 0; i < m.num_hidden_layers; ++i) {
    if (cancel != nullptr && cancel->load()) {
      throw Error(ErrorCode::kModelLoadFailed, "loading was cancelled");
    }
    layers_.emplace_back(c, m, o, i);
    const int done = i + 1;
    if (progress && (done == m.num_hidden_layers || done % 4 == 0)) {
      progress(who + "loaded layer " + std::to_string(done) + "/" +
               std::to_string(m.num_hidden_layers));
    }
  }
}

at::Tensor DecoderModel::Forward(const PackedInput& in, Communicator& comm,
                                 const LayerHook& hook) const {
  // index_select makes a new tensor, so the residual stream may be updated in place.
  at::Tensor x = embed_tokens_.index_select(0, in.token_ids).to(at::kFloat);
  RotaryInputs rotary;
  rotary.positions = in.positions;
  rotary.inv_freq = rotary_.inv_freq();
  if (!FusedKernelsAvailable(options_.device)) {
    std::tie(rotary.cos, rotary.sin) = rotary_.CosSin(in.positions);
  }
  // Last-token and first-token pooling read one row per sequence: the last layer computes only
  // those past attention. Mean pooling reads every token.
  const Pooling pooling = options_.pooling;
  const at::Tensor pooled_rows = pooling == Pooling::kLastToken ? in.last_token
                                 : pooling == Pooling::kCls     ? in.first_token
                                                                : at::Tensor();
  at::Tensor delta;
  const auto layers = static_cast<int>(layers_.size());
  for (int i = 0; i < layers; ++i) {
    if (hook) hook(i);
    delta = layers_[static_cast<size_t>(i)].Forward(x, delta, in, rotary, comm,
                                                    i == layers - 1 ? pooled_rows : at::Tensor());
  }
  at::Tensor hidden = ReduceAddRmsNorm(comm, x, delta, norm_, config_.rms_norm_eps, at::kFloat);
  return pooling == Pooling::kMean ? PoolHidden(hidden, in, pooling) : hidden;
}

int64_t DecoderModel::weight_bytes() const {
  int64_t total = Bytes(embed_tokens_) + Bytes(norm_);
  for (const auto& layer : layers_) total += layer.weight_bytes();
  return total;
}

bool DecoderModel::uses_flash_attention() const {
  return FlashAttentionSupported(options_.device, options_.dtype, config_.head_dim);
}

}  // namespace qwen3
