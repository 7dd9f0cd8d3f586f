// A thread barrier for the engine's worker threads (C++17 has no std::barrier). The engine's rank
// threads meet at one after every batch; the in-process communicator builds its collectives on one
// and aborts it when a rank fails.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "common/error.h"

namespace qwen3 {

// A reusable barrier for a fixed number of threads. Abort() breaks it: waiters and later arrivals
// throw CommAbortedError until Reset().
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}

  void ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    if (aborted_) throw CommAbortedError("collective aborted: another rank failed");
    const uint64_t generation = generation_;
    if (++arrived_ == parties_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
    if (generation_ == generation)
      throw CommAbortedError("collective aborted: another rank failed");
  }

  void Abort() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }

  bool aborted() const noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    return aborted_;
  }

  // Call only while no thread waits: forgets the abort and any partial arrival.
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    aborted_ = false;
    arrived_ = 0;
    ++generation_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  const int parties_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

}  // namespace qwen3
