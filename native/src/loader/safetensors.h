// One safetensors file (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header describing every tensor, then the raw data. Opening a file maps it and
// validates the whole header (dtypes, shapes, offsets against the file size, overlaps), so a
// truncated or corrupt shard fails at load time with the file and tensor named.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "loader/mapped_file.h"

namespace qwen3 {

enum class StorageDType {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
  kF8E4M3,
  kF8E5M2,
};

const char* StorageDTypeName(StorageDType dtype) noexcept;
size_t StorageDTypeSize(StorageDType dtype) noexcept;
// BF16, F16 and F32: the dtypes model weights may have.
bool IsFloatingWeightDType(StorageDType dtype) noexcept;

struct TensorEntry {
  std::string name;  // as written in the file
  StorageDType dtype = StorageDType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute offset of the first byte in the file
  uint64_t nbytes = 0;

  int64_t numel() const;
};

// A mapped weights file of any format (safetensors, pytorch_model.bin): its tensors, each at an
// absolute offset of the mapping. Checkpoint reads every format through this.
class TensorFile {
 public:
  virtual ~TensorFile() = default;
  virtual const std::string& path() const noexcept = 0;
  virtual size_t file_size() const noexcept = 0;
  virtual const std::vector<TensorEntry>& tensors() const noexcept = 0;
  virtual const TensorEntry* Find(const std::string& name) const = 0;
  virtual const uint8_t* data(const TensorEntry& entry) const noexcept = 0;
};

class SafetensorsFile final : public TensorFile {
 public:
  // Throws qwen3::Error(kModelLoadFailed) naming the file (and the tensor, where one is at fault).
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const noexcept override { return map_->path(); }
  size_t file_size() const noexcept override { return map_->size(); }
  const std::vector<TensorEntry>& tensors() const noexcept override { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  const TensorEntry* Find(const std::string& name) const override;
  const uint8_t* data(const TensorEntry& entry) const noexcept override {
    return map_->data() + entry.offset;
  }

 private:
  std::unique_ptr<MappedFile> map_;
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace qwen3
