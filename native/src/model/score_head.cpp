#include "model/score_head.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace qwen3 {

namespace {

constexpr const char* kLmHead = "lm_head.weight";
constexpr const char* kEmbedTokens = "embed_tokens.weight";
constexpr const char* kScore = "score.weight";

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// The rows a yes-no head reads, as transformers ties them: the embedding table when the config says
// tie_word_embeddings: true (transformers then ignores a saved lm_head.weight), else
// lm_head.weight. A config that says false needs lm_head.weight (transformers would leave a random
// head there), so its absence is refused; one that says nothing gets the table when no
// lm_head.weight exists.
std::string YesNoTensor(const Checkpoint& checkpoint, const json::Value& config_json,
                        const std::string& source) {
  const json::Value* tie = json::Find(config_json, "tie_word_embeddings");
  if (tie != nullptr && !tie->is_null() && !tie->is_boolean())
    ThrowModelLoadFailed(source + ": \"tie_word_embeddings\" must be a boolean");
  const bool says = tie != nullptr && tie->is_boolean();
  if (says && tie->get<bool>()) return kEmbedTokens;
  if (checkpoint.Has(kLmHead)) return kLmHead;
  if (says) {
    ThrowModelLoadFailed(source + ": tie_word_embeddings is false but the checkpoint in " +
                         checkpoint.dir() + " has no " + kLmHead +
                         " (head 'yes-no' reads the yes/no rows of the LM head)");
  }
  return kEmbedTokens;
}

}  // namespace

HeadKind ParseHead(const std::string& name) {
  if (name == "embedding") return HeadKind::kEmbedding;
  if (name == "yes-no") return HeadKind::kYesNo;
  if (name == "classifier") return HeadKind::kClassifier;
  ThrowInvalidArgument("head \"" + name + "\" is not supported (embedding, yes-no or classifier)");
}

const char* HeadName(HeadKind head) noexcept {
  switch (head) {
    case HeadKind::kEmbedding:
      return "embedding";
    case HeadKind::kYesNo:
      return "yes-no";
    case HeadKind::kClassifier:
      return "classifier";
  }
  return "embedding";
}

ScoreHead ScoreHead::Load(const Checkpoint& checkpoint, const ModelConfig& config,
                          const json::Value& config_json, const std::string& source, HeadKind head,
                          int64_t yes_token_id, int64_t no_token_id) {
  const std::string name = std::string("head '") + HeadName(head) + "'";
  if (head == HeadKind::kEmbedding) {
    throw Error(ErrorCode::kInternal, "ScoreHead::Load: head 'embedding' has no score head");
  }
  if (config.is_encoder()) {
    ThrowInvalidArgument(name + " is not supported for " + config.model_type +
                         " models yet (only decoder families: qwen3, qwen2, mistral, llama)");
  }
  ScoreHead score;
  score.kind_ = head;
  if (head == HeadKind::kYesNo) {
    score.tensor_ = YesNoTensor(checkpoint, config_json, source);
    checkpoint.CheckWeight(score.tensor_, {config.vocab_size, config.hidden_size});
    for (const int64_t id : {yes_token_id, no_token_id}) {
      if (id < 0 || id >= config.vocab_size) {
        ThrowInvalidArgument("yesNoTokenIds [" + std::to_string(yes_token_id) + ", " +
                             std::to_string(no_token_id) + "]: token id " + std::to_string(id) +
                             " is out of range of the vocabulary (" + score.tensor_ + " has " +
                             std::to_string(config.vocab_size) + " rows)");
      }
    }
    if (yes_token_id == no_token_id) {
      ThrowInvalidArgument("yesNoTokenIds [" + std::to_string(yes_token_id) + ", " +
                           std::to_string(no_token_id) + "]: the yes and no tokens must differ");
    }
    score.rows_ = checkpoint.GetRows(score.tensor_, {yes_token_id, no_token_id}).to(at::kFloat);
  } else {
    score.tensor_ = kScore;
    if (!checkpoint.Has(kScore)) {
      ThrowModelLoadFailed(std::string("tensor '") + kScore +
                           "' is missing from the checkpoint in " + checkpoint.dir() + ": " + name +
                           " needs a Qwen3ForSequenceClassification checkpoint");
    }
    const std::vector<int64_t>& shape = checkpoint.Entry(kScore).shape;
    const std::vector<int64_t> expected = {1, config.hidden_size};
    if (shape != expected) {
      ThrowModelLoadFailed(checkpoint.FileOf(kScore) + ": tensor '" + kScore + "': shape " +
                           ShapeString(shape) + " is not " + ShapeString(expected) +
                           ": a reranker's classifier has one label (num_labels must be 1)");
    }
    checkpoint.CheckWeight(kScore, expected);
    score.rows_ = checkpoint.Get(kScore).to(at::kFloat);
  }
  score.rows_ = score.rows_.contiguous();
  return score;
}

ScoreHead ScoreHead::To(const at::Device& device) const {
  ScoreHead copy;
  copy.kind_ = kind_;
  copy.tensor_ = tensor_;
  copy.rows_ = rows_.to(device);
  return copy;
}

at::Tensor ScoreHead::Forward(const at::Tensor& pooled) const {
  const at::Tensor logits = at::linear(pooled.to(at::kFloat), rows_);  // [n, rows] fp32
  if (kind_ == HeadKind::kYesNo) {
    return (logits.select(1, 0) - logits.select(1, 1)).unsqueeze(1).contiguous();
  }
  return logits.contiguous();
}

}  // namespace qwen3
