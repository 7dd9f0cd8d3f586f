// A read-only memory map of a whole file. Checkpoint shards are mapped, never read into buffers:
// each rank copies only the bytes of its own slices, and the page cache is shared by all ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qwen3 {

class MappedFile {
 public:
  // Throws qwen3::Error(kModelLoadFailed) naming the path on any failure.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const noexcept { return path_; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace qwen3
