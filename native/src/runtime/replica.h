// A replica: one tensor-parallel group of ranks, each rank a thread that owns its device for the
// engine's lifetime. Rank 0 takes the next batch from the engine's queue and hands it to its peers
// through the replica's slot; all ranks run the forward in lockstep (two all-reduces a layer) and
// rank 0 completes the batch. A failing rank aborts the group's collectives so that no peer waits
// forever; the batch fails with the root cause and the group is rebuilt, or, after a device error,
// the replica is taken out of service.
#pragma once

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/sync.h"
#include "model/cuda_graphs.h"
#include "model/dense.h"
#include "model/embedding_model.h"
#include "model/packed_batch.h"
#include "model/score_head.h"
#include "parallel/communicator.h"
#include "runtime/engine.h"
#include "runtime/job_queue.h"

namespace qwen3 {

struct Rank {
  int index = 0;
  at::Device device = at::kCPU;
  int cpu_threads = 0;
  std::unique_ptr<EmbeddingModel> model;
  std::unique_ptr<ForwardGraphs> graphs;  // CUDA graphs of small batches, when in use
  std::unique_ptr<DenseLayers> dense;     // rank 0's copy of the Dense layers, when any
  std::unique_ptr<ScoreHead> score;       // rank 0's copy of the score head, when any
  int64_t weight_bytes = 0;
  std::thread thread;
  std::exception_ptr load_error;   // written before the load barrier, read after it
  std::exception_ptr job_error;    // written before the job barrier, read by rank 0 after it
  std::exception_ptr graph_error;  // written before the capture barrier, read by all after it
};

class Replica;

// What a replica's threads need from the engine that owns it.
class ReplicaHost {
 public:
  virtual ~ReplicaHost() = default;
  // Called by every rank once it has loaded and warmed up (or failed to); blocks until the engine
  // decides, and returns whether to serve.
  virtual bool AwaitServing() = 0;
  // The layer test hook for the next batch; null when none is set.
  virtual std::shared_ptr<LayerTestHook> LayerHookForNextJob() const = 0;
  // The replica can serve no more (its device failed, or its communicators could not be rebuilt).
  virtual void ReplicaFailed(Replica& replica, const std::string& reason) = 0;
  // A progress line (loading only).
  virtual void Report(const std::string& line) const = 0;
};

struct ReplicaOptions {
  int cuda_graph_max_tokens = 0;  // EngineOptions::cuda_graph_max_tokens
  std::chrono::microseconds device_spin{0};
  std::chrono::microseconds idle_spin{0};
  bool normalize = true;                     // EngineOptions::normalize
  std::shared_ptr<const DenseLayers> dense;  // on the CPU; null: none
  std::shared_ptr<const ScoreHead> score;    // on the CPU; null: none (an embedding model)
};

class Replica {
 public:
  // Builds a rank's model shard; runs on the rank's own thread with its device current.
  using LoadModel = std::function<std::unique_ptr<EmbeddingModel>(const Rank& rank)>;

  Replica(int index, int world, const ReplicaOptions& options, ReplicaHost& host);
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // The body of `rank`'s thread: loads its shard, warms up with `warmup` and captures CUDA graphs
  // together with its peers, then (if the host says so) serves jobs from `queue` until it is closed
  // or the replica fails, and finally frees the device.
  void RunRank(Rank& rank, const LoadModel& load, const PackedBatch& warmup, JobQueue& queue);

  int index() const noexcept { return index_; }
  bool healthy() const noexcept { return healthy_.load(); }
  // Takes the replica out of service; true for the call that did.
  bool MarkUnhealthy() noexcept { return healthy_.exchange(false); }

  // Set up by the engine before the rank threads start, torn down after they are joined.
  std::unique_ptr<CommunicatorGroup> comm;
  std::vector<std::unique_ptr<Rank>> ranks;
  std::exception_ptr warmup_error;  // written by rank 0, read by the engine after AwaitServing

 private:
  void Plan(const Rank& lead, Job& job) const;
  void ExecuteJob(Rank& rank, Job& job);
  void CaptureGraphs(Rank& rank);
  void Settle(Job& job, std::vector<float> rows);
  // The root cause among the ranks' errors in `field` (one step's errors): the first that is not a
  // consequence of the group being aborted, else the first; null when every rank succeeded.
  std::exception_ptr RootCause(std::exception_ptr Rank::*field) const;

  const int index_;
  const ReplicaOptions options_;
  ReplicaHost& host_;
  JobSlot slot_;
  Barrier barrier_;
  std::atomic<bool> healthy_{true};
};

}  // namespace qwen3
