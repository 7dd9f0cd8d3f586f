#include "reference_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace qwen3::testing {

at::Tensor NaiveRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const int64_t d = x.size(-1);
  at::Tensor flat = x.to(at::kDouble).reshape({-1, d}).contiguous();
  at::Tensor w = weight.to(at::kDouble).contiguous();
  at::Tensor out = at::empty_like(flat);
  auto in_a = flat.accessor<double, 2>();
  auto w_a = w.accessor<double, 1>();
  auto out_a = out.accessor<double, 2>();
  for (int64_t r = 0; r < flat.size(0); ++r) {
    double mean_sq = 0;
    for (int64_t j = 0; j < d; ++j) mean_sq += in_a[r][j] * in_a[r][j];
    mean_sq /= static_cast<double>(d);
    const double inv = 1.0 / std::sqrt(mean_sq + eps);
    for (int64_t j = 0; j < d; ++j) out_a[r][j] = in_a[r][j] * inv * w_a[j];
  }
  return out.view(x.sizes());
}

at::Tensor NaiveRotary(const at::Tensor& x, double theta) {
  std::vector<double> inv_freq;
  const int64_t dim = x.size(2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    inv_freq.push_back(std::pow(theta, -2.0 * static_cast<double>(i) / dim));
  }
  return NaiveRotary(x, inv_freq);
}

std::vector<double> ReferenceInvFreq(const TinyConfig& c) {
  std::vector<double> inv_freq;
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    const double f = std::pow(c.theta, -2.0 * static_cast<double>(i) / c.head_dim);
    if (c.rope_type == "linear") {
      inv_freq.push_back(f / c.rope_factor);
    } else if (c.rope_type == "llama3") {
      // Llama 3.1: short wavelengths kept, long ones divided by factor, the band between
      // interpolated.
      const double old_context = static_cast<double>(c.rope_original_max_positions);
      const double wavelen = 2 * M_PI / f;
      if (wavelen < old_context / c.rope_high_freq_factor) {
        inv_freq.push_back(f);
      } else if (wavelen > old_context / c.rope_low_freq_factor) {
        inv_freq.push_back(f / c.rope_factor);
      } else {
        const double smooth = (old_context / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        inv_freq.push_back((1 - smooth) * f / c.rope_factor + smooth * f);
      }
    } else {
      inv_freq.push_back(f);
    }
  }
  return inv_freq;
}

at::Tensor NaiveRotary(const at::Tensor& x, const std::vector<double>& inv_freq) {
  at::Tensor xd = x.to(at::kDouble).contiguous();
  const int64_t length = xd.size(0);
  const int64_t heads = xd.size(1);
  const int64_t dim = xd.size(2);
  const int64_t half = dim / 2;
  at::Tensor out = at::empty_like(xd);
  auto in_a = xd.accessor<double, 3>();
  auto out_a = out.accessor<double, 3>();
  for (int64_t p = 0; p < length; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * inv_freq[static_cast<size_t>(i)];
      const double c = std::cos(angle);
      const double s = std::sin(angle);
      for (int64_t h = 0; h < heads; ++h) {
        const double a = in_a[p][h][i];
        const double b = in_a[p][h][i + half];
        out_a[p][h][i] = a * c - b * s;  // rotate_half: (-x2, x1)
        out_a[p][h][i + half] = b * c + a * s;
      }
    }
  }
  return out;
}

