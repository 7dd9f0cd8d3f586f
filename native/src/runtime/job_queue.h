// The engine's batches in flight: one FIFO queue shared by every replica, and the slot through
// which a replica's rank 0 hands each batch to its peers. Both let a waiting thread spin for a
// while before it sleeps (EngineOptions::idle_spin_us).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "common/error.h"
#include "model/packed_batch.h"
#include "runtime/engine.h"

namespace qwen3 {

struct Job {
  PackedBatch batch;
  EmbedCallback done;
  // Decided by rank 0 before its peers see the job, so that every rank of a group takes the same
  // path (a graph replay and an eager forward differ in their all-reduces).
  std::shared_ptr<LayerTestHook> hook;
  bool graphed = false;
};
using JobPtr = std::shared_ptr<Job>;

// FIFO of batches shared by all replicas.
class JobQueue {
 public:
  // Throws the failure given to Fail(), or Error(kEngineDisposed) once closed.
  void Push(JobPtr job);
  // Blocks for the next job; nullptr once the queue is closed (or failed) and empty. Spins up to
  // `spin` for one before it sleeps.
  JobPtr Pop(std::chrono::microseconds spin);
  // Refuses new jobs; those queued are still served.
  void Close();
  // No replica is left to serve: refuses new jobs with `error` and returns those waiting.
  std::deque<JobPtr> Fail(const Error& error);

 private:
  // Under mu_: whether Pop() would return at once, for the threads that spin without the lock.
  void UpdateReady();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<JobPtr> jobs_;
  bool closed_ = false;
  std::optional<Error> failure_;
  std::atomic<bool> ready_{false};
};

// Rank 0 of a replica hands each job to its peers through this slot; nullptr means stop.
class JobSlot {
 public:
  void Publish(JobPtr job);
  // Returns the job published after generation *seen (and advances *seen); spins up to `spin` for
  // it before it sleeps.
  JobPtr Wait(uint64_t* seen, std::chrono::microseconds spin);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  JobPtr job_;
  std::atomic<uint64_t> generation_{0};  // written under mu_
};

}  // namespace qwen3
