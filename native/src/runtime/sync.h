// Small thread-synchronisation primitives for the engine's worker threads (C++17 has no
// std::barrier).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace qwen3 {

// A reusable barrier for a fixed number of threads.
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}

  void ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t generation = generation_;
    if (++arrived_ == parties_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int parties_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace qwen3
