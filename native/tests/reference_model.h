// A plain reference of the decoder embedding forward (Qwen3, Qwen2, Mistral, Llama), written from
// the models' definitions rather than from the engine's code: one sequence at a time, no packing,
// no fusion, float64, explicit loops for RoPE and the causal mask, per-head attention with the KV
// head picked by index, biases and rope scaling by their formulas.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "test_checkpoint.h"

namespace qwen3::testing {

// RMSNorm by its formula, in float64: x / sqrt(mean(x^2) + eps) * w over the last dimension.
at::Tensor NaiveRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

// Rotary embedding by its formula for x [L, heads, D] with positions 0..L-1, float64.
at::Tensor NaiveRotary(const at::Tensor& x, double theta);
// The same with explicit inverse frequencies [D / 2].
at::Tensor NaiveRotary(const at::Tensor& x, const std::vector<double>& inv_freq);
// The inverse frequencies of the config's rope scaling, by transformers' formulas, in float64.
std::vector<double> ReferenceInvFreq(const TinyConfig& config);

// The final-norm hidden states [L, hidden] (float64) of one sequence.
at::Tensor ReferenceHidden(const std::map<std::string, at::Tensor>& weights,
                           const TinyConfig& config, const std::vector<int32_t>& ids);

// The pooled, truncated, L2-normalised embedding of one sequence.
std::vector<float> ReferenceEmbedding(const std::map<std::string, at::Tensor>& weights,
                                      const TinyConfig& config, const std::vector<int32_t>& ids,
                                      int64_t dimensions);

// ---- Encoders (BERT, XLM-RoBERTa) ----

// LayerNorm by its formula, in float64, over the last dimension: (x - mean) / sqrt(var + eps) * w
// + b with the biased variance.
at::Tensor NaiveLayerNorm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                          double eps);

// The pooled last hidden state of each sequence (not normalised), float64 [n, hidden], computed as
// transformers runs a batch: padded to the longest sequence with pad_token_id and an attention
// mask over the padding, positions from the padded ids (XLM-RoBERTa: padding_idx + the running
// count of non-padding tokens), explicit attention, LayerNorm and GELU. `pooling` is "cls",
// "mean" (skipping prompt_lengths[i] leading tokens, as sentence-transformers' include_prompt =
// false does; empty: none) or "lasttoken".
at::Tensor ReferenceEncoderPooled(const std::map<std::string, at::Tensor>& weights,
                                  const EncoderSpec& spec,
                                  const std::vector<std::vector<int32_t>>& sequences,
                                  const std::string& pooling,
                                  const std::vector<int32_t>& prompt_lengths = {});

double Cosine(const float* a, const float* b, int64_t n);

}  // namespace qwen3::testing
