#include "loader/checkpoint.h"

#include <ATen/ATen.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/error.h"
#include "loader/pytorch_bin.h"

namespace qwen3 {

namespace {

constexpr const char* kModelPrefix = "model.";

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ThrowModelLoadFailed("cannot read " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) ThrowModelLoadFailed("cannot read " + path);
  return buffer.str();
}

json::Value ParseJsonFile(const std::string& path) {
  if (!IsRegularFile(path)) ThrowModelLoadFailed("missing file " + path);
  try {
    return json::Parse(ReadTextFile(path));
  } catch (const json::ParseError& e) {
    ThrowModelLoadFailed(path + ": invalid JSON: " + e.what());
  }
}

std::string NormaliseName(const std::string& name) {
  if (name.compare(0, std::strlen(kModelPrefix), kModelPrefix) == 0) {
    return name.substr(std::strlen(kModelPrefix));
  }
  return name;
}

// Shard names come from the index file: keep them inside the checkpoint directory.
bool IsSafeRelativePath(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  std::stringstream parts(name);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part == "..") return false;
  }
  return true;
}

std::string FormatGiB(uint64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << static_cast<double>(bytes) / (1024.0 * 1024 * 1024)
      << " GiB";
  return out.str();
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

at::ScalarType ToScalarType(StorageDType dtype) {
  switch (dtype) {
    case StorageDType::kBF16:
      return at::kBFloat16;
    case StorageDType::kF16:
      return at::kHalf;
    case StorageDType::kF32:
      return at::kFloat;
    default:
      break;
  }
  throw Error(ErrorCode::kInternal, "not a weight dtype");
}

// pytorch_model.bin (or its index) and no safetensors weights beside it.
bool UsesPytorchBin(const std::string& dir) {
  return !IsRegularFile(JoinPath(dir, "model.safetensors")) &&
         !IsRegularFile(JoinPath(dir, "model.safetensors.index.json")) &&
         (IsRegularFile(JoinPath(dir, "pytorch_model.bin")) ||
          IsRegularFile(JoinPath(dir, "pytorch_model.bin.index.json")));
}

}  // namespace

json::Value ReadConfigJson(const std::string& dir) {
  if (!IsDirectory(dir)) ThrowModelLoadFailed("model directory " + dir + " does not exist");
  return ParseJsonFile(JoinPath(dir, "config.json"));
}

std::unique_ptr<Checkpoint> Checkpoint::Open(const std::string& dir,
                                             const ProgressCallback& progress) {
  if (!IsDirectory(dir)) ThrowModelLoadFailed("model directory " + dir + " does not exist");
  auto ckpt = std::unique_ptr<Checkpoint>(new Checkpoint());
  ckpt->dir_ = dir;

  // safetensors when present, else pytorch_model.bin (torch.save's zip format;
  // loader/pytorch_bin.h)
  const bool bin = UsesPytorchBin(dir);
  const std::string single_name = bin ? "pytorch_model.bin" : "model.safetensors";
  const std::string index_path = JoinPath(dir, single_name + ".index.json");
  const std::string single_path = JoinPath(dir, single_name);
  std::vector<std::string> shard_names;
  // name in the index -> shard file, checked against the shard headers below
  std::vector<std::pair<std::string, std::string>> weight_map;

  if (IsRegularFile(index_path)) {
    json::Value index = ParseJsonFile(index_path);
    const json::Value* map = json::Find(index, "weight_map");
    if (map == nullptr || !map->is_object()) {
      ThrowModelLoadFailed(index_path + ": missing \"weight_map\" object");
    }
    std::set<std::string> seen;
    for (const auto& entry : map->items()) {
      const std::string& name = entry.key();
      const json::Value& file = entry.value();
      if (!file.is_string() || !IsSafeRelativePath(file.get_ref<const std::string&>())) {
        ThrowModelLoadFailed(index_path + ": tensor '" + name +
                             "' maps to an invalid file name (must be a relative path)");
      }
      const auto& shard = file.get_ref<const std::string&>();
      weight_map.emplace_back(name, shard);
      if (seen.insert(shard).second) shard_names.push_back(shard);
    }
    if (shard_names.empty()) ThrowModelLoadFailed(index_path + ": weight_map is empty");
    std::sort(shard_names.begin(), shard_names.end());
  } else if (IsRegularFile(single_path)) {
    shard_names.push_back(single_name);
  } else {
    ThrowModelLoadFailed("missing file " + single_path + " (or model.safetensors.index.json)");
  }

  std::unordered_map<std::string, const TensorFile*> by_shard_name;
  for (size_t i = 0; i < shard_names.size(); ++i) {
    const std::string path = JoinPath(dir, shard_names[i]);
    if (!IsRegularFile(path)) ThrowModelLoadFailed("missing file " + path);
    std::unique_ptr<TensorFile> file;
    if (bin) {
      file = std::make_unique<PytorchBinFile>(path);
    } else {
      file = std::make_unique<SafetensorsFile>(path);
    }
    if (progress) {
      progress("opened " + shard_names[i] + " (" + std::to_string(i + 1) + "/" +
               std::to_string(shard_names.size()) + ", " + FormatGiB(file->file_size()) + ", " +
               std::to_string(file->tensors().size()) + " tensors)");
    }
    for (const TensorEntry& entry : file->tensors()) {
      const std::string name = NormaliseName(entry.name);
      auto [it, inserted] = ckpt->tensors_.emplace(name, Located{file.get(), &entry});
      if (!inserted) {
        ThrowModelLoadFailed(path + ": tensor '" + entry.name + "' is also in " +
                             it->second.file->path() + " (as '" + it->second.entry->name + "')");
      }
    }
    by_shard_name.emplace(shard_names[i], file.get());
    ckpt->files_.push_back(std::move(file));
  }

  for (const auto& [name, shard] : weight_map) {
    const TensorFile* file = by_shard_name.at(shard);
    if (file->Find(name) == nullptr) {
      ThrowModelLoadFailed(index_path + ": tensor '" + name + "' is mapped to " + shard +
                           ", which does not contain it");
    }
  }
  return ckpt;
}

