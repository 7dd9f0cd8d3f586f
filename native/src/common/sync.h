// A thread barrier for the engine's worker threads (C++17 has no std::barrier). The engine's rank
// threads meet at one after every batch; the in-process communicator builds its collectives on one
// and aborts it when a rank fails.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "common/error.h"

namespace qwen3 {

// One step of a spin-wait: tells the core that this thread spins (x86 `pause`, Arm `yield`).
inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::this_thread::yield();
#endif
}

// Spins until `ready()` or until `budget` has passed, whichever comes first; returns ready()'s last
// answer. A thread that sleeps on a condition variable pays a wake-up when it is notified (tens of
// microseconds on a virtual machine whose idle vCPU the hypervisor descheduled); one that spins
// first does not, for the price of a busy core meanwhile. budget <= 0: one look, no spinning.
template <typename Ready>
bool SpinFor(std::chrono::microseconds budget, Ready&& ready) {
  if (ready()) return true;
  if (budget.count() <= 0) return false;
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (uint32_t i = 1;; ++i) {
    CpuRelax();
    if (ready()) return true;
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

// A reusable barrier for a fixed number of threads. Abort() breaks it: waiters and later arrivals
// throw CommAbortedError until Reset().
class Barrier {
 public:
  explicit Barrier(int parties) : parties_(parties) {}

  // `spin`: how long a thread that is not the last spins for the others before it sleeps (SpinFor).
  void ArriveAndWait(std::chrono::microseconds spin = std::chrono::microseconds(0)) {
    std::unique_lock<std::mutex> lock(mu_);
    if (aborted_) throw CommAbortedError("collective aborted: another rank failed");
    const uint64_t generation = generation_;
    if (++arrived_ == parties_) {
      arrived_ = 0;
      generation_.store(generation + 1, std::memory_order_release);
      cv_.notify_all();
      return;
    }
    if (spin.count() > 0) {
      lock.unlock();
      SpinFor(spin, [&] {
        return generation_.load(std::memory_order_acquire) != generation ||
               aborted_.load(std::memory_order_acquire);
      });
      lock.lock();
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

  bool aborted() const noexcept { return aborted_.load(std::memory_order_acquire); }

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
  // Written under mu_; atomic so that a spinning waiter may read them without it.
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> aborted_{false};
};

}  // namespace qwen3