at::Tensor ReferenceHidden(const std::map<std::string, at::Tensor>& weights, const TinyConfig& c,
                           const std::vector<int32_t>& ids) {
  auto w = [&](const std::string& name) { return weights.at(name).to(at::kDouble); };
  // x W^T (+ b where the checkpoint has the bias).
  auto linear = [&](const at::Tensor& x, const std::string& name) {
    at::Tensor y = at::matmul(x, w(name + ".weight").t());
    if (weights.count(name + ".bias") != 0) y = y + w(name + ".bias");
    return y;
  };
  const std::vector<double> inv_freq = ReferenceInvFreq(c);
  const int64_t length = static_cast<int64_t>(ids.size());
  const int64_t d = c.head_dim;
  const int64_t group = c.heads / c.kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  at::Tensor table = w("embed_tokens.weight");
  at::Tensor x = at::empty({length, c.hidden}, at::kDouble);
  for (int64_t t = 0; t < length; ++t) x[t] = table[ids[static_cast<size_t>(t)]];

  for (int64_t layer = 0; layer < c.layers; ++layer) {
    const std::string p = "layers." + std::to_string(layer) + ".";
    at::Tensor h = NaiveRmsNorm(x, w(p + "input_layernorm.weight"), c.eps);
    at::Tensor q = linear(h, p + "self_attn.q_proj").view({length, c.heads, d});
    at::Tensor k = linear(h, p + "self_attn.k_proj").view({length, c.kv_heads, d});
    at::Tensor v = linear(h, p + "self_attn.v_proj").view({length, c.kv_heads, d});
    if (c.qk_norm) {
      q = NaiveRmsNorm(q, w(p + "self_attn.q_norm.weight"), c.eps);
      k = NaiveRmsNorm(k, w(p + "self_attn.k_norm.weight"), c.eps);
    }
    q = NaiveRotary(q, inv_freq);
    k = NaiveRotary(k, inv_freq);

    at::Tensor attn = at::empty({length, c.heads * d}, at::kDouble);
    for (int64_t head = 0; head < c.heads; ++head) {
      const int64_t kv = head / group;
      at::Tensor qh = q.select(1, head);  // [L, D]
      at::Tensor kh = k.select(1, kv);
      at::Tensor vh = v.select(1, kv);
      at::Tensor scores = at::matmul(qh, kh.t()) * scale;
      for (int64_t i = 0; i < length; ++i) {
        for (int64_t j = i + 1; j < length; ++j) {
          scores[i][j] = -std::numeric_limits<double>::infinity();
        }
      }
      at::Tensor probs = at::softmax(scores, -1);
      attn.narrow(1, head * d, d).copy_(at::matmul(probs, vh));
    }
    x = x + linear(attn, p + "self_attn.o_proj");

    at::Tensor h2 = NaiveRmsNorm(x, w(p + "post_attention_layernorm.weight"), c.eps);
    at::Tensor gate = linear(h2, p + "mlp.gate_proj");
    at::Tensor up = linear(h2, p + "mlp.up_proj");
    at::Tensor act = gate * at::sigmoid(gate) * up;
    x = x + linear(act, p + "mlp.down_proj");
  }
  return NaiveRmsNorm(x, w("norm.weight"), c.eps);
}

std::vector<float> ReferenceEmbedding(const std::map<std::string, at::Tensor>& weights,
                                      const TinyConfig& c, const std::vector<int32_t>& ids,
                                      int64_t dimensions) {
  const int64_t length = static_cast<int64_t>(ids.size());
  at::Tensor final_row = ReferenceHidden(weights, c, ids)[length - 1];
  at::Tensor head = final_row.narrow(0, 0, dimensions);
  head = head / head.norm().item<double>();
  std::vector<float> out(static_cast<size_t>(dimensions));
  for (int64_t i = 0; i < dimensions; ++i)
    out[static_cast<size_t>(i)] = static_cast<float>(head[i].item<double>());
  return out;
}

at::Tensor NaiveLayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          double eps) {
  const int64_t d = x.size(-1);
  at::Tensor flat = x.to(at::kDouble).reshape({-1, d}).contiguous();
  at::Tensor w = weight.to(at::kDouble).contiguous();
  at::Tensor b = bias.to(at::kDouble).contiguous();
  at::Tensor out = at::empty_like(flat);
  auto in_a = flat.accessor<double, 2>();
  auto w_a = w.accessor<double, 1>();
  auto b_a = b.accessor<double, 1>();
  auto out_a = out.accessor<double, 2>();
  for (int64_t r = 0; r < flat.size(0); ++r) {
    double mean = 0;
    for (int64_t j = 0; j < d; ++j) mean += in_a[r][j];
    mean /= static_cast<double>(d);
    double var = 0;
    for (int64_t j = 0; j < d; ++j) var += (in_a[r][j] - mean) * (in_a[r][j] - mean);
    var /= static_cast<double>(d);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t j = 0; j < d; ++j) out_a[r][j] = (in_a[r][j] - mean) * inv * w_a[j] + b_a[j];
  }
  return out.view(x.sizes());
}

namespace {

at::Tensor NaiveGelu(const at::Tensor& x, const std::string& act) {
  if (act == "gelu") return 0.5 * x * (1.0 + at::erf(x / std::sqrt(2.0)));
  // gelu_new: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3))));
}

}  // namespace

