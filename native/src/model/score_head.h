// A reranker's score head: what the pooled row (the last token's final-norm hidden state, fp32)
// becomes instead of an embedding. One float per sequence, the raw score; relevance is its sigmoid
// (computed in TypeScript).
//   yes-no      Qwen3-Reranker as published (Qwen3ForCausalLM): raw = logit("yes") - logit("no"),
//               the two rows of lm_head.weight, or of the tied embed_tokens.weight, at the yes/no
//               token ids. sigmoid(raw) = softmax([logit_yes, logit_no])[0], the model card's
//               score.
//   classifier  Qwen3ForSequenceClassification with num_labels 1: raw = score.weight . row.
// Only the rows the head needs are read from the mapped checkpoint (never the whole LM head), and
// the head runs in fp32 where the Dense layers run: on the rank that completes the batch, after
// the (possibly graph-replayed) forward.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "loader/checkpoint.h"
#include "loader/json.h"
#include "model/config.h"

namespace qwen3 {

enum class HeadKind { kEmbedding, kYesNo, kClassifier };

// "embedding", "yes-no", "classifier"; anything else throws kInvalidArgument.
HeadKind ParseHead(const std::string& name);
const char* HeadName(HeadKind head) noexcept;

class ScoreHead {
 public:
  ScoreHead() = default;
  // head kYesNo or kClassifier. `config_json` is config.json as read (tie_word_embeddings),
  // `source` its path for messages. Throws kModelLoadFailed naming the tensor (a missing
  // lm_head.weight when tie_word_embeddings is false, score.weight not [1, hidden]) and
  // kInvalidArgument for a yes/no token id outside the vocabulary or an encoder family.
  static ScoreHead Load(const Checkpoint& checkpoint, const ModelConfig& config,
                        const json::Value& config_json, const std::string& source, HeadKind head,
                        int64_t yes_token_id, int64_t no_token_id);

  HeadKind kind() const { return kind_; }
  // The tensor the rows came from ("lm_head.weight", "embed_tokens.weight" or "score.weight").
  const std::string& tensor() const { return tensor_; }
  // A copy with its rows on `device` (fp32).
  ScoreHead To(const at::Device& device) const;
  // pooled [n, hidden] -> raw scores [n, 1] fp32, on pooled's device.
  at::Tensor Forward(const at::Tensor& pooled) const;

 private:
  HeadKind kind_ = HeadKind::kEmbedding;
  std::string tensor_;
  at::Tensor rows_;  // [2, hidden] (yes, no) or [1, hidden], fp32
};

}  // namespace qwen3
