#include "loader/safetensors.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

#include "common/error.h"
#include "loader/json.h"

namespace qwen3 {

namespace {

// The format caps headers at 100 MB; anything larger is corrupt.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;

struct DTypeName {
  const char* name;
  StorageDType dtype;
  size_t size;
};

constexpr DTypeName kDTypes[] = {
    {"BOOL", StorageDType::kBool, 1},      {"U8", StorageDType::kU8, 1},
    {"I8", StorageDType::kI8, 1},          {"I16", StorageDType::kI16, 2},
    {"U16", StorageDType::kU16, 2},        {"F16", StorageDType::kF16, 2},
    {"BF16", StorageDType::kBF16, 2},      {"I32", StorageDType::kI32, 4},
    {"U32", StorageDType::kU32, 4},        {"F32", StorageDType::kF32, 4},
    {"F64", StorageDType::kF64, 8},        {"I64", StorageDType::kI64, 8},
    {"U64", StorageDType::kU64, 8},        {"F8_E4M3", StorageDType::kF8E4M3, 1},
    {"F8_E5M2", StorageDType::kF8E5M2, 1},
};

bool ParseDType(const std::string& name, StorageDType* out) {
  for (const auto& d : kDTypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

[[noreturn]] void Fail(const std::string& path, const std::string& message) {
  ThrowModelLoadFailed(path + ": " + message);
}

[[noreturn]] void FailTensor(const std::string& path, const std::string& name,
                             const std::string& message) {
  ThrowModelLoadFailed(path + ": tensor '" + name + "': " + message);
}

}  // namespace

const char* StorageDTypeName(StorageDType dtype) noexcept {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

size_t StorageDTypeSize(StorageDType dtype) noexcept {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

bool IsFloatingWeightDType(StorageDType dtype) noexcept {
  return dtype == StorageDType::kBF16 || dtype == StorageDType::kF16 || dtype == StorageDType::kF32;
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : map_(std::make_unique<MappedFile>(path)) {
  const size_t file_size = map_->size();
  if (file_size < 8) Fail(path, "file is too small to be safetensors (truncated?)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_->data()[i];
  if (header_len == 0 || header_len > kMaxHeaderBytes) {
    Fail(path, "invalid header length " + std::to_string(header_len) +
                   " (not a safetensors file, or corrupt)");
  }
  if (header_len > file_size - 8) {
    Fail(path, "header length " + std::to_string(header_len) + " runs past the end of the " +
                   std::to_string(file_size) + "-byte file (truncated?)");
  }
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;

  std::string_view header(reinterpret_cast<const char*>(map_->data() + 8), header_len);
  json::Value root;
  try {
    root = json::Parse(header);
  } catch (const json::ParseError& e) {
    Fail(path, std::string("bad JSON header: ") + e.what());
  }
  if (!root.is_object()) Fail(path, "header is not a JSON object");

  for (const auto& member : root.items()) {
    const std::string& name = member.key();
    const json::Value& value = member.value();
    if (name == "__metadata__") {
      if (!value.is_object()) Fail(path, "__metadata__ is not an object");
      for (const auto& item : value.items()) {
        if (item.value().is_string()) metadata_[item.key()] = item.value().get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) FailTensor(path, name, "entry is not an object");
    TensorEntry entry;
    entry.name = name;

    const json::Value* dtype = json::Find(value, "dtype");
    if (dtype == nullptr || !dtype->is_string()) FailTensor(path, name, "missing dtype");
    if (!ParseDType(dtype->get_ref<const std::string&>(), &entry.dtype)) {
      FailTensor(path, name, "unknown dtype '" + dtype->get_ref<const std::string&>() + "'");
    }

    const json::Value* shape = json::Find(value, "shape");
    if (shape == nullptr || !shape->is_array()) FailTensor(path, name, "missing shape");
    uint64_t numel = 1;
    for (const auto& dim : *shape) {
      if (!dim.is_number_unsigned() ||
          dim.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        FailTensor(path, name, "shape has a dimension that is not a non-negative integer");
      }
      const auto d = dim.get<uint64_t>();
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / d) {
        FailTensor(path, name, "shape overflows");
      }
      numel *= d;
      entry.shape.push_back(static_cast<int64_t>(d));
    }

    const json::Value* offsets = json::Find(value, "data_offsets");
    if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      FailTensor(path, name, "data_offsets must be two non-negative integers");
    }
    const auto begin = (*offsets)[0].get<uint64_t>();
    const auto end = (*offsets)[1].get<uint64_t>();
    const std::string range = "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (end < begin) FailTensor(path, name, "data_offsets " + range + " end before they begin");
    if (end > data_size) {
      FailTensor(path, name,
                 "data_offsets " + range + " run past the end of the data (" +
                     std::to_string(data_size) + " bytes): the file is truncated or corrupt");
    }
    const uint64_t elem = StorageDTypeSize(entry.dtype);
    if (numel > std::numeric_limits<uint64_t>::max() / elem || end - begin != numel * elem) {
      FailTensor(path, name,
                 "data_offsets " + range + " hold " + std::to_string(end - begin) +
                     " bytes but shape and dtype need " + std::to_string(numel * elem));
    }
    entry.offset = data_start + begin;
    entry.nbytes = end - begin;
    by_name_.emplace(entry.name, tensors_.size());
    tensors_.push_back(std::move(entry));
  }

  // Tensors must not share bytes: overlapping ranges mean a corrupt or malicious header.
  std::vector<const TensorEntry*> order;
  order.reserve(tensors_.size());
  for (const auto& t : tensors_) {
    if (t.nbytes > 0) order.push_back(&t);
  }
  std::sort(order.begin(), order.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes) {
      FailTensor(path, order[i]->name, "data overlaps tensor '" + order[i - 1]->name + "'");
    }
  }
}

const TensorEntry* SafetensorsFile::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace qwen3
