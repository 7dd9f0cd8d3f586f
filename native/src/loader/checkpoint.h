// A Hugging Face checkpoint directory: config.json plus model.safetensors, or shards listed by
// model.safetensors.index.json; without safetensors weights, pytorch_model.bin or the shards listed
// by pytorch_model.bin.index.json (torch.save's zip format, loader/pytorch_bin.h). Tensor names are
// normalised by dropping a leading "model." so both Qwen3-Embedding ("layers.0...") and
// Qwen3ForCausalLM ("model.layers.0...") layouts load; a task model's top-level tensors
// ("lm_head.weight", "score.weight") keep their names.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/progress.h"
#include "loader/json.h"
#include "loader/safetensors.h"

namespace qwen3 {

// Reads and parses <dir>/config.json. Throws kModelLoadFailed naming the file.
json::Value ReadConfigJson(const std::string& dir);

class Checkpoint {
 public:
  // Maps every shard and validates every header. Reports one progress line per shard.
  static std::unique_ptr<Checkpoint> Open(const std::string& dir,
                                          const ProgressCallback& progress = nullptr);

  const std::string& dir() const noexcept { return dir_; }
  size_t num_files() const noexcept { return files_.size(); }
  uint64_t total_bytes() const noexcept;

  bool Has(const std::string& name) const;
  // Throws kModelLoadFailed naming the tensor and where it was looked for.
  const TensorEntry& Entry(const std::string& name) const;
  // The file holding a tensor (for error messages).
  const std::string& FileOf(const std::string& name) const;

  // Throws kModelLoadFailed naming file and tensor unless the tensor has exactly `shape` and a
  // floating dtype (BF16, F16, F32).
  void CheckWeight(const std::string& name, const std::vector<int64_t>& shape) const;

  // The whole tensor as a CPU tensor of its stored dtype.
  at::Tensor Get(const std::string& name) const;
  // This rank's equal slice along `split_dim` ([rank * n / world, (rank + 1) * n / world)), copied
  // without touching the other ranks' bytes. The size along split_dim must divide by world.
  at::Tensor GetShard(const std::string& name, int64_t split_dim, int rank, int world) const;
  // Rows `rows` of a 2-D tensor as [rows.size(), columns] of its stored dtype, copied from the
  // mapped file without reading the others (two rows of a 150k-row LM head). Throws
  // kInvalidArgument for a row out of range.
  at::Tensor GetRows(const std::string& name, const std::vector<int64_t>& rows) const;

 private:
  struct Located {
    const TensorFile* file;
    const TensorEntry* entry;
  };
  const Located& Locate(const std::string& name) const;

  std::string dir_;
  std::vector<std::unique_ptr<TensorFile>> files_;
  std::unordered_map<std::string, Located> tensors_;
};

}  // namespace qwen3