uint64_t Checkpoint::total_bytes() const noexcept {
  uint64_t total = 0;
  for (const auto& f : files_) total += f->file_size();
  return total;
}

bool Checkpoint::Has(const std::string& name) const { return tensors_.count(name) > 0; }

const Checkpoint::Located& Checkpoint::Locate(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    std::string where = files_.size() == 1 ? files_.front()->path()
                                           : std::to_string(files_.size()) + " shards in " + dir_;
    ThrowModelLoadFailed("tensor '" + name + "' (or '" + kModelPrefix + name +
                         "') is missing from " + where);
  }
  return it->second;
}

const TensorEntry& Checkpoint::Entry(const std::string& name) const { return *Locate(name).entry; }

const std::string& Checkpoint::FileOf(const std::string& name) const {
  return Locate(name).file->path();
}

void Checkpoint::CheckWeight(const std::string& name, const std::vector<int64_t>& shape) const {
  const Located& t = Locate(name);
  const std::string prefix = t.file->path() + ": tensor '" + t.entry->name + "': ";
  if (!IsFloatingWeightDType(t.entry->dtype)) {
    ThrowModelLoadFailed(prefix + "dtype " + StorageDTypeName(t.entry->dtype) +
                         " is not supported (expected BF16, F16 or F32)");
  }
  if (t.entry->shape != shape) {
    ThrowModelLoadFailed(prefix + "shape " + ShapeString(t.entry->shape) + " does not match " +
                         ShapeString(shape) + " expected from config.json");
  }
}

at::Tensor Checkpoint::Get(const std::string& name) const { return GetShard(name, 0, 0, 1); }

at::Tensor Checkpoint::GetShard(const std::string& name, int64_t split_dim, int rank,
                                int world) const {
  const Located& t = Locate(name);
  const TensorEntry& e = *t.entry;
  const std::string prefix = t.file->path() + ": tensor '" + e.name + "': ";
  if (!IsFloatingWeightDType(e.dtype)) {
    ThrowModelLoadFailed(prefix + "dtype " + StorageDTypeName(e.dtype) +
                         " is not supported (expected BF16, F16 or F32)");
  }
  const auto rank_count = static_cast<int64_t>(e.shape.size());
  if (world < 1 || rank < 0 || rank >= world) {
    throw Error(ErrorCode::kInternal, prefix + "invalid shard rank/world");
  }
  if (rank_count == 0) {
    if (world != 1) throw Error(ErrorCode::kInternal, prefix + "cannot shard a scalar");
  } else if (split_dim < 0 || split_dim >= rank_count) {
    throw Error(ErrorCode::kInternal, prefix + "invalid split dimension");
  }

  std::vector<int64_t> out_shape = e.shape;
  int64_t outer = 1;
  int64_t split = 1;
  int64_t inner = 1;
  if (rank_count > 0) {
    for (int64_t d = 0; d < split_dim; ++d) outer *= e.shape[d];
    split = e.shape[split_dim];
    for (int64_t d = split_dim + 1; d < rank_count; ++d) inner *= e.shape[d];
    if (split % world != 0) {
      ThrowModelLoadFailed(prefix + "dimension " + std::to_string(split_dim) + " (" +
                           std::to_string(split) + ") does not divide by tensor parallel size " +
                           std::to_string(world));
    }
    out_shape[split_dim] = split / world;
  }
  const int64_t part = split / world;
  const size_t elem = StorageDTypeSize(e.dtype);

  at::Tensor out = at::empty(out_shape, at::TensorOptions().dtype(ToScalarType(e.dtype)));
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  const uint8_t* src = t.file->data(e);
  const size_t chunk = static_cast<size_t>(part * inner) * elem;
  for (int64_t o = 0; o < outer; ++o) {
    const size_t src_offset = static_cast<size_t>((o * split + rank * part) * inner) * elem;
    std::memcpy(dst + static_cast<size_t>(o) * chunk, src + src_offset, chunk);
  }
  return out;
}

at::Tensor Checkpoint::GetRows(const std::string& name, const std::vector<int64_t>& rows) const {
  const Located& t = Locate(name);
  const TensorEntry& e = *t.entry;
  const std::string prefix = t.file->path() + ": tensor '" + e.name + "': ";
  if (!IsFloatingWeightDType(e.dtype)) {
    ThrowModelLoadFailed(prefix + "dtype " + StorageDTypeName(e.dtype) +
                         " is not supported (expected BF16, F16 or F32)");
  }
  if (e.shape.size() != 2) {
    ThrowModelLoadFailed(prefix + "shape " + ShapeString(e.shape) + " is not a matrix");
  }
  const size_t row_bytes = static_cast<size_t>(e.shape[1]) * StorageDTypeSize(e.dtype);
  at::Tensor out = at::empty({static_cast<int64_t>(rows.size()), e.shape[1]},
                             at::TensorOptions().dtype(ToScalarType(e.dtype)));
  auto* dst = static_cast<uint8_t*>(out.data_ptr());
  const uint8_t* src = t.file->data(e);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= e.shape[0]) {
      ThrowInvalidArgument(prefix + "row " + std::to_string(rows[i]) + " is out of range (" +
                           std::to_string(e.shape[0]) + " rows)");
    }
    std::memcpy(dst + i * row_bytes, src + static_cast<size_t>(rows[i]) * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace qwen3
