#include "model/encoder_model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>
#include <utility>

#include "common/error.h"
#include "model/attention.h"
#include "model/pooler.h"

namespace qwen3 {

namespace {

constexpr const char* kWordEmbeddings = "embeddings.word_embeddings.weight";

std::string LayerName(int index, const char* suffix) {
  return "encoder.layer." + std::to_string(index) + "." + suffix;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A checkpoint tensor in the compute dtype on the target device (copied before the conversion, so
// a GPU converts it).
at::Tensor ToDevice(const at::Tensor& t, const ModelOptions& o) {
  return t.to(o.device).to(o.dtype).contiguous();
}

// LayerNorm parameters and the row-parallel biases are applied in fp32.
at::Tensor ToDeviceFloat(const at::Tensor& t, const ModelOptions& o) {
  return t.to(o.device).to(at::kFloat).contiguous();
}

// This rank's rows of several tensors that read the same input (q/k/v weights or biases),
// concatenated.
at::Tensor FusedRows(const Checkpoint& c, const std::vector<std::string>& names,
                     const ModelOptions& o) {
  std::vector<at::Tensor> parts;
  parts.reserve(names.size());
  for (const auto& name : names) parts.push_back(c.GetShard(name, 0, o.rank, o.world));
  return ToDevice(at::cat(parts, 0), o);
}

int64_t Bytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

// The sum over the group of a row-parallel layer's partial products, plus its bias (added once,
// after the all-reduce), plus the residual, through LayerNorm: BERT's post-norm
// LayerNorm(dense(x) + residual), in fp32.
at::Tensor ReduceBiasAddLayerNorm(Communicator& comm, const at::Tensor& partial,
                                  const at::Tensor& bias, const at::Tensor& residual,
                                  const at::Tensor& weight, const at::Tensor& norm_bias,
                                  double eps) {
  at::Tensor sum = comm.world_size() == 1 ? partial.to(at::kFloat)
                                          : comm.AllReduceSumAsFloat(partial.contiguous());
  return at::layer_norm(sum + bias + residual, {residual.size(-1)}, weight, norm_bias, eps);
}

}  // namespace

EncoderTensorNames::EncoderTensorNames(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {
  for (const char* prefix : {"", "bert.", "roberta."}) {
    if (checkpoint.Has(prefix + std::string(kWordEmbeddings))) {
      prefix_ = prefix;
      return;
    }
  }
  ThrowModelLoadFailed(checkpoint.dir() + ": tensor \"" + kWordEmbeddings +
                       "\" not found (nor under the \"bert.\" or \"roberta.\" prefix)");
}

std::string EncoderTensorNames::operator()(const std::string& name) const {
  std::string full = prefix_ + name;
  if (checkpoint_.Has(full)) return full;
  for (const auto& [modern, legacy] :
       {std::pair<std::string, std::string>{"LayerNorm.weight", "LayerNorm.gamma"},
        std::pair<std::string, std::string>{"LayerNorm.bias", "LayerNorm.beta"}}) {
    if (EndsWith(full, modern)) {
      std::string old = full.substr(0, full.size() - modern.size()) + legacy;
      if (checkpoint_.Has(old)) return old;
    }
  }
  return full;  // absent: the caller's lookup names it in its error
}

void ValidateEncoderCheckpoint(const Checkpoint& c, const ModelConfig& m) {
  const EncoderTensorNames n(c);
  const int64_t h = m.hidden_size;
  const int64_t i = m.intermediate_size;
  c.CheckWeight(n(kWordEmbeddings), {m.vocab_size, h});
  c.CheckWeight(n("embeddings.position_embeddings.weight"), {m.position_embeddings, h});
  c.CheckWeight(n("embeddings.token_type_embeddings.weight"), {m.type_vocab_size, h});
  c.CheckWeight(n("embeddings.LayerNorm.weight"), {h});
  c.CheckWeight(n("embeddings.LayerNorm.bias"), {h});
  for (int l = 0; l < m.num_hidden_layers; ++l) {
    for (const char* projection : {"attention.self.query", "attention.self.key",
                                   "attention.self.value", "attention.output.dense"}) {
      c.CheckWeight(n(LayerName(l, projection) + std::string(".weight")), {h, h});
      c.CheckWeight(n(LayerName(l, projection) + std::string(".bias")), {h});
    }
    c.CheckWeight(n(LayerName(l, "intermediate.dense.weight")), {i, h});
    c.CheckWeight(n(LayerName(l, "intermediate.dense.bias")), {i});
    c.CheckWeight(n(LayerName(l, "output.dense.weight")), {h, i});
    c.CheckWeight(n(LayerName(l, "output.dense.bias")), {h});
    for (const char* norm : {"attention.output.LayerNorm", "output.LayerNorm"}) {
      c.CheckWeight(n(LayerName(l, norm) + std::string(".weight")), {h});
      c.CheckWeight(n(LayerName(l, norm) + std::string(".bias")), {h});
    }
  }
}

EncoderLayer::EncoderLayer(const Checkpoint& c, const EncoderTensorNames& n, const ModelConfig& m,
                           const ModelOptions& o, int index)
    : eps_(m.layer_norm_eps),
      heads_(m.num_attention_heads / o.world),
      head_dim_(m.head_dim),
      gelu_(m.hidden_act),
      dtype_(o.dtype),
      use_flash_(FlashAttentionSupported(o.device, o.dtype, m.head_dim)) {
  auto name = [&](const char* suffix) { return n(LayerName(index, suffix)); };
  // Heads are contiguous row blocks of query/key/value, so an equal row split gives each rank
  // whole heads; each bias is split with its rows.
  qkv_proj_ = ColumnParallelLinear(
      FusedRows(c,
                {name("attention.self.query.weight"), name("attention.self.key.weight"),
                 name("attention.self.value.weight")},
                o),
      FusedRows(c,
                {name("attention.self.query.bias"), name("attention.self.key.bias"),
                 name("attention.self.value.bias")},
                o));
  out_proj_ = RowParallelLinear(
      ToDevice(c.GetShard(name("attention.output.dense.weight"), 1, o.rank, o.world), o));
  out_bias_ = ToDeviceFloat(c.Get(name("attention.output.dense.bias")), o);
  attention_norm_weight_ = ToDeviceFloat(c.Get(name("attention.output.LayerNorm.weight")), o);
  attention_norm_bias_ = ToDeviceFloat(c.Get(name("attention.output.LayerNorm.bias")), o);
  intermediate_ = ColumnParallelLinear(FusedRows(c, {name("intermediate.dense.weight")}, o),
                                       FusedRows(c, {name("intermediate.dense.bias")}, o));
  output_ =
      RowParallelLinear(ToDevice(c.GetShard(name("output.dense.weight"), 1, o.rank, o.world), o));
  output_bias_ = ToDeviceFloat(c.Get(name("output.dense.bias")), o);
  output_norm_weight_ = ToDeviceFloat(c.Get(name("output.LayerNorm.weight")), o);
  output_norm_bias_ = ToDeviceFloat(c.Get(name("output.LayerNorm.bias")), o);
}

at::Tensor EncoderLayer::Forward(const at::Tensor& x, const PackedInput& in, Communicator& comm,
                                 const at::Tensor& rows) const {
  const int64_t tokens = x.size(0);
  const int64_t width = heads_ * head_dim_;

  // x stays fp32 between layers (it is also the residual); matmuls and attention run in dtype_.
  at::Tensor qkv = qkv_proj_.Forward(x.to(dtype_));
  at::Tensor q = qkv.narrow(1, 0, width).reshape({tokens, heads_, head_dim_}).contiguous();
  at::Tensor k = qkv.narrow(1, width, width).reshape({tokens, heads_, head_dim_}).contiguous();
  at::Tensor v = qkv.narrow(1, 2 * width, width).reshape({tokens, heads_, head_dim_}).contiguous();
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  at::Tensor attn =
      PackedAttention(q, k, v, in, scale, use_flash_, /*causal=*/false).reshape({tokens, width});

  at::Tensor residual = x;
  if (rows.defined()) {
    // Only the pooled token of each sequence is read after the last layer; the others need no
    // output projection or MLP there.
    attn = attn.index_select(0, rows);
    residual = x.index_select(0, rows);
  }
  at::Tensor h = ReduceBiasAddLayerNorm(comm, out_proj_.Forward(attn), out_bias_, residual,
                                        attention_norm_weight_, attention_norm_bias_, eps_);
  at::Tensor act = at::gelu(intermediate_.Forward(h.to(dtype_)),
                            gelu_ == ModelConfig::Gelu::kTanh ? "tanh" : "none");
  return ReduceBiasAddLayerNorm(comm, output_.Forward(act), output_bias_, h, output_norm_weight_,
                                output_norm_bias_, eps_);
}

int64_t EncoderLayer::weight_bytes() const {
  return Bytes(qkv_proj_.weight()) + Bytes(qkv_proj_.bias()) + Bytes(out_proj_.weight()) +
         Bytes(out_bias_) + Bytes(attention_norm_weight_) + Bytes(attention_norm_bias_) +
         Bytes(intermediate_.weight()) + Bytes(intermediate_.bias()) + Bytes(output_.weight()) +
         Bytes(output_bias_) + Bytes(output_norm_weight_) + Bytes(output_norm_bias_);
}

EncoderModel::EncoderModel(const Checkpoint& c, const ModelConfig& m, const ModelOptions& o,
                           const ProgressCallback& progress, const std::atomic<bool>* cancel)
    : config_(m), options_(o) {
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world || m.num_attention_heads % o.world != 0 ||
      m.intermediate_size % o.world != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "tensor parallel size " + std::to_string(o.world) +
                    " must divide the encoder's num_attention_heads (" +
                    std::to_string(m.num_attention_heads) + ") and intermediate_size (" +
                    std::to_string(m.intermediate_size) + ")");
  }
  const EncoderTensorNames n(c);
  // On the CPU the table stays in its checkpoint dtype and only gathered rows are converted; on a
  // GPU it is converted once.
  at::Tensor table = c.Get(n(kWordEmbeddings));
  word_embeddings_ = o.device.is_cpu() ? table : ToDevice(table, o);
  table.reset();
  // Every token has type 0 (sentence-transformers passes no token_type_ids for one text), so its
  // row is folded into every position's.
  at::Tensor type0 = c.Get(n("embeddings.token_type_embeddings.weight")).select(0, 0);
  position_and_type_ =
      ToDeviceFloat(c.Get(n("embeddings.position_embeddings.weight")).to(at::kFloat) +
                        type0.to(at::kFloat).unsqueeze(0),
                    o);
  embedding_norm_weight_ = ToDeviceFloat(c.Get(n("embeddings.LayerNorm.weight")), o);
  embedding_norm_bias_ = ToDeviceFloat(c.Get(n("embeddings.LayerNorm.bias")), o);

  const std::string who = o.world > 1 ? "rank " + std::to_string(o.rank) + ": " : "";
  layers_.reserve(static_cast<size_t>(m.num_hidden_layers));
  for (int i = 0; i < m.num_hidden_layers; ++i) {
    if (cancel != nullptr && cancel->load()) {
      throw Error(ErrorCode::kModelLoadFailed, "loading was cancelled");
    }
    layers_.emplace_back(c, n, m, o, i);
    const int done = i + 1;
    if (progress && (done == m.num_hidden_layers || done % 4 == 0)) {
      progress(who + "loaded layer " + std::to_string(done) + "/" +
               std::to_string(m.num_hidden_layers));
    }
  }
}

at::Tensor EncoderModel::Embed(const PackedInput& in) const {
  at::Tensor positions = in.positions.to(at::kLong);
  if (config_.position_offset > 0) {
    // XLM-RoBERTa (create_position_ids_from_input_ids): padding_idx + the count of non-padding
    // tokens up to and including this one in its sequence; a padding token gets padding_idx.
    const at::Tensor real = in.token_ids.ne(config_.pad_token_id).to(at::kLong);
    const at::Tensor counted = at::cumsum(real, 0);
    // Each token's sequence starts at its index minus its 0-based position.
    const at::Tensor start = at::arange(in.num_tokens(), positions.options()) - positions;
    const at::Tensor before = (counted - real).index_select(0, start);
    positions = (counted - before) * real + config_.pad_token_id;
  }
  // Real sequences are validated against max_position_embeddings; only the padding sequence of a
  // CUDA graph bucket (and its capture) can be longer, and its rows are never pooled.
  positions = positions.clamp_max(config_.position_embeddings - 1);
  at::Tensor x = word_embeddings_.index_select(0, in.token_ids)
                     .to(at::kFloat)
                     .add_(position_and_type_.index_select(0, positions));
  return at::layer_norm(x, {config_.hidden_size}, embedding_norm_weight_, embedding_norm_bias_,
                        config_.layer_norm_eps);
}

at::Tensor EncoderModel::Forward(const PackedInput& in, Communicator& comm,
                                 const LayerHook& hook) const {
  at::Tensor x = Embed(in);
  // Mean pooling reads every token of the last layer; cls and last token only one per sequence,
  // which the last layer then computes alone: its output is the pooled rows.
  const bool mean = options_.pooling == Pooling::kMean;
  at::Tensor pooled_rows;
  if (options_.pooling == Pooling::kCls) pooled_rows = in.first_token;
  if (options_.pooling == Pooling::kLastToken) pooled_rows = in.last_token;
  const auto layers = static_cast<int>(layers_.size());
  for (int i = 0; i < layers; ++i) {
    if (hook) hook(i);
    x = layers_[static_cast<size_t>(i)].Forward(x, in, comm,
                                                i == layers - 1 ? pooled_rows : at::Tensor());
  }
  return mean ? PoolHidden(x, in, Pooling::kMean) : x;
}

int64_t EncoderModel::weight_bytes() const {
  int64_t total = Bytes(word_embeddings_) + Bytes(position_and_type_) +
                  Bytes(embedding_norm_weight_) + Bytes(embedding_norm_bias_);
  for (const auto& layer : layers_) total += layer.weight_bytes();
  return total;
}

bool EncoderModel::uses_flash_attention() const {
  return FlashAttentionSupported(options_.device, options_.dtype, config_.head_dim);
}

}  // namespace qwen3
