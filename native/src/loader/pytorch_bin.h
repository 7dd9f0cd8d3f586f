// pytorch_model.bin: a state_dict written by torch.save in its zip format (PyTorch >= 1.6):
// <archive>/data.pkl (a pickle of {name: tensor}), <archive>/data/<key> (each storage's raw bytes,
// stored uncompressed), <archive>/version. The zip is read by libtorch's own reader
// (caffe2::serialize::PyTorchStreamReader); data.pkl by a restricted interpreter that knows only
// the pickle opcodes a state_dict uses and refuses every global but collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter and the torch.<T>Storage classes, so nothing
// in the file is executed. The file is memory-mapped like a safetensors file and each tensor's
// entry points at its bytes inside the mapping: no copy of the weights is made on opening.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "loader/mapped_file.h"
#include "loader/safetensors.h"

namespace qwen3 {

class PytorchBinFile final : public TensorFile {
 public:
  // Throws qwen3::Error(kModelLoadFailed) naming the file (and the tensor, where one is at fault):
  // not a zip (the legacy pre-1.6 format gets a message saying how to convert it), a truncated or
  // corrupt archive, a forbidden global or opcode, a value that is not a tensor, a storage type
  // without a dtype here, a non-contiguous tensor or one outside its storage.
  explicit PytorchBinFile(const std::string& path);

  const std::string& path() const noexcept override { return map_->path(); }
  size_t file_size() const noexcept override { return map_->size(); }
  const std::vector<TensorEntry>& tensors() const noexcept override { return tensors_; }
  const TensorEntry* Find(const std::string& name) const override;
  const uint8_t* data(const TensorEntry& entry) const noexcept override {
    return map_->data() + entry.offset;
  }

 private:
  std::unique_ptr<MappedFile> map_;
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
};

namespace pytorch_bin {

// One tensor of a state_dict pickle, before it is placed in the file.
struct PickledTensor {
  std::string name;
  StorageDType dtype = StorageDType::kF32;
  std::string storage_key;
  int64_t storage_numel = 0;
  int64_t storage_offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;
};

// Interprets a state_dict's data.pkl (exposed for tests). Throws kModelLoadFailed prefixed with
// `path`: "<path>: data.pkl: ..." or "<path>: tensor '<name>': ...".
std::vector<PickledTensor> ParseStateDictPickle(const std::string& path, const uint8_t* data,
                                                size_t size);

}  // namespace pytorch_bin

}  // namespace qwen3