at::Tensor ReferenceEncoderPooled(const std::map<std::string, at::Tensor>& weights,
                                  const EncoderSpec& spec,
                                  const std::vector<std::vector<int32_t>>& sequences,
                                  const std::string& pooling,
                                  const std::vector<int32_t>& prompt_lengths) {
  auto w = [&](const std::string& name) { return weights.at(name).to(at::kDouble); };
  const bool roberta = spec.model_type == "xlm-roberta";
  const auto batch = static_cast<int64_t>(sequences.size());
  int64_t longest = 0;
  for (const auto& s : sequences) longest = std::max<int64_t>(longest, s.size());
  const int64_t h = spec.hidden;
  const int64_t heads = spec.heads;
  const int64_t d = h / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));

  // Padded ids, attention mask and position ids, as the tokenizer and the embeddings make them.
  std::vector<std::vector<int64_t>> ids(batch, std::vector<int64_t>(longest, spec.pad_token_id));
  std::vector<std::vector<bool>> mask(batch, std::vector<bool>(longest, false));
  std::vector<std::vector<int64_t>> positions(batch, std::vector<int64_t>(longest, 0));
  for (int64_t b = 0; b < batch; ++b) {
    for (size_t t = 0; t < sequences[b].size(); ++t) {
      ids[b][t] = sequences[b][t];
      mask[b][t] = true;
    }
    int64_t count = 0;
    for (int64_t t = 0; t < longest; ++t) {
      if (!roberta) {
        positions[b][t] = t;
      } else if (ids[b][t] != spec.pad_token_id) {
        positions[b][t] = spec.pad_token_id + ++count;
      } else {
        positions[b][t] = spec.pad_token_id;
      }
    }
  }

  at::Tensor words = w("embeddings.word_embeddings.weight");
  at::Tensor pos_table = w("embeddings.position_embeddings.weight");
  at::Tensor type0 = w("embeddings.token_type_embeddings.weight")[0];
  at::Tensor x = at::empty({batch, longest, h}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < longest; ++t) {
      x[b][t] = words[ids[b][t]] + type0 + pos_table[positions[b][t]];
    }
  }
  x = NaiveLayerNorm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), spec.eps);

  auto linear = [&](const at::Tensor& in, const std::string& name) {
    return at::matmul(in, w(name + ".weight").t()) + w(name + ".bias");
  };
  for (int64_t layer = 0; layer < spec.layers; ++layer) {
    const std::string p = "encoder.layer." + std::to_string(layer) + ".";
    at::Tensor q = linear(x, p + "attention.self.query").view({batch, longest, heads, d});
    at::Tensor k = linear(x, p + "attention.self.key").view({batch, longest, heads, d});
    at::Tensor v = linear(x, p + "attention.self.value").view({batch, longest, heads, d});
    at::Tensor context = at::empty({batch, longest, h}, at::kDouble);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t head = 0; head < heads; ++head) {
        at::Tensor scores = at::matmul(q[b].select(1, head), k[b].select(1, head).t()) * scale;
        for (int64_t j = 0; j < longest; ++j) {
          if (!mask[b][j]) scores.select(1, j).fill_(-std::numeric_limits<double>::infinity());
        }
        at::Tensor e = at::exp(scores - std::get<0>(scores.max(1, true)));
        at::Tensor probs = e / e.sum(1, true);
        context[b].narrow(1, head * d, d).copy_(at::matmul(probs, v[b].select(1, head)));
      }
    }
    x = NaiveLayerNorm(linear(context, p + "attention.output.dense") + x,
                       w(p + "attention.output.LayerNorm.weight"),
                       w(p + "attention.output.LayerNorm.bias"), spec.eps);
    at::Tensor inner = NaiveGelu(linear(x, p + "intermediate.dense"), spec.hidden_act);
    x = NaiveLayerNorm(linear(inner, p + "output.dense") + x, w(p + "output.LayerNorm.weight"),
                       w(p + "output.LayerNorm.bias"), spec.eps);
  }

  at::Tensor pooled = at::empty({batch, h}, at::kDouble);
  for (int64_t b = 0; b < batch; ++b) {
    const auto length = static_cast<int64_t>(sequences[b].size());
    if (pooling == "cls") {
      pooled[b] = x[b][0];
    } else if (pooling == "lasttoken") {
      pooled[b] = x[b][length - 1];
    } else {
      const int64_t skip = prompt_lengths.empty() ? 0 : prompt_lengths[b];
      at::Tensor sum = at::zeros({h}, at::kDouble);
      for (int64_t t = skip; t < length; ++t) sum += x[b][t];
      pooled[b] = sum / static_cast<double>(length - skip);
    }
  }
  return pooled;
}

double Cosine(const float* a, const float* b, int64_t n) {
  double dot = 0;
  double na = 0;
  double nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}

}  // namespace qwen3::testing
